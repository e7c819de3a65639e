"""`zachot-gen validate` runs the real tools; lint rules fail render/check/validate with exit 2.

Each broken case below changes one thing in a copy of the repo's spec (or templates)
and must fail with its own message; the repo's spec must pass.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import REPO, SPEC_CASES, edited_spec, run_cli

from generator.environment import TEMPLATES_DIR
from generator.lint import _unit_settings
from generator.realtools import EXPOSURE_LIMIT


def test_zachot_spec_passes_validate() -> None:
    result = run_cli("validate", "--spec", REPO / "spec")
    assert result.returncode == 0, result.stdout + result.stderr
    # "exposure staging: zachot-api.service: 1.1 (...)": the tree, the unit, its score
    scores = [
        (line.split(": ")[-2].split()[-1], float(line.split(": ")[-1].split()[0]))
        for line in result.stdout.splitlines()
        if line.startswith("exposure ")
    ]
    assert {unit for unit, _ in scores} >= {"zachot-api.service", "zachot-worker.service"}
    assert sum("exposure staging: " in ln for ln in result.stdout.splitlines()) == 3  # api, worker, healthcheck
    assert all(v <= EXPOSURE_LIMIT for _, v in scores), scores


@pytest.mark.parametrize("case", [c for c in SPEC_CASES if c != "zachot"])
def test_fixture_specs_pass_validate(case: str) -> None:
    result = run_cli("validate", "--spec", SPEC_CASES[case])
    assert result.returncode == 0, result.stdout + result.stderr


def _edit(spec: Path, file: str, old: str, new: str) -> None:
    path = spec / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}: the spec changed, update the case"
    path.write_text(text.replace(old, new, 1))


# Lint rules: (id, file, old, new, message). Each must fail render, check and validate with 2.
LINT_CASES = [
    (
        "start-limit",
        "services.yaml",
        "      ride_out_sec: 60\n",
        "      ride_out_sec: 600\n",
        "services.restart: a crash loop hits the start limit after ≈100 s",
    ),
    (
        "dependency-cycle",
        "services.yaml",
        "    after: [redis]\n    wants: [redis]\n    logs:\n      policy: app\n      stdout: api.log",
        "    after: [redis, api]\n    wants: [redis]\n    logs:\n      policy: app\n      stdout: api.log",
        "a unit cannot depend on itself ('api')",
    ),
    (
        "no-copytruncate",
        "logging.yaml",
        "    copytruncate: true\n",
        "    copytruncate: false\n",
        "without copytruncate every line after a rotation goes into the rotated file",
    ),
    (
        "worker-stop-timeout",
        "services.yaml",
        "      timeout_sec: 90\n",
        "      timeout_sec: 45\n",
        "TimeoutStopSec=45 is not longer than dramatiq --worker-shutdown-timeout (60 s)",
    ),
    (
        "api-stop-timeout",
        "services.yaml",
        "      timeout_sec: 30\n",
        "      timeout_sec: 20\n",
        "TimeoutStopSec=20 is not longer than uvicorn --timeout-graceful-shutdown (20 s)",
    ),
    (
        "exec-condition-255",
        "healthchecks.yaml",
        "      255: {status: BROKEN",
        "      254: {status: BROKEN",
        "needs 255 for 'the check itself is broken'",
    ),
    (
        "exec-condition-matrix-row",
        "failures.yaml",
        "      event: condition_skip\n",
        "      event: crash\n",
        "no scenario of Worker with event 'condition_skip'",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "message"), [c[1:] for c in LINT_CASES], ids=[c[0] for c in LINT_CASES])
def test_lint_rule_fails_every_command(
    zachot_spec: Path, tmp_path: Path, file: str, old: str, new: str, message: str
) -> None:
    _edit(zachot_spec, file, old, new)
    for args in (["render", "--build", tmp_path / "b"], ["check", "--build", REPO / "build"], ["validate"]):
        result = run_cli(*args, "--spec", zachot_spec)
        assert result.returncode == 2, (args, result.stderr)
        assert message in result.stderr.replace("services.api.", "services.").replace(
            "services.worker.", "services."
        ), result.stderr
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "b").exists()


def test_dependency_cycle_between_services(zachot_spec: Path) -> None:
    _edit(
        zachot_spec,
        "services.yaml",
        "    after: [redis]\n    wants: [redis]\n    logs:\n      policy: app\n      stdout: api.log",
        "    after: [redis, worker]\n    wants: [redis]\n    logs:\n      policy: app\n      stdout: api.log",
    )
    _edit(
        zachot_spec,
        "services.yaml",
        "    after: [redis]\n    wants: [redis]\n    exec_condition",
        "    after: [redis, api]\n    wants: [redis]\n    exec_condition",
    )
    result = run_cli("check", "--spec", zachot_spec)
    assert result.returncode == 2
    assert "dependency cycle: " in result.stderr and (
        "api -> worker -> api" in result.stderr or "worker -> api -> worker" in result.stderr
    )


def test_lint_names_the_spec_field(zachot_spec: Path) -> None:
    _edit(zachot_spec, "services.yaml", "      timeout_sec: 90\n", "      timeout_sec: 45\n")
    result = run_cli("check", "--spec", zachot_spec)
    assert (
        "spec/services.yaml:" in result.stderr
        and "services.worker.stop.timeout_sec: TimeoutStopSec=45" in result.stderr
    )


def test_lint_catches_a_template_that_rotates_the_wrong_file(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    lr = templates / "logrotate" / "logrotate.j2"
    lr.write_text(lr.read_text().replace('{{ s.log_files | join(" ") }} {', "{{ s.stdout_path }} {"))
    result = run_cli("render", "--spec", REPO / "spec", "--build", tmp_path / "b", "--templates", templates)
    assert result.returncode == 2
    assert (
        "/opt/zachot/logs/api.err is written by zachot-api.service (append:) but rotated by 0 stanzas" in result.stderr
    )


# Problems only the real tools see: validate exits 1 and names the tool and the artifact.
TOOL_CASES = [
    (
        "verify-bad-value",
        "services.yaml",
        "    hardening:\n      # systemd-analyze",
        "    hardening:\n      exceptions:\n        ProtectSystem: {value: sometimes, reason: test}\n      # systemd-analyze",
        "root/etc/systemd/system/zachot-api.service: systemd-analyze verify: ",
    ),
    (
        "exposure-mismatch",
        "services.yaml",
        "      exposure: 1.1\n",
        "      exposure: 0.4\n",
        "exposure is 1.1, the spec records 0.4",
    ),
    (
        "exposure-over-limit",
        "services.yaml",
        "    hardening:\n      # systemd-analyze",
        "    hardening:\n      exceptions:\n"
        + "".join(
            f"        {d}: {{value: '', reason: test}}\n"
            for d in (
                "ProtectSystem",
                "ProtectHome",
                "PrivateUsers",
                "PrivateDevices",
                "SystemCallFilter",
                "CapabilityBoundingSet",
                "RestrictNamespaces",
                "PrivateTmp",
                "NoNewPrivileges",
            )
        )
        + "      # systemd-analyze",
        "is over 2.0",
    ),
]


@pytest.mark.parametrize(("file", "old", "new", "message"), [c[1:] for c in TOOL_CASES], ids=[c[0] for c in TOOL_CASES])
def test_real_tool_finding_fails_validate(zachot_spec: Path, file: str, old: str, new: str, message: str) -> None:
    _edit(zachot_spec, file, old, new)
    result = run_cli("validate", "--spec", zachot_spec)
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr, result.stderr


def test_validate_rotates_with_the_templates_it_was_given(tmp_path: Path) -> None:
    """``--templates`` reaches the rotation sandbox too: a copy that keeps one archive fails."""
    templates = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, templates)
    lr = templates / "logrotate" / "logrotate.j2"
    assert "rotate {{ lp.rotate }}" in lr.read_text()
    lr.write_text(lr.read_text().replace("rotate {{ lp.rotate }}", "rotate 1"))
    result = run_cli("validate", "--spec", REPO / "spec", "--templates", templates)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "rotated files kept, rotate is 14" in result.stdout + result.stderr


def test_lint_reads_a_unit_file_as_systemd_does() -> None:
    """systemd.syntax(7): comments start with # or ;, a trailing backslash joins the next line
    with a space, and a single-valued setting written twice keeps its last value."""
    text = (
        "[Unit]\nStandardOutput=append:/unit-section\n\n[Service]\n# StandardOutput=append:/commented\n"
        "; StandardError=append:/commented\nStandardOutput = append:/a\\\nb\n"
        "StandardError=append:/e\nStandardError=journal\n[Install]\nStandardError=append:/install\n"
    )
    assert _unit_settings(text, "Service") == {"StandardOutput": "append:/a b", "StandardError": "journal"}


def test_validate_never_writes_into_the_hosts_unit_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """verify's root links the host's /usr/lib/systemd/system in (realtools._link_or_copy), and
    every Exec*= program gets a stub: a program named after a host unit file must become a new
    file in the root, not a write through the link into the host's own unit. The scratch is put
    on /usr's filesystem (TMPDIR) so that links are really made."""
    host_unit = Path("/usr/lib/systemd/system/multi-user.target")
    try:
        os.link(host_unit, tmp_path / "probe")
    except OSError as exc:
        pytest.skip(f"no hard link to the host's units can be made here ({exc}): copies cannot write through")
    (tmp_path / "probe").unlink()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    before = host_unit.read_bytes(), host_unit.stat().st_mode, host_unit.stat().st_nlink
    spec, _ = edited_spec(tmp_path, "gunicorn_command", ("/usr/local/bin/ledger-sync", str(host_unit)))
    result = run_cli("validate", "--spec", spec)
    assert "multi-user.target" in result.stdout + result.stderr  # the program was really this file
    assert (host_unit.read_bytes(), host_unit.stat().st_mode, host_unit.stat().st_nlink) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("zachot-validate-")]  # the scratch is gone


def test_an_external_unit_named_like_a_host_target_validates(tmp_path: Path) -> None:
    """An external unit gets a stub unit file in verify's root. Its name may begin like a host
    unit that has a folder beside it (getty.target.wants): only its own ``.service`` (and any
    ``.service.d``) is replaced, never a traceback on the folder."""
    spec, _ = edited_spec(tmp_path, "worker_split_group", ("    unit: redis-server\n", "    unit: getty\n"))
    result = run_cli("validate", "--spec", spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def _host_units() -> dict[str, tuple[int, int, int]]:
    """/usr/lib/systemd/system as (size, mode, link count) per entry, read without following links."""
    out = {}
    for f in Path("/usr/lib/systemd/system").rglob("*"):
        st = f.lstat()
        out[str(f)] = (st.st_size, st.st_mode, st.st_nlink)
    return out


@pytest.mark.parametrize("program", [
    "/usr/lib/systemd/system/multi-user.target.wants",  # a folder of the host's units
    "/etc/systemd/system",  # the folder the tree's units go in
    "/usr/bin/true/x",  # below another stub
    "/usr/lib/systemd/system/multi-user.target/x",  # below a linked host unit
    "/etc/systemd/system/ledger-api.service",  # the tree's own unit file
])
def test_validate_ends_cleanly_whatever_path_a_program_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str
) -> None:
    """Every Exec*= program gets a stub in verify's root; a path where a folder stands, below a
    file, or at one of the tree's units gets none (the unit wins) and verify says so: a finding,
    never a traceback, and the host's units stay as they were (the scratch is on /usr's
    filesystem, so its unit folder is hard links)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    before = _host_units()
    spec, _ = edited_spec(tmp_path, "gunicorn_command", ("/usr/local/bin/ledger-sync", program))
    result = run_cli("validate", "--spec", spec)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "systemd-analyze verify" in result.stderr
    assert _host_units() == before
