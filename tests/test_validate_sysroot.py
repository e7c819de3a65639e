"""systemd-sysusers and systemd-tmpfiles on a scratch root (generator.syscheck, generator.sysroot).

Real tools, no mocks. The specs of the repo pass; each tampered tree (a rendered file changed
by hand, as a template bug or an injection would change it) must fail with its own message.
The last tests pin the tools' behaviour (systemd 252) the check relies on.
"""

from __future__ import annotations

import functools
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import REPO, SPEC_CASES, run_cli

from generator import Build, build, plan, render
from generator.environment import TEMPLATES_DIR
from generator.syscheck import check_system_files
from generator.sysroot import Accounts, lay_base, run_tool, scratch_root

SU = "root/etc/sysusers.d/zachot.conf"
TF = "root/etc/tmpfiles.d/zachot.conf"
LR = "root/etc/logrotate.d/zachot-api"
LOGS_LINE = "d /opt/zachot/logs 0750 zachot zachot -\n"


@functools.cache
def _built(case: str) -> Build:
    return build(SPEC_CASES[case])


def _check(tmp_path: Path, files: dict[str, str] | None = None, case: str = "zachot", **base: Path) -> list[str]:
    b = _built(case)
    _, found = check_system_files(b.plan, b.files if files is None else files, tmp_path, **base)
    return [str(f) for f in found]


def _tampered(edits: list[tuple[str, str, str]]) -> dict[str, str]:
    files = dict(_built("zachot").files)
    for path, old, new in edits:
        assert old in files[path], f"{old!r} not in {path}: the template changed, update the case"
        files[path] = files[path].replace(old, new, 1)
    return files


@pytest.mark.parametrize("case", sorted(SPEC_CASES))
def test_spec_passes(tmp_path: Path, case: str) -> None:
    b = _built(case)
    pr = b.plan.spec.project
    checked, found = check_system_files(b.plan, b.files, tmp_path)
    assert found == []
    text = "\n".join(checked)
    for account in b.plan.accounts.users:
        assert f"user {account.name} (uid " in text and f"home {pr.root}, /usr/sbin/nologin)" in text
    assert f"group {pr.group} (gid " in text
    if any(sv.log_files for sv in b.plan.services):
        assert f"{pr.logs_dir}," in text
    else:
        assert pr.logs_dir is None and "/var/log" not in text
    assert f"second run with the env file (root:root 0600): f root:{pr.group} {pr.env_file_mode}" in text


def test_validate_prints_what_it_checked() -> None:
    result = run_cli("validate", "--spec", REPO / "spec")
    assert result.returncode == 0, result.stderr
    assert (
        "checked  staging: systemd-sysusers --root=<scratch>: /etc/sysusers.d/zachot.conf created user zachot"
        in result.stdout
    )
    assert "checked  staging: systemd-tmpfiles --create --root=<scratch>: /etc/tmpfiles.d/zachot.conf" in result.stdout
    assert "checked  staging: owners in tmpfiles.d, logrotate su/create exist" in result.stdout
    # every tree of every environment is checked; the Redis-only host has no account or folder of ours
    for host in ("api1", "api2", "worker1"):
        assert f"checked  production/{host}: systemd-sysusers --root=<scratch>" in result.stdout
    assert "checked  production/redis1: systemd-analyze verify: redis-server@zachot.service.d/zachot.conf" in result.stdout


def test_minimal_base_without_base_passwd_passes(tmp_path: Path) -> None:
    nothing = tmp_path / "absent"
    b = _built("zachot")
    checked, found = check_system_files(b.plan, b.files, tmp_path, base_passwd=nothing, host_sysusers=nothing)
    assert found == []
    assert "base system: a minimal root/daemon/bin/sys set" in checked[0]


def test_injected_sysusers_user_fails(tmp_path: Path) -> None:
    """The shape a title with `"` and a newline once rendered: a second `u` line."""
    found = _check(tmp_path, _tampered([(SU, "/usr/sbin/nologin\n", '/usr/sbin/nologin\nu evil - "x" / /bin/bash\n')]))
    assert any(f.startswith(f"{SU}: sysusers result: creates user evil:x:") for f in found), found
    assert any("creates group evil:x:" in f for f in found), found
    assert (
        f"{SU}: sysusers result: user 'evil' gets the login shell /bin/bash; a service user has /usr/sbin/nologin or /bin/false"
        in found
    )
    assert f"{SU}: sysusers result: user 'evil' gets the home /, not project.root /opt/zachot" in found


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("/usr/sbin/nologin", "/bin/sh", "user 'zachot' gets the login shell /bin/sh"),
        (
            " /opt/zachot ",
            " /var/lib/zachot ",
            "user 'zachot' gets the home /var/lib/zachot, not project.root /opt/zachot",
        ),
        (
            "/usr/sbin/nologin\n",
            "/usr/sbin/nologin\nm zachot sudo\n",
            "changes the existing group sudo:x:27: to sudo:x:27:zachot",
        ),
        ("u zachot -", "u zachot -:adm", "the spec's group 'zachot' not created: no line creates it"),
    ],
    ids=["login-shell", "home", "added-to-sudo", "primary-group"],
)
def test_tampered_sysusers_line_fails(tmp_path: Path, old: str, new: str, message: str) -> None:
    found = _check(tmp_path, _tampered([(SU, old, new)]))
    assert any(f.startswith(f"{SU}: sysusers result: ") and message in f for f in found), found


def test_user_a_base_system_has_is_caught_by_the_tool(tmp_path: Path) -> None:
    """The spec refuses such names (crossref); the tool run catches them on its own too."""
    spec = _built("zachot").plan.spec
    p = plan(spec.model_copy(update={"project": spec.project.model_copy(update={"user": "www-data"})}))
    _, found = check_system_files(p, render(p), tmp_path)
    assert (
        f"{SU}: sysusers result: the spec's user 'www-data' not created: a base Debian system already has www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin"
        in map(str, found)
    )


@pytest.mark.parametrize(
    ("line", "path", "problem"),
    [
        ("d /etc 0750 zachot zachot -\n", "/etc", "/etc is a system folder"),
        ("d /var/log 0755 zachot zachot -\n", "/var/log", "/var/log is a system folder"),
        (
            "d /var/log/nginx 0750 zachot zachot -\n",
            "/var/log/nginx",
            "is neither below project.root nor in a folder named after the project",
        ),
        ("d /srv 0755 root zachot -\n", "/srv", None),
    ],
    ids=["etc", "var-log", "another-package", "srv-root-owned"],
)
def test_tmpfiles_handing_a_system_folder_fails(tmp_path: Path, line: str, path: str, problem: str | None) -> None:
    found = _check(tmp_path, _tampered([(TF, LOGS_LINE, line + LOGS_LINE)]))
    assert any(
        f.startswith(f"{TF}: tmpfiles result: ") and f"{path} " in f and "the plan expects no such path" in f
        for f in found
    ), found
    if problem:
        assert any(
            f.startswith(f"{TF}: tmpfiles result: hands {path} to d zachot:zachot") and problem in f for f in found
        ), found


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            LOGS_LINE,
            LOGS_LINE.replace("0750", "0770"),
            "/opt/zachot/logs: mode is 0770, the spec says 0750 (project.logs_dir_mode)",
        ),
        (
            "api.err 0640",
            "api.err 0644",
            "/opt/zachot/logs/api.err: mode is 0644, the spec says 0640 (log_policies.app.mode)",
        ),
        (
            "api.log 0640 zachot zachot",
            "api.log 0640 root zachot",
            "/opt/zachot/logs/api.log: owner is root, the spec says zachot (log_policies.app.owner)",
        ),
        (
            "etc 0750 root zachot",
            "etc 0755 root zachot",
            "/opt/zachot/envs/prod/etc: mode is 0755, the spec says 0750 (fixed for the env file's folder)",
        ),
        (
            "f /opt/zachot/logs/worker.log",
            "# f /opt/zachot/logs/worker.log",
            "/opt/zachot/logs/worker.log was not created (f zachot:zachot 0640 expected)",
        ),
        (
            "z /opt/zachot/envs/prod/etc/zachot.env 0640",
            "z /opt/zachot/envs/prod/etc/zachot.env 0604",
            "second run: /opt/zachot/envs/prod/etc/zachot.env: mode is 0604, the spec says 0640 (project.env_file_mode)",
        ),
        (
            "z /opt",
            "# z /opt",
            "second run: /opt/zachot/envs/prod/etc/zachot.env: group is root, the spec says zachot (project.group)",
        ),
    ],
    ids=[
        "logs-dir-mode",
        "log-file-mode",
        "log-file-owner",
        "env-dir-mode",
        "missing-log-file",
        "env-file-mode",
        "no-z-line",
    ],
)
def test_tmpfiles_metadata_against_the_spec(tmp_path: Path, old: str, new: str, message: str) -> None:
    found = _check(tmp_path, _tampered([(TF, old, new)]))
    assert f"{TF}: tmpfiles result: {message}" in found, found


def test_tmpfiles_warning_is_a_finding(tmp_path: Path) -> None:
    found = _check(tmp_path, _tampered([(TF, LOGS_LINE, LOGS_LINE + LOGS_LINE.replace("0750", "0700"))]))
    assert found == [
        f'{TF}: systemd-tmpfiles: /etc/tmpfiles.d/zachot.conf:4: Duplicate line for path "/opt/zachot/logs", ignoring.'
    ]


def test_tmpfiles_symlink_out_of_the_env_folder_fails(tmp_path: Path) -> None:
    found = _check(tmp_path, _tampered([(TF, LOGS_LINE, "L /opt/zachot/envs/prod/etc - - - - /etc\n" + LOGS_LINE)]))
    assert f"{TF}: tmpfiles result: /opt/zachot/envs/prod/etc: type is l, the spec says d" in found


def test_tmpfiles_chown_of_an_existing_file_fails(tmp_path: Path) -> None:
    found = _check(tmp_path, _tampered([(TF, LOGS_LINE, "z /etc/shadow 0644 zachot zachot -\n" + LOGS_LINE)]))
    assert (
        f"{TF}: tmpfiles result: changes /etc/shadow from f root:root 0640 to f zachot:zachot 0644; the plan expects no such path"
        in found
    )


@pytest.mark.parametrize(
    ("path", "old", "new", "message"),
    [
        (
            LR,
            "su zachot zachot",
            "su nobodyknows x",
            "line 3: user 'nobodyknows' is neither created by sysusers.d nor on a base Debian system",
        ),
        (
            LR,
            "su zachot zachot",
            "su zachot zachot\n    create 0640 zachot nogroupknows",
            "line 4: group 'nogroupknows' is neither created",
        ),
        (TF, "api.log 0640 zachot zachot", "api.log 0640 ghost zachot", "line 4: user 'ghost' is neither created"),
    ],
    ids=["logrotate-su", "logrotate-create", "tmpfiles-owner"],
)
def test_unknown_owner_fails(tmp_path: Path, path: str, old: str, new: str, message: str) -> None:
    found = _check(tmp_path, _tampered([(path, old, new)]))
    assert any(f.startswith(f"{path}: user names: {message}") for f in found), found


def test_validate_exits_1_on_a_tampered_template(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    tf = templates / "tmpfiles" / "tmpfiles.conf.j2"
    tf.write_text(tf.read_text() + "d /var/log 0750 {{ p.user }} {{ p.group }} -\n")
    result = run_cli("validate", "--spec", REPO / "spec", "--templates", templates)
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        "FAIL     staging/root/etc/tmpfiles.d/zachot.conf: tmpfiles result: hands /var/log to d zachot:zachot 0750"
        in result.stderr
    )


def test_scratch_root_must_be_below_the_temp_folder(tmp_path: Path) -> None:
    b = _built("zachot")
    outside = Path(tempfile.gettempdir()).parent / "sysroot-must-not-appear"  # not below it, wherever REPO is
    with pytest.raises(ValueError, match="must lie below"):
        check_system_files(b.plan, b.files, outside)
    assert not outside.exists()
    with pytest.raises(ValueError, match="must lie below"):
        run_tool("systemd-tmpfiles", Path("/"), "--create")


# The tools' behaviour the check relies on (systemd 252).


def test_tmpfiles_resolves_names_from_the_root(tmp_path: Path) -> None:
    name = "zvprobe"
    with pytest.raises(KeyError):
        pwd.getpwnam(name)  # the host does not know it
    root = scratch_root(tmp_path)
    lay_base(root)
    (tmp_path / "u.conf").write_text(f'u {name} - "probe" /nonexistent /usr/sbin/nologin\n')
    assert run_tool("systemd-sysusers", root, str(tmp_path / "u.conf")).returncode == 0
    (tmp_path / "t.conf").write_text(f"d /opt/probe 0750 {name} {name} -\n")
    proc = run_tool("systemd-tmpfiles", root, "--create", str(tmp_path / "t.conf"))
    assert (proc.returncode, proc.stderr) == (0, "")
    acc = Accounts(root)
    st = (root / "opt/probe").stat()
    assert (st.st_uid, st.st_gid) == (acc.uid(name), acc.gid(name))


def test_positional_files_are_host_paths_and_z_on_a_missing_file_is_silent(tmp_path: Path) -> None:
    root = scratch_root(tmp_path)
    lay_base(root)
    (root / "etc/tmpfiles.d").mkdir()
    (root / "etc/tmpfiles.d/t.conf").write_text("z /opt/missing.env 0640 root root -\n")
    proc = run_tool("systemd-tmpfiles", root, "--create", "/etc/tmpfiles.d/t.conf")
    assert proc.returncode != 0 and "Failed to open" in proc.stderr  # not looked up below --root=
    proc = run_tool("systemd-tmpfiles", root, "--create", str(root / "etc/tmpfiles.d/t.conf"))
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert not (root / "opt/missing.env").exists()
