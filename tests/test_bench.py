"""`python -m bench --quick` runs every measurement and prints its table (bench/run.py).

No time is asserted: the machines are shared and noisy; the table is read, not tested."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO


def test_the_quick_bench_runs_every_measurement_and_prints_the_table() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in proc.stdout.splitlines() if ln.startswith("| ")}
    for what in ("python -c pass (floor)", "import jinja2, yaml, pydantic (floor)", "zachot-gen --help",
                 "zachot-gen check (repo spec, full)", "zachot-gen check (repo spec, unchanged since a clean check)",
                 "render, 10 services", "bare Jinja loop, 10 units (peer)",
                 "honcho export systemd, 10 processes (peer)", "check, 10 services", "validate, 10 services (once)"):
        assert what in rows, (what, proc.stdout)
        assert "refused" not in rows[what], rows[what]
    assert "the Jinja loop" in rows["render, 10 services"] and "honcho" in rows["render, 10 services"]
    assert "tools " in rows["validate, 10 services (once)"] and "× check" in rows["validate, 10 services (once)"]
    # the app's table: a real redis-server and uvicorn (make test installs redis-server)
    for what, figure in (("POST /jobs, 100 from 16 connections (median of 3)", "/s"),
                         ("the same route without Redis work: the HTTP floor (peer)", "/s"),
                         ("create + enqueue in-process (peer)", "/s"),
                         ("SSE, 50 streams on 1 jobs", "50 of 50 got all 6 events in order"),
                         ("Redis connections with 50 streams open", "")):
        assert what in rows and figure in rows[what], (what, proc.stdout)


REFUSED = r"""
from bench.run import PY, measure
failing = "import sys; print(file=sys.stderr); print('spec/services.yaml:1:1: too big', file=sys.stderr); sys.exit(2)"
f = measure("x", [PY, "-c", failing], 3)
print(f.seconds, f.error)
"""


def test_a_refused_run_is_reported_with_its_first_error_line() -> None:
    """A size the generator refuses (a cap, a lint error) shows as its exit code and first stderr
    line in the row, and the bench goes on; it does not count as a time."""
    proc = subprocess.run([sys.executable, "-c", REFUSED], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "None exit 2: spec/services.yaml:1:1: too big", proc.stdout + proc.stderr
