"""What the failure drills share: the :class:`Env` a drill works in (the booted server, the
facts, the unit names), journal helpers, the ``@row`` registry of drilled failure-matrix rows,
and :func:`restore`, which brings the server back to the installed state around each drill."""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from server_support import (
    ROW_ATTR,
    Deployment,
    Drill,
    Facts,
    expected_action_text,
    wait_services_up,
    worker_heartbeat_age,
)
from testserver import Server, SseFollower, job_status, log, wait_for

from generator.alerts import alert_identifier

# systemd catalog message ids (systemd 252, src/systemd/sd-messages.h)
MSG_PROCESS_EXIT = "98e322203f7a4ed290d09fe03c09fe15"
MSG_FAILURE_RESULT = "d9b373ed55a64feb8242e02dbe79a49c"
MSG_STARTING = "7d4958e842da4a758f6c1cdc7b36dcc5"
MSG_STARTED = "39f53479d3a045ac8e11786248231fbf"
MSG_STOPPING = "de5b426a63be47a7b6ac3eaac82e2f6f"
MSG_STOPPED = "9d1aaa27d60140bd96365438aad20286"
MSG_SKIPPED = "0e4284a0caca4bfc81c0bb6786972673"

DROP_IN = "/run/systemd/system/{unit}.d/50-zachot-drill.conf"

DRILLED: dict[tuple[str, str], str] = {}
"""(component, event or failure text) -> test name; filled by :func:`row`."""


def row(component: str, key: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test as the drill of one failure-matrix row; its ``d`` fixture is that row's Drill."""
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        DRILLED[(component, key)] = fn.__name__
        setattr(fn, ROW_ATTR, (component, key))
        return fn
    return deco



# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

@dataclass
class Env:
    """What a drill needs: the server, the facts, and the unit names."""

    dep: Deployment
    hc_alerts: list[str] = field(default_factory=list)
    """The failure reports the last :meth:`healthcheck` run caused."""

    @property
    def s(self) -> Server:
        return self.dep.server

    @property
    def f(self) -> Facts:
        return self.dep.facts

    @property
    def api(self) -> str:
        return self.f.service("api").unit_file

    @property
    def worker(self) -> str:
        return self.f.service("worker").unit_file

    @property
    def redis(self) -> str:
        return self.f.unit_file("redis")

    @property
    def hc_unit(self) -> str:
        return f"{self.f.monitor.timer_unit}.service"

    def healthcheck(self) -> tuple[int, str]:
        """Start the healthcheck service the timer runs; (its exit code, its output)."""
        cur = self.s.journal_cursor()
        t0 = time.monotonic()
        self.s.systemctl("start", self.hc_unit, check=False, timeout=60)
        ran = (self.s.mono(self.hc_unit, "ExecMainStartTimestampMonotonic") or 0) >= t0
        code = int(self.s.prop(self.hc_unit, "ExecMainStatus") or -1) if ran else -1
        out = self.s.journal_text(cur, self.hc_unit)
        if code != 0:  # a failed run starts the OnFailure= report as a job of its own
            wait_for(lambda: self.alerts(cur, self.hc_unit), 15, f"the failure report of {self.hc_unit}")
        time.sleep(0.5)
        self.hc_alerts = self.alerts(cur, self.hc_unit)
        self.s.systemctl("reset-failed", self.hc_unit, check=False)
        lines = [ln for ln in out.splitlines() if ln.startswith(("OK", "FAIL", "overall"))]
        log(f"  healthcheck -> {code} in {time.monotonic() - t0:.1f} s: " + " | ".join(lines))
        return code, out

    def alerts(self, cursor: str | None, unit: str) -> list[str]:
        """The failure reports of ``unit`` after ``cursor``: journal lines at priority crit from its
        OnFailure= report unit (generator/alerts.py)."""
        name = self.f.project.name
        return [str(e.get("MESSAGE")) for e in self.s.journal(cursor, f"{name}-on-failure@{unit}.service")
                if e.get("SYSLOG_IDENTIFIER") == alert_identifier(name) and e.get("PRIORITY") == "2"]

    def nrestarts(self, unit: str) -> int:
        return int(self.s.prop(unit, "NRestarts") or 0)

    def job(self, job_id: str) -> dict[str, Any] | None:
        return job_status(self.s.http, job_id)

    def wait_job(self, job_id: str, timeout: float, status: str = "done") -> float:
        """Wait for the job's status; returns the host monotonic time it was seen."""
        wait_for(lambda: (self.job(job_id) or {}).get("status") == status, timeout,
                 lambda: f"job {job_id} {status} (now {self.job(job_id)})", interval=0.25)
        return time.monotonic()

    def wait_progress(self, job_id: str, steps_done: int, timeout: float = 30) -> None:
        wait_for(lambda: ((self.job(job_id) or {}).get("steps_done") or 0) >= steps_done, timeout,
                 f"job {job_id} at step {steps_done}", interval=0.1)

    def events(self, cursor: str | None, unit: str) -> list[dict[str, Any]]:
        """systemd's (PID 1's) journal messages about ``unit`` after ``cursor``."""
        return [e for e in self.s.journal(cursor, unit) if str(e.get("_PID")) == "1"]

    def drop_in(self, unit: str, text: str) -> None:
        path = DROP_IN.format(unit=unit)
        self.s.run(["mkdir", "-p", path.rsplit("/", 1)[0]])
        self.s.run(["tee", path], input=text)
        self.s.systemctl("daemon-reload")

    def check_status_detection(self, d: Drill, unit: str, cursor: str | None) -> None:
        """The row's detection "`systemctl status <unit>` → <state>[, в журнале «<text>»]" against
        the server: <state> must begin the ``Active:`` line, each «<text>» must be in the unit's
        journal since ``cursor``."""
        det = str(d.sv.sc.detection)
        m = re.search(r"`systemctl status [^`]+` → ([a-z-]+(?: \([^)]*\))*)", det)
        assert m, f"the row's detection names no `systemctl status` state: {det}"
        quotes = re.findall(r"«([^»]+)»", det)
        status = self.s.systemctl("status", "--no-pager", unit, check=False).stdout
        active = next((ln.strip() for ln in status.splitlines() if ln.strip().startswith("Active:")), "Active: ?")
        active = active.removeprefix("Active: ").split(" since ")[0]
        journal = self.s.journal_text(cursor, unit)
        found = [q for q in quotes if q in journal]
        d.check(f"detection `systemctl status {unit}`", "; ".join([m.group(1), *(f"«{q}» in the journal" for q in quotes)]),
                "; ".join([active, *(f"«{q}» in the journal" for q in found)]),
                active.startswith(m.group(1)) and found == quotes)

    def kill(self, unit: str, sig: str, whom: str = "main") -> float:
        """``systemctl kill --signal=sig --kill-whom=whom unit``; returns host monotonic time."""
        t = time.monotonic()
        self.s.systemctl("kill", f"--signal={sig}", f"--kill-whom={whom}", unit)
        return t


def t_of(e: dict[str, Any]) -> float:
    """A journal entry's CLOCK_MONOTONIC time in seconds (the container shares the host's clock)."""
    return int(e["__MONOTONIC_TIMESTAMP"]) / 1e6


def first(events: list[dict[str, Any]], msg_id: str, after: float = 0, text: str = "") -> dict[str, Any] | None:
    return next((e for e in events if e.get("MESSAGE_ID") == msg_id and t_of(e) >= after
                 and text in str(e.get("MESSAGE", ""))), None)


def restart_delay(env: Env, cursor: str | None, unit: str, timeout: float) -> tuple[float, str, float]:
    """Wait until systemd restarted ``unit`` by itself after its main process died.

    Returns (seconds from the exit to the restart's "Starting", the exit message, time started).
    """
    def started() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        ev = env.events(cursor, unit)
        ex = first(ev, MSG_PROCESS_EXIT, text="Main process exited")
        if ex is None:
            return None
        st = first(ev, MSG_STARTING, after=t_of(ex))
        ok = first(ev, MSG_STARTED, after=t_of(ex))
        return (ex, st, ok) if st and ok else None

    ex, st, ok = wait_for(started, timeout, f"{unit} restarted by systemd", interval=0.2)
    return t_of(st) - t_of(ex), str(ex.get("MESSAGE")), t_of(ok)


def stop_start_events(env: Env, cursor: str | None, unit: str, started: bool = True,
                      timeout: float = 30) -> tuple[float, list[str]]:
    """After a `systemctl restart`: (seconds from "Stopping" to "Stopped", kill/timeout messages)."""
    def complete() -> list[dict[str, Any]] | None:
        ev = env.events(cursor, unit)
        return ev if first(ev, MSG_STOPPING) and first(ev, MSG_STOPPED) and (
            first(ev, MSG_STARTED) or not started) else None

    ev = wait_for(complete, timeout, f"{unit}'s stop/start in the journal")
    stopping, stopped = first(ev, MSG_STOPPING), first(ev, MSG_STOPPED)
    assert stopping and stopped
    killed = [str(e["MESSAGE"]) for e in ev
              if "SIGKILL" in str(e.get("MESSAGE", "")) or "timed out" in str(e.get("MESSAGE", ""))]
    return t_of(stopped) - t_of(stopping), killed


def stop_events(env: Env, cursor: str | None, unit: str) -> tuple[float, list[str]]:
    """After a `systemctl stop`: (seconds from "Stopping" to "Stopped", kill/timeout messages)."""
    return stop_start_events(env, cursor, unit, started=False)


def within(observed: float, expected: float, slack: float) -> bool:
    return expected - 0.05 <= observed <= expected + slack


def exactly_once(followers: list[SseFollower], steps: int) -> list[str]:
    return [f"{f.job_id[:8]}: {p}" for f in followers for p in f.check_exactly_once(steps)]


def followers_for(env: Env, jobs: list[str], timeout: float) -> list[SseFollower]:
    fs = [SseFollower(env.s, j, timeout=timeout) for j in jobs]
    for f in fs:
        f.start()
    return fs


def join_all(fs: list[SseFollower], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for f in fs:
        f.join(max(0.1, deadline - time.monotonic()))
        f.stop_flag.set()


# --------------------------------------------------------------------------------------------
# a healthy server before each drill
# --------------------------------------------------------------------------------------------



def restore(e: Env) -> None:
    s, f = e.s, e.f
    units = [e.redis, e.api, e.worker]
    env_text = "".join(ln + "\n" for ln in e.dep.env_file_lines)
    s.run(f"rm -rf /run/systemd/system/*.d/50-zachot-drill.conf; systemctl unmask --runtime {e.redis} 2>/dev/null;"
          f" printf %s {shlex.quote(env_text)} > {f.project.env_file}; systemctl daemon-reload", check=False)
    for u in units:
        s.systemctl("kill", "--signal=SIGCONT", "--kill-whom=all", u, check=False)
    s.systemctl("reset-failed", check=False)
    s.systemctl("start", *units, check=False, timeout=180)
    wait_services_up(s, f, timeout=120)
    r = s.redis()
    try:
        r.flushall()  # no job or message of another drill left behind
    finally:
        r.close()
    wait_for(lambda: (worker_heartbeat_age(s) or 99) < 2, 30, "the worker's heartbeat after FLUSHALL")
    s.systemctl("reset-failed", check=False)


def settings_default(name: str) -> Any:
    from app.settings import Settings
    return getattr(Settings(), name)



def start_limit_reached(env: Env, cursor: str | None, unit: str, p: dict[str, Any],
                        since: float | None = None) -> tuple[str, bool]:
    """Wait until systemd refuses to start ``unit`` again ("Start request repeated too quickly",
    the StartLimitBurst=/StartLimitIntervalSec= of systemd.unit(5)) after ``cursor``; returns
    (what was observed, whether it matches the plan's ``p``: ``burst`` starts, no sooner than
    ``gives_up_after`` seconds, and each failed start no longer than the doc's ``max_start``).

    A start that fails before its process runs (Result: resources) logs no "Starting" (systemd
    252): its attempts are then counted by their "Failed with result" lines before the refusal, and
    the span runs from ``since`` (host monotonic seconds of the first start, the same clock)."""
    s = env.s
    burst, limit_s = int(p["burst"]), float(p["gives_up_after"])

    def refused() -> dict[str, Any] | None:
        return next((e for e in env.events(cursor, unit)
                     if "Start request repeated too quickly" in str(e.get("MESSAGE", ""))), None)

    refusal = wait_for(refused, limit_s * 2 + 60, f"{unit}: start request repeated too quickly", interval=0.5)
    wait_for(lambda: s.active_state(unit) == "failed", 10, f"{unit} failed")
    ev = env.events(cursor, unit)
    starts = [e for e in ev if e.get("MESSAGE_ID") == MSG_STARTING]
    exits = {str(e.get("MESSAGE")).split(": ", 1)[-1] for e in ev if e.get("MESSAGE_ID") == MSG_PROCESS_EXIT}
    first = t_of(starts[0]) if starts else since
    if not starts:
        starts = [e for e in ev if e.get("MESSAGE_ID") == MSG_FAILURE_RESULT and t_of(e) < t_of(refusal)]
        exits = {str(e.get("MESSAGE")) for e in starts}
    assert first is not None and starts, f"no start of {unit} in the journal: {[e.get('MESSAGE') for e in ev]}"
    span = t_of(refusal) - first
    cycle = span / max(1, len(starts))
    observed = (f"{len(starts)} starts ({', '.join(sorted(exits))}), refused ('Start request repeated too quickly') "
                f"{span:.1f}s after the first ({cycle:.1f}s per cycle = RestartSec {float(p['delay']):g}s + time to "
                f"fail), then {s.active_state(unit)}")
    per_start = cycle - float(p["delay"])
    return observed, len(starts) == burst and limit_s * 0.95 <= span and per_start <= float(p["max_start"])


def check_gives_up(env: Env, d: Drill, unit: str, cursor: str | None, since: float | None = None) -> None:
    """A unit whose every start fails, as the row says: systemd restarts it up to its start limit
    (:func:`start_limit_reached`), reports the failure once (OnFailure=, when it gives up), and
    `systemctl status` shows what the row's detection says (:meth:`Env.check_status_detection`)."""
    a = d.sv.action
    assert a is not None, d.sv
    d.check("auto-action", expected_action_text(d.sv), *start_limit_reached(env, cursor, unit, a.params, since))
    wait_for(lambda: env.alerts(cursor, unit), 15, f"the failure report of {unit}")
    time.sleep(1)
    reports = env.alerts(cursor, unit)
    d.check("failure report (OnFailure=)", "one journal line at crit, when systemd gives up",
            f"{len(reports)}: {reports}", len(reports) == 1 and unit in reports[0])
    env.check_status_detection(d, unit, cursor)
