"""Every spec mistake is reported as `file:line:col: dotted.path: message`, exit 2, nothing written.

Each case edits the small `single_api_en` fixture; the expected line is found in the edited
text, so the test fails if the reported place is not where the mistake is.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import SPEC_CASES, line_of, run_cli

from generator import SpecError, load_spec

BASE = (SPEC_CASES["single_api_en"] / "spec.yaml").read_text()


def _spec_with(tmp_path: Path, text: str) -> Path:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "spec.yaml").write_text(text)
    return spec


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages name spec files relative to the working directory (yamlsource.shown_path): run
    where a user would, next to the spec folder."""
    monkeypatch.chdir(tmp_path)


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_spec(_spec_with(tmp_path, text))
    return [str(p) for p in info.value.problems]


# (case id, old text, new text, marker on the reported line, path, message regex)
CASES = [
    (
        "yaml-syntax",
        "    rotate: 7\n",
        "    rotate: [7\n",
        "compress: true",
        "",
        r"YAML syntax error: expected ',' or '\]', but got ':' \(while parsing a flow sequence at line 32\)",
    ),
    ("wrong-type", "port: 9000", "port: nine", "port: nine", "services.web.runner.port", r"valid integer"),
    (
        "unknown-key-near-miss",
        "    rotate: 7\n",
        "    rotat: 7\n",
        "rotat: 7",
        "log_policies.plain.rotat",
        r"unknown field 'rotat'; did you mean 'rotate'\?",
    ),
    (
        "unknown-key-far",
        "    rotate: 7\n",
        "    rotate: 7\n    colour: blue\n",
        "colour: blue",
        "log_policies.plain.colour",
        r"unknown field 'colour' \(allowed: owner, group, mode",
    ),
    (
        "missing-field",
        "    frequency: daily\n",
        "",
        "  plain:",
        "log_policies.plain.frequency",
        r"missing required field 'frequency'",
    ),
    (
        "duplicate-key",
        "    rotate: 7\n",
        "    rotate: 7\n    rotate: 8\n",
        "rotate: 8",
        "log_policies.plain.rotate",
        r"duplicate key 'rotate' \(first written at line \d+\)",
    ),
    (
        "dangling-log-policy",
        "policy: plain,",
        "policy: plian,",
        "policy: plian",
        "services.web.logs.policy",
        r"unknown log policy 'plian' \(known: plain\)",
    ),
    (
        "dangling-component",
        "    - component: web\n      failure: Web crashes",
        "    - component: wbe\n      failure: Web crashes",
        "component: wbe",
        "failure_matrix.scenarios[0].component",
        r"unknown component 'wbe'",
    ),
    (
        "unknown-placeholder",
        "Read ${web.stderr}",
        "Read ${web.stderrr}",
        "${web.stderrr}",
        "failure_matrix.scenarios[0].manual_action",
        r"unknown placeholder '\$\{web.stderrr\}'; did you mean '\$\{web.stderr\}'\?",
    ),
    (
        "bad-enum",
        "policy: always,",
        "policy: sometimes,",
        "policy: sometimes",
        "services.web.restart.policy",
        r"Input should be 'no', 'on-success'",
    ),
    (
        "relative-path",
        "logs_dir: /var/log/shop",
        "logs_dir: var/log/shop",
        "logs_dir: var",
        "project.logs_dir",
        r"must be an absolute path",
    ),
    ("path-with-space", "root: /srv/shop", "root: /srv/my shop", "root: /srv/my shop", "project.root", r"no spaces"),
    ("bad-user-name", "  user: shop", "  user: 9shop", "user: 9shop", "project.user", r"should match pattern"),
    (
        "hand-written-auto-action",
        "      event: crash\n",
        "      auto_action: it restarts\n",
        "auto_action: it restarts",
        "failure_matrix.scenarios[0].auto_action",
        r"derived from its settings; give 'event'",
    ),
    (
        "merge-key",
        "  plain:\n",
        "  base: &b {owner: shop}\n  plain:\n    <<: *b\n",
        "<<: *b",
        "log_policies.plain",
        r"merge keys .* are not supported",
    ),
]


@pytest.mark.parametrize(("old", "new", "marker", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_located(tmp_path: Path, old: str, new: str, marker: str, path: str, message: str) -> None:
    assert old in BASE, "the fixture changed; update the case"
    text = BASE.replace(old, new, 1)
    problems = _problems(tmp_path, text)
    line = line_of(text, marker)
    prefix = f"spec/spec.yaml:{line}:" + (r"\d+: " + re.escape(path) + ": " if path else r"\d+: ")
    assert any(re.match(prefix + ".*" + message, p) for p in problems), problems


def test_all_errors_of_a_run_are_reported(tmp_path: Path) -> None:
    text = BASE.replace("port: 9000", "port: nine").replace("    rotate: 7\n", "    rotat: 7\n")
    text = text.replace("  title: Shop\n", "  title: Shop\n  colour: blue\n")
    problems = _problems(tmp_path, text)
    assert len(problems) == 4, problems  # port, rotat (unknown), rotate (missing), colour
    assert problems == sorted(problems, key=lambda p: int(p.split(":")[1]))


def test_cli_exits_2_without_traceback_and_writes_nothing(tmp_path: Path) -> None:
    spec = _spec_with(tmp_path, BASE.replace("port: 9000", "port: nine"))
    build = tmp_path / "build"
    result = run_cli("render", "--spec", spec, "--build", build)
    assert result.returncode == 2
    # a spec folder outside the working directory is named absolutely, so the name can be opened
    assert re.search("^" + re.escape(str(spec / "spec.yaml")) + r":\d+:\d+: services.web.runner.port: ",
                     result.stderr, re.M), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not build.exists()
    assert run_cli("check", "--spec", spec, "--build", build).returncode == 2
    # ...and relative to it when it lies below it
    result = run_cli("render", "--spec", "spec", "--build", "build", cwd=tmp_path)
    assert re.search(r"^spec/spec.yaml:\d+:\d+: services.web.runner.port: ", result.stderr, re.M), result.stderr


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    bomb = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    bomb += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    problems = _problems(tmp_path, "\n".join(bomb) + "\n")
    assert any("alias bomb" in p for p in problems), problems


def test_section_defined_in_two_files_is_refused(tmp_path: Path) -> None:
    spec = _spec_with(tmp_path, BASE)
    (spec / "z-extra.yaml").write_text("# again\nlog_policies: {}\n")
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    assert any(
        str(p).startswith(
            "spec/z-extra.yaml:2:1: log_policies: section 'log_policies' is also defined in spec/spec.yaml"
        )
        for p in info.value.problems
    ), info.value.problems


def test_missing_spec_folder(tmp_path: Path) -> None:
    result = run_cli("render", "--spec", tmp_path / "nope", "--build", tmp_path / "b")
    assert result.returncode == 2 and "spec folder not found" in result.stderr


SECRET_CASES = [
    (
        "secret-name",
        "    in_memory_state: [the session cache]\n",
        "    environment: {DB_PASSWORD: hunter2}\n    in_memory_state: [the session cache]\n",
        "DB_PASSWORD: hunter2",
        "services.web.environment.DB_PASSWORD",
        r"looks like a secret: secrets go in the env file /srv/shop/shop.env",
    ),
    (
        "url-credentials",
        "    in_memory_state: [the session cache]\n",
        "    environment: {SHOP_REDIS: 'redis://app:s3cret@127.0.0.1:6379/0'}\n    in_memory_state: [the session cache]\n",
        "SHOP_REDIS:",
        "services.web.environment.SHOP_REDIS",
        r"carries credentials",
    ),
    (
        "repo-url-credentials",
        "repo_url: https://git.example.com/shop",
        "repo_url: https://bob:pw@git.example.com/shop",
        "repo_url:",
        "project.repo_url",
        r"carries credentials",
    ),
]


@pytest.mark.parametrize(
    ("old", "new", "marker", "path", "message"), [c[1:] for c in SECRET_CASES], ids=[c[0] for c in SECRET_CASES]
)
def test_inline_secrets_are_refused(tmp_path: Path, old: str, new: str, marker: str, path: str, message: str) -> None:
    text = BASE.replace(old, new, 1)
    problems = _problems(tmp_path, text)
    line = line_of(text, marker)
    assert any(re.match(rf"spec/spec.yaml:{line}:\d+: {re.escape(path)}: .*{message}", p) for p in problems), problems


def test_very_large_file_is_refused_quickly(tmp_path: Path) -> None:
    spec = _spec_with(tmp_path, BASE + "# " + "x" * (2 * 1024 * 1024) + "\n")
    with pytest.raises(SpecError, match=r"spec/spec.yaml:1:1: file is \d+ bytes; spec files are limited to 1048576"):
        load_spec(spec)


def test_unit_name_clashing_with_a_generated_timer_is_refused(tmp_path: Path) -> None:
    text = (SPEC_CASES["worker_split_group"] / "spec.yaml").read_text()
    text = text.replace("    role: exec_condition\n", "    role: monitor\n    every_sec: 60\n", 1)
    text = text.replace("    exec_condition: broker_up\n", "").replace("unit: ingest-consumer", "unit: ingest-broker-up")
    problems = _problems(tmp_path, text)
    assert any("services.consumer.unit: unit name 'ingest-broker-up' is already used by the timer of "
               "healthchecks.broker_up" in p for p in problems), problems


def test_folder_named_like_a_spec_file_is_reported(tmp_path: Path) -> None:
    spec = _spec_with(tmp_path, BASE)
    (spec / "more.yaml").mkdir()
    with pytest.raises(SpecError, match=r"spec/more.yaml:1:1: not a regular file"):
        load_spec(spec)


def test_non_utf8_file_is_located_by_line_and_column(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "spec.yaml").write_bytes(b"project:\n  title: caf\xe9\n")
    with pytest.raises(SpecError, match=r"spec/spec.yaml:2:13: not UTF-8 text"):
        load_spec(spec)


def test_missing_section_says_no_file_defines_it(tmp_path: Path) -> None:
    start = BASE.index("services:")
    end = BASE.index("log_policies:")
    problems = _problems(tmp_path, BASE[:start] + BASE[end:])
    assert any("services: missing required section 'services': no spec file defines it" in p
               for p in problems), problems


@pytest.mark.parametrize("value", ["forever", "0", "-5", "true"])
def test_external_stop_timeout_takes_seconds_or_infinity(tmp_path: Path, value: str) -> None:
    text = (SPEC_CASES["worker_split_group"] / "spec.yaml").read_text()
    old = "    restart: {policy: always, delay_sec: 0.1, start_limit_interval_sec: 10, start_limit_burst: 5}\n"
    assert old in text, "the fixture changed; update the case"
    text = text.replace(old, old + f"    stop_timeout_sec: {value}\n", 1)
    problems = _problems(tmp_path, text)
    line = line_of(text, f"stop_timeout_sec: {value}")
    assert any(p.startswith(f"spec/spec.yaml:{line}:") and "external_units.broker.stop_timeout_sec: want seconds" in p
               and "`infinity`" in p for p in problems), problems
    assert len(problems) == 1, problems  # one message, not one per member of the union


def test_placeholder_of_an_unset_optional_field_names_the_field(tmp_path: Path) -> None:
    text = (SPEC_CASES["worker_split_group"] / "spec.yaml").read_text()
    old = '      manual_action: "`systemctl start ${broker.unit} ${consumer.unit}`"\n'
    assert old in text, "the fixture changed; update the case"
    text = text.replace(old, '      manual_action: "wait ${broker.stop_timeout}"\n', 1)
    problems = _problems(tmp_path, text)
    line = line_of(text, "wait ${broker.stop_timeout}")
    assert any(p.startswith(f"spec/spec.yaml:{line}:") and "unknown placeholder '${broker.stop_timeout}'; it is "
               "defined by external_units.broker.stop_timeout_sec, which is not set" in p for p in problems), problems
