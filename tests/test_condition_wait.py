"""An ExecCondition= check that waits (``healthchecks.<name>.wait_sec``): the unit passes the wait
to the script and raises TimeoutStartSec= over it, the docs say the start waits, and a wait on a
check that runs before no start is refused (issue 15, remote Redis after a reboot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import REPO, assert_render_refuses_at, edited_spec

from generator import build, build_tree
from generator.models import Restart
from generator.semantics import auto_action

UNIT = "root/etc/systemd/system/ingest-consumer.service"
CHECK = "    timeout_sec: 5\n\nfailure_matrix:"


def _unit(spec: Path) -> dict[str, list[str]]:
    """The [Service] directives of the consumer unit of ``spec``, by name."""
    text = build(spec).files[UNIT]
    out: dict[str, list[str]] = {}
    for line in text.split("[Service]", 1)[1].split("[Install]", 1)[0].splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_a_check_without_wait_runs_once_under_systemds_default_start_timeout(tmp_path: Path) -> None:
    spec, _ = edited_spec(tmp_path, "worker_split_group")
    unit = _unit(spec)
    assert unit["ExecCondition"] == ["/opt/ingest/venv/bin/python /opt/ingest/src/ingest/checks/broker_up.py"]
    assert "TimeoutStartSec" not in unit


def test_a_waiting_check_gets_its_wait_and_a_start_timeout_over_it(tmp_path: Path) -> None:
    spec, _ = edited_spec(tmp_path, "worker_split_group", (CHECK, "    timeout_sec: 5\n    wait_sec: 45\n\nfailure_matrix:"))
    unit = _unit(spec)
    assert unit["ExecCondition"][0].endswith("/ingest/checks/broker_up.py --wait 45")
    # 45 s of retries + one more run (timeout_sec 5) + systemd's default 90 s for the start itself
    assert unit["TimeoutStartSec"] == ["140"]


def test_the_docs_say_the_start_waits_and_for_how_long(tmp_path: Path) -> None:
    spec, _ = edited_spec(tmp_path, "worker_split_group", (CHECK, "    timeout_sec: 5\n    wait_sec: 45\n\nfailure_matrix:"))
    files = build(spec).files
    matrix, readme = files["docs/failure_matrix.md"], files["docs/README.md"]
    row = next(ln for ln in matrix.splitlines() if "ExecCondition= вернул 1–254" in ln and ln.startswith("| 1 "))
    assert "повторяется до 45 с (`--wait 45`)" in row and "старт пропущен" in row, row
    assert "broker_up.py --wait 45" in readme


def test_the_repo_spec_waits_for_a_redis_on_another_host() -> None:
    files = build_tree(REPO / "spec").files
    worker = files["production/worker1/root/etc/systemd/system/zachot-worker.service"]
    assert re.search(r"^ExecCondition=.*/redis_check\.py --wait \d+$", worker, re.M), worker
    assert re.search(r"^After=network-online\.target$", worker, re.M)
    assert re.search(r"^TimeoutStartSec=\d+$", worker, re.M)
    # the manual run in the docs answers at once: no --wait there
    readme = files["production/worker1/docs/README.md"]
    assert "redis_check.py; echo $?" in files["production/worker1/docs/failure_matrix.md"]
    assert "redis_check.py --wait" not in readme.split("### Ручной запуск", 1)[1].split("###", 1)[0]


def test_auto_action_of_a_skip_names_the_wait_only_when_there_is_one() -> None:
    r = Restart(policy="on-failure", delay_sec=10, start_limit_interval_sec=300, start_limit_burst=10)
    assert auto_action("condition_skip", r).key == "skip"
    waited = auto_action("condition_skip", r, None, 30)
    assert waited.key == "skip_after_wait" and waited.params["wait"] == 30


@pytest.mark.parametrize(
    ("edit", "marker", "message"),
    [
        ("    wait_sec: 601\n", "wait_sec: 601", "less than or equal to 600"),
        ("    wait_sec: -1\n", "wait_sec: -1", "greater than or equal to 0"),
    ],
)
def test_a_wait_out_of_range_is_refused_at_its_line(tmp_path: Path, edit: str, marker: str, message: str) -> None:
    spec, text = edited_spec(tmp_path, "worker_split_group", (CHECK, f"    timeout_sec: 5\n{edit}\nfailure_matrix:"))
    assert_render_refuses_at(tmp_path, spec, text, marker, "healthchecks.broker_up.wait_sec", message)


def test_a_wait_on_a_monitor_is_refused_at_its_line(tmp_path: Path) -> None:
    spec, text = edited_spec(
        tmp_path, "worker_split_group",
        ("    role: exec_condition\n", "    role: monitor\n    wait_sec: 30\n"),
        ("    exec_condition: broker_up\n", ""),
    )
    assert_render_refuses_at(tmp_path, spec, text, "wait_sec: 30", "healthchecks.broker_up.wait_sec",
                             "only an 'exec_condition' healthcheck waits")
