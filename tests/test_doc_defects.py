"""Defects an on-call reading of the generated docs found (issue 15), each pinned by a test."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO, SPEC_CASES, line_of

from generator import SpecError, build, build_tree, load_spec
from generator.rotation import rotate_in_sandbox


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return build_tree(REPO / "spec").files


def test_a_check_that_tells_failures_apart_names_each_exit(files: dict[str, str]) -> None:
    """Check 4 returns 2 when the queue's keys cannot be read and 1 with no live heartbeat
    (app/healthchecks/worker_healthcheck.py check_queue): the doc tags it with both, worst first."""
    line = next(ln for ln in files["staging/docs/README.md"].splitlines() if ln.startswith("4. **"))
    assert line.endswith("(→ 2 DOWN, 1 DEGRADED)"), line
    assert "нет живого heartbeat — DEGRADED" in line


def test_an_exit_code_a_healthcheck_does_not_have_is_located(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(REPO / "spec", spec)
    hc = spec / "healthchecks.yaml"
    hc.write_text(hc.read_text().replace("fails_as: [2, 1]", "fails_as: [2, 7]", 1))
    (tmp_path / "app").symlink_to(REPO / "app")
    with pytest.raises(SpecError) as exc:
        build_tree(spec)
    assert re.search(r"healthchecks\.yaml:\d+:\d+: healthchecks\.worker_healthcheck\.checks\[3\]\.fails_as: "
                     r"exit code 7 is not in exit_codes", str(exc.value)), str(exc.value)


def test_the_install_list_has_what_the_docs_use(files: dict[str, str]) -> None:
    """The docs' commands start with sudo and check HTTP services with curl; a minimal Debian has neither."""
    def apt(path: str) -> list[str]:
        m = re.search(r"`apt-get install ([^`]+)`", files[path])
        assert m, path
        return m.group(1).split()

    assert {"curl", "sudo"} <= set(apt("staging/docs/README.md"))
    assert "sudo" in apt("production/worker1/docs/README.md") and "curl" not in apt("production/worker1/docs/README.md")
    assert apt("production/redis1/docs/README.md") == ["redis-server", "sudo"]


def test_the_off_server_copy_of_the_env_file_is_not_optional(files: dict[str, str]) -> None:
    """The server-loss runbook restores the env file from a copy: a copy kept only on the lost
    server cannot be it."""
    doc = files["staging/docs/backup_recovery.md"]
    section = doc[doc.index("### 1. Environment"):doc.index("### 2. ")]
    assert "(опционально)" not in section
    assert "Обязательно: копия вне сервера" in section


def test_crash_rows_detect_by_the_restart_counter(files: dict[str, str]) -> None:
    """A crashed unit is active again RestartSec= later: `systemctl status` misses the crash,
    NRestarts does not (systemd.service(5), NRestarts=)."""
    matrix = files["staging/docs/failure_matrix.md"]
    for failure in ("API упал", "API убит OOM killer", "Worker упал"):
        row = next(ln for ln in matrix.splitlines() if ln.startswith(f"| {failure}"))
        assert "NRestarts" in row, row


def test_the_commands_for_rotated_logs_read_compressed_and_plain_archives(files: dict[str, str], tmp_path: Path) -> None:
    """Under delaycompress the newest archive is plain and older ones are gzip: the doc's zgrep
    line, run by the real zgrep on such a folder, finds a line in each (and in the live log)."""
    readme = files["staging/docs/README.md"]
    line = next(ln for ln in readme.splitlines() if ln.startswith("zgrep ") and "api.log" in ln)
    logs = "/opt/zachot/logs"
    (tmp_path / "api.log").write_text("now ERROR live\n")
    (tmp_path / "api.log-2026-12-01").write_text("yesterday ERROR plain\n")
    with gzip.open(tmp_path / "api.log-2026-11-30.gz", "wt") as f:
        f.write("before ERROR gzip\n")
    r = subprocess.run(["sh", "-c", line.replace(logs, str(tmp_path))], capture_output=True, text=True, check=False)
    assert {"now ERROR live", "yesterday ERROR plain", "before ERROR gzip"} <= set(r.stdout.splitlines()), r
    assert any(ln.startswith("zcat -f $(ls -tr ") for ln in readme.splitlines())


def test_a_wrong_log_policy_name_is_reported_as_itself_not_as_a_placeholder(tmp_path: Path) -> None:
    """A wrong `logs.policy` used to surface only as an unknown `${api.rotate}` in backup.yaml, with
    a wrong "did you mean"; the name is the cause, so it is the error, at its own line."""
    spec = tmp_path / "spec"
    shutil.copytree(REPO / "spec", spec)
    services = spec / "services.yaml"
    text = services.read_text()
    assert "      policy: app\n" in text and "${api.rotate}" in (spec / "backup.yaml").read_text()
    services.write_text(text.replace("      policy: app\n", "      policy: apps\n", 1))
    (tmp_path / "app").symlink_to(REPO / "app")
    with pytest.raises(SpecError) as exc:
        build_tree(spec)
    line = text.splitlines().index("      policy: app") + 1
    message = str(exc.value)
    assert f"services.yaml:{line}:15: services.api.logs.policy: unknown log policy 'apps' (known: app)" in message
    assert "placeholder" not in message, message


def test_the_repo_policy_lets_logrotate_f_run_twice_the_same_day(tmp_path: Path) -> None:
    """The docs recommend `logrotate -f`. With a day-only dateformat a second run the same day failed
    ("destination ... already exists", exit 1) and left the log unrotated; the repo's policy has %s,
    so a real logrotate, forced twice one second apart, rotates twice and reports nothing."""
    run = rotate_in_sandbox(load_spec(REPO / "spec"), "api", tmp_path, 2, same_day=True)
    assert run.errors == []
    archives = sorted(f for f in run.files if f.startswith("api.log-"))
    assert len(archives) == 2 and all(re.fullmatch(r"api\.log-2026-01-01-\d{10}(\.gz)?", f) for f in archives), archives


def test_a_day_only_dateformat_is_warned_about_and_documented_as_once_a_day(tmp_path: Path) -> None:
    case = SPEC_CASES["single_api_en"]
    built = build(case)
    text = (case / "spec.yaml").read_text()
    line = line_of(text, "dateformat: -%Y-%m-%d")
    warned = [str(w) for w in built.warnings if "log_policies.plain.dateformat" in str(w)]
    assert len(warned) == 1 and f"spec.yaml:{line}:" in warned[0] and "add %s" in warned[0], warned
    readme = built.files["docs/README.md"]
    assert "# Force a rotation (once a day: the second fails" in readme
    assert "A second rotation on the same day is skipped" in readme and "own name" not in readme
    # and the warning is true: the same two forced runs fail the second time
    run = rotate_in_sandbox(load_spec(case), "web", tmp_path, 2, same_day=True)
    assert len(run.errors) == 1 and "already exists" in run.errors[0], run.errors
