"""Resource limits (generator/limits.py): derived from each runner, set by the spec, refused when
too small for the runner, and written into the units and the README the same way.

The derived numbers are worked out here by hand from the module's documented rule, not read back
from a render. Spec mistakes go through the real CLI; the expected line is found in the edited text.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest
from helpers import REPO, SPEC_CASES, assert_render_refuses_at, edited_spec, run_cli

from generator import build, build_files


def _service(files: dict[str, str], unit: str) -> dict[str, list[str]]:
    """Every ``key=value`` of the unit's [Service] section, keys to all their values."""
    out: dict[str, list[str]] = {}
    section = None
    for line in files[f"root/etc/systemd/system/{unit}.service"].splitlines():
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_the_api_gets_open_files_for_its_connections_and_uvicorn_the_bound() -> None:
    files = build(REPO / "spec", env="staging").files
    api = _service(files, "zachot-api")
    # spec: limit_concurrency 4000 -> 2 descriptors per connection (client socket + Redis) + 1024
    assert api["LimitNOFILE"] == [str(2 * 4000 + 1024)]
    assert "--limit-concurrency 4000 " in api["ExecStart"][0]
    # uvicorn, 1 worker: 40 anyio pool threads + 4 -> 44; 4 × 44 = 176 < the 256 floor
    assert api["TasksMax"] == ["256"]
    worker = _service(files, "zachot-worker")
    # dramatiq threads 2 + 2 consumers × 1 queue = 4 connections -> 2 × 4 + 1024
    assert worker["LimitNOFILE"] == ["1032"]
    assert "MemoryMax" not in api and "OOMScoreAdjust" not in api  # only when the spec sets them
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(files["root/etc/systemd/system/zachot-api.service"])
    assert parser.get("Service", "LimitNOFILE") == "9024"


def test_other_runners_derive_from_their_own_settings_and_a_command_gets_none() -> None:
    files = build_files(SPEC_CASES["gunicorn_command"])
    api = _service(files, "ledger-api")
    # gunicorn, UvicornWorker (async): --worker-connections default 1000 per worker process
    assert api["LimitNOFILE"] == [str(2 * 1000 + 1024)]
    # 1 master + 4 workers × (threads 1 + 40 pool + 2) = 173 -> 4 × 173 = 692
    assert api["TasksMax"] == [str(4 * (1 + 4 * 43))]
    tasks = _service(files, "ledger-tasks")  # a command: nothing known, nothing written
    assert "LimitNOFILE" not in tasks and "TasksMax" not in tasks


def test_spec_values_are_written_as_given_and_the_readme_says_where_each_came_from(tmp_path: Path) -> None:
    spec, _ = edited_spec(
        tmp_path, "gunicorn_command",
        ("    stop: {timeout_sec: 150}\n",
         "    stop: {timeout_sec: 150}\n    limits: {open_files: 4096, tasks: 64, memory_max: 2G, oom_score_adjust: 500}\n"),
    )
    files = build_files(spec)
    tasks = _service(files, "ledger-tasks")
    assert (tasks["LimitNOFILE"], tasks["TasksMax"], tasks["MemoryMax"], tasks["OOMScoreAdjust"]) == (
        ["4096"], ["64"], ["2G"], ["500"])
    readme = files["docs/README.md"]
    row = next(ln for ln in readme.splitlines() if ln.startswith("| `ledger-tasks.service` | `MemoryMax=`"))
    assert "2G" in row and "services.tasks.limits.memory_max" in row
    derived = next(ln for ln in readme.splitlines() if ln.startswith("| `ledger-api.service` | `LimitNOFILE=`"))
    assert "3024" in derived and "--worker-connections 1000" in derived
    limits = readme.split("## Resource limits", 1)[1].split("\n## ", 1)[0]
    sync = [ln for ln in limits.splitlines() if ln.startswith("| `ledger-sync.service` |")]
    assert sync == ["| `ledger-sync.service` | — | — | no limits: the systemd defaults apply |"]


# (case id, old, new, marker on the reported line, dotted path, message regex)
CASES = [
    ("open-files-below-connections",
     "    stop: {timeout_sec: 35, kill_mode: mixed}\n",
     "    stop: {timeout_sec: 35, kill_mode: mixed}\n    limits: {open_files: 1024}\n",
     "limits: {open_files: 1024}", "services.api.limits.open_files",
     r"LimitNOFILE=1024 cannot hold 1000 connections \(--worker-connections 1000\).*at least 2064"),
    ("tasks-below-threads",
     "    stop: {timeout_sec: 35, kill_mode: mixed}\n",
     "    stop: {timeout_sec: 35, kill_mode: mixed}\n    limits: {tasks: 100}\n",
     "limits: {tasks: 100}", "services.api.limits.tasks", r"TasksMax=100 is below the 173 threads"),
    ("memory-below-processes",
     "    stop: {timeout_sec: 35, kill_mode: mixed}\n",
     "    stop: {timeout_sec: 35, kill_mode: mixed}\n    limits: {memory_max: 100M}\n",
     "limits: {memory_max: 100M}", "services.api.limits.memory_max", r"MemoryMax=100M is below 160M"),
    ("memory-not-a-size",
     "    stop: {timeout_sec: 150}\n", "    stop: {timeout_sec: 150}\n    limits: {memory_max: 1.5G}\n",
     "memory_max: 1.5G", "services.tasks.limits.memory_max", r"should match pattern"),
    ("oom-out-of-range",
     "    stop: {timeout_sec: 150}\n", "    stop: {timeout_sec: 150}\n    limits: {oom_score_adjust: -1001}\n",
     "oom_score_adjust: -1001", "services.tasks.limits.oom_score_adjust", r"greater than or equal to -1000"),
    ("unknown-limit",
     "    stop: {timeout_sec: 150}\n", "    stop: {timeout_sec: 150}\n    limits: {nofile: 10}\n",
     "nofile: 10", "services.tasks.limits.nofile", r"unknown field 'nofile'"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_limit_mistakes_are_located(tmp_path: Path, case: tuple[str, str, str, str, str, str]) -> None:
    _, old, new, marker, path, message = case
    spec, text = edited_spec(tmp_path, "gunicorn_command", (old, new))
    assert_render_refuses_at(tmp_path, spec, text, marker, path, message)


def test_a_uvicorn_without_a_bound_gets_the_wide_limit_and_a_spec_value_is_refused(tmp_path: Path) -> None:
    files = build_files(SPEC_CASES["single_api_en"])
    units = [v for k, v in files.items() if k.startswith("root/etc/systemd/system/") and "bin/uvicorn" in v]
    assert len(units) == 1 and "--limit-concurrency" not in units[0]
    assert "\nLimitNOFILE=65536\n" in units[0]
    (tmp_path / "b").mkdir()
    old = "    stop: {timeout_sec: 15}\n"
    spec, _ = edited_spec(tmp_path / "b", "single_api_en", (old, old + "    limits: {open_files: 5000}\n"))
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build", cwd=tmp_path / "b")
    assert result.returncode == 2 and "set runner.limit_concurrency" in result.stderr, result.stderr
