"""Defects an on-call reading of the generated docs found (issue 15), each pinned by a test."""

from __future__ import annotations

import gzip
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import REPO

from generator import SpecError, build_tree


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
