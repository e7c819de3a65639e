"""The derived systemd auto-actions follow systemd.service(5) and systemd.unit(5)."""

from __future__ import annotations

import pytest

from generator.models import Restart, Stop
from generator.semantics import auto_action, condition_outcome, crash_loop_seconds, restarts_on

# systemd.service(5), table "Exit causes and the effect of the Restart= settings":
# which policies restart after a clean exit, an unclean exit code, an unclean signal.
TABLE = {
    "clean_exit": {"always", "on-success"},
    "crash": {"always", "on-failure"},
    "killed": {"always", "on-failure", "on-abnormal", "on-abort"},
    "oom": {"always", "on-failure", "on-abnormal", "on-abort"},
}
POLICIES = ["no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("event", list(TABLE))
def test_restart_table(policy: str, event: str) -> None:
    assert restarts_on(policy, event) is (policy in TABLE[event])  # type: ignore[arg-type]


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("event", ["manual_stop", "hang", "condition_skip"])
def test_events_that_never_restart(policy: str, event: str) -> None:
    r = Restart(policy=policy, delay_sec=1, start_limit_interval_sec=10, start_limit_burst=5)  # type: ignore[arg-type]
    assert auto_action(event, r).key in {"stop_only", "nothing", "skip"}  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "outcome"), [(0, "0"), (1, "skip"), (254, "skip"), (255, "fail")])
def test_exec_condition_codes(code: int, outcome: str) -> None:
    assert condition_outcome(code) == outcome


@pytest.mark.parametrize(
    ("delay", "interval", "burst", "expected"),
    [
        (5, 120, 10, 50),  # 10 starts 5 s apart fit in 120 s: the 11th is refused at 50 s
        (10, 300, 10, 100),
        (30, 60, 5, None),  # starts 30 s apart: never more than 2 in 60 s
        (1, 0, 5, None),  # StartLimitIntervalSec=0 disables the limit
    ],
)
def test_crash_loop_seconds(delay: float, interval: int, burst: int, expected: float | None) -> None:
    r = Restart(policy="on-failure", delay_sec=delay, start_limit_interval_sec=interval, start_limit_burst=burst)
    assert crash_loop_seconds(r) == expected


def test_condition_error_restarts_like_a_failure() -> None:
    r = Restart(policy="on-failure", delay_sec=10, start_limit_interval_sec=300, start_limit_burst=10)
    assert auto_action("condition_error", r).key == "fail_then_restart"
    r_abn = r.model_copy(update={"policy": "on-abnormal"})
    assert auto_action("condition_error", r_abn).key == "fail_no_restart"


def test_manual_restart_reports_the_stop_settings() -> None:
    r = Restart(policy="on-failure", delay_sec=10, start_limit_interval_sec=300, start_limit_burst=10)
    action = auto_action("manual_restart", r, Stop(timeout_sec=90, kill_mode="mixed"))
    assert action.key == "stop_start"
    assert action.params_text["stop_timeout"] == "90" and action.params_text["kill_mode"] == "mixed"
