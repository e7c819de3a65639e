"""Host-failure drills: the host rows (``host_down``, ``partition``) of the production failure
matrices reproduced on the booted fleet, release A installed by its playbook.

How failures are injected (:mod:`fleet`):

* a host powered off = SIGKILL to the machine's PID 1: every process dies at once, and the host
  comes back by booting the same root again (its units start because they are enabled);
* a partition = the host's link to the bridge taken down: packets to and from it are dropped
  while its processes run on;
* the load balancer in front of the API hosts = the test's SSE client, which on a broken stream
  reconnects to the next API host with Last-Event-ID (through the per-host forwarder: the API
  binds 127.0.0.1 on each host).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
import testserver as ts
from fleet_delivery import ENV, Delivery, git
from server_support import FLEET_ROW_ATTR, Drill, Facts

from generator import Tree
from generator.docmodels import HOST_EVENTS

pytestmark = pytest.mark.server

DRILLED: set[tuple[str, str]] = set()
"""(component, event) of every fleet drill; every host row of production must be one."""


def fleet_row(host: str, component: str, event: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Mark a test as the drill of ``host``'s row of ``component`` with ``event``."""
    def deco(fn: Callable[..., None]) -> Callable[..., None]:
        DRILLED.add((component, event))
        setattr(fn, FLEET_ROW_ATTR, (host, component, event))
        return fn
    return deco


@pytest.fixture(scope="module")
def fleet(fleet_delivery: Delivery) -> Iterator[Delivery]:
    """The fleet with release A installed by the hosts.md install block (after test_fleet.py's
    upgrade, rollback and hand edit), every host healthy."""
    d = fleet_delivery
    git(d.repo, "checkout", "-q", d.releases["A"].commit)
    d.run_block(d.blocks[0])
    yield d


class FailoverFollower(ts.SseFollower):
    """An SSE client behind a load balancer: a failed or broken stream is retried on the next API
    host, with Last-Event-ID."""

    def __init__(self, servers: list[ts.Server], job_id: str, timeout: float = 300) -> None:
        super().__init__(servers[0], job_id, timeout)
        self.servers = servers
        self.hosts_used: list[int] = []

    def _connect_once(self) -> bool:
        self.hosts_used.append(self.servers.index(self.server))
        done = super()._connect_once()
        if not done:
            self.server = self.servers[(self.servers.index(self.server) + 1) % len(self.servers)]
            self.retry_ms = 500  # the balancer sends the retry to a live host at once
        return done


def _hc(srv: ts.Server, unit: str) -> int:
    """Run the monitor healthcheck's oneshot on ``srv``; its exit code (-1: it did not run)."""
    t0 = time.monotonic()
    srv.systemctl("start", unit, check=False, timeout=60)
    ran = (srv.mono(unit, "ExecMainStartTimestampMonotonic") or 0) >= t0
    code = int(srv.prop(unit, "ExecMainStatus") or -1) if ran else -1
    srv.systemctl("reset-failed", unit, check=False)
    return code


def _hosts_running(prod: Tree, name: str) -> list[str]:
    spec = prod.builds[f"{ENV}/api1"].plan.spec
    return [h for h, v in spec.hosts.items() if name in v.runs]


def _status(srv: ts.Server, job: str) -> dict[str, object]:
    return ts.job_status(srv.http, job) or {}


def _host_of(status: dict[str, object]) -> str:
    """The host of the worker that last ran a job: its id is zachot-worker-<hostname>-<pid>-<hex>."""
    parts = str(status.get("worker") or "").split("-")
    return "-".join(parts[2:-2]) if len(parts) >= 5 else "?"


def _follow(fl: Delivery, apis: list[str], steps: int, step_s: float) -> tuple[str, FailoverFollower]:
    """Submit a job through the first API host and follow its events until 3 have come."""
    job = ts.submit_job(fl.server(apis[0]).http, steps, step_s)
    follower = FailoverFollower([fl.server(h) for h in apis], job)
    follower.start()
    ts.wait_for(lambda: len(follower.events) >= 3, 60, "3 progress events")
    return job, follower


def _cut_until_progress(fl: Delivery, host: str, follower: FailoverFollower, timeout: float) -> float:
    """Power ``host`` off; seconds until the job's next event reaches the client."""
    n = len(follower.events)
    t0 = time.monotonic()
    fl.fleet.power_cut(host)
    ts.wait_for(lambda: len(follower.events) > n, timeout, f"progress after {host} went off")
    return time.monotonic() - t0


def _check_sse(fd: Drill, follower: ts.SseFollower, steps: int) -> None:
    fd.check("SSE events", "each once, then done", follower.check_exactly_once(steps) or "each once, then done")


def _boot_again(fd: Drill, fl: Delivery, host: str, unit: str, ready: Callable[[], bool]) -> None:
    """Power the host on again; its enabled ``unit`` must come back by itself (``ready``)."""
    back = _power_back(fl, host)
    ts.wait_for(ready, 60, f"{unit} on {host} after boot")
    fd.note(f"{host} booted again in {back:.1f} s; {unit} back by itself (enabled units start at boot)")


def _unit_state(srv: ts.Server, unit: str) -> str:
    """What a unit is doing, for a drill's time-out message: its states, the queued jobs and its journal."""
    st = srv.show(unit, "ActiveState", "SubState", "Result")
    jobs = srv.systemctl("list-jobs", check=False).stdout.strip()
    journal = srv.run(["journalctl", "-b", "-n", "15", "--no-pager", "-u", unit], check=False).stdout
    return f"{unit}: {st}; jobs: {jobs}; journal: {journal}"


def _power_back(fl: Delivery, host: str) -> float:
    srv = fl.server(host)
    t0 = time.monotonic()
    srv.boot()
    ts.wait_for(lambda: srv.active_state("ssh.service") == "active", 60, f"{host} booted")
    return time.monotonic() - t0


@fleet_row("worker1", "worker", "host_down")
def test_worker_host_powered_off_mid_job(fleet: Delivery, fd: Drill, production: Tree) -> None:
    fl = fleet
    workers = _hosts_running(production, "worker")
    apis = _hosts_running(production, "api")
    assert len(workers) >= 2 and len(apis) >= 1, "the drill needs two worker hosts"
    victim, other = workers[0], workers[1]
    unit = Facts(production.builds[f"{ENV}/{victim}"]).service("worker").unit_file
    api = fl.server(apis[0])
    fl.server(other).systemctl("stop", unit)  # the job must start on the victim
    steps = 30
    job, follower = _follow(fl, apis, steps, 1.0)
    fd.check("job runs on", victim, _host_of(_status(api, job)))
    fl.server(other).systemctl("start", unit)
    fd.recover_s = _cut_until_progress(fl, victim, follower, 240)
    follower.join(steps * 1.0 + 120)
    _check_sse(fd, follower, steps)
    st = _status(api, job)
    fd.check("finished on", other, _host_of(st))
    fd.check("resumed after", "heartbeat timeout (60 s) + maintenance", f"{fd.recover_s:.0f} s",
             50 <= fd.recover_s <= 130)
    fd.check_loss("No" if st.get("status") == "done" else "Yes", f"job {st.get('status')}")
    _boot_again(fd, fl, victim, unit, lambda: fl.server(victim).active_state(unit) == "active")
    fd.verify()


@fleet_row("api1", "api", "host_down")
def test_api_host_powered_off_sse_resumes_on_the_other(fleet: Delivery, fd: Drill, production: Tree) -> None:
    fl = fleet
    apis = _hosts_running(production, "api")
    assert len(apis) >= 2, "the drill needs two API hosts"
    victim = apis[0]
    unit = Facts(production.builds[f"{ENV}/{victim}"]).service("api").unit_file
    steps = 16
    _, follower = _follow(fl, apis, steps, 0.5)
    fd.recover_s = _cut_until_progress(fl, victim, follower, 60)
    follower.join(steps * 0.5 + 60)
    _check_sse(fd, follower, steps)
    fd.check("stream moved to", apis[1], apis[follower.hosts_used[-1]])
    fd.check_loss("No" if not follower.check_exactly_once(steps) else "Yes", "events over two API hosts")
    _boot_again(fd, fl, victim, unit, lambda: fl.server(victim).http.get("/readyz").status_code == 200)
    fd.verify()


@fleet_row("redis1", "redis", "host_down")
def test_redis_host_down_and_back(fleet: Delivery, fd: Drill, production: Tree) -> None:
    fl = fleet
    apis = _hosts_running(production, "api")
    workers = _hosts_running(production, "worker")
    redis_host = _hosts_running(production, "redis")[0]
    api = fl.server(apis[0])
    monitor = Facts(production.builds[f"{ENV}/{workers[0]}"]).monitor
    before = ts.submit_job(api.http, 2, 0.1)
    ts.wait_for(lambda: _status(api, before).get("status") == "done", 60, "a job done before the cut")
    fl.fleet.power_cut(redis_host)
    ready = ts.wait_for(lambda: (r := api.http.get("/readyz")).status_code == 503 and r, 30, "/readyz 503")
    fd.check("API /readyz", 503, ready.status_code)
    fd.check("API POST /jobs", 503, api.http.post("/jobs", json={"steps": 1, "step_seconds": 0}).status_code)
    code = ts.wait_for(lambda: (c := _hc(fl.server(workers[0]), f"{monitor.timer_unit}.service")) == 2 and c,
                       60, "worker healthcheck DOWN")
    fd.check(f"worker healthcheck on {workers[0]}", 2, code)
    # A worker host that boots while Redis is still off (a fleet restart): its precheck waits for Redis.
    late = fl.server(workers[0])
    worker = Facts(production.builds[f"{ENV}/{workers[0]}"]).service("worker")
    unit = worker.unit_file

    def wait_lines() -> int:
        out = late.run(["grep", "-c", "WAIT redis", worker.stdout_path], check=False).stdout.strip()
        return int(out or 0)

    waited_before = wait_lines()
    fl.fleet.power_cut(workers[0])
    # Its boot is not over until the worker's start is (multi-user.target orders after it), so
    # power it on in the background, as a fleet comes back: every host at once.
    booting = threading.Thread(target=_power_back, args=(fl, workers[0]), daemon=True)
    booting.start()
    ts.wait_for(lambda: late.active_state(unit) == "activating", 90, lambda: _unit_state(late, unit))
    during = f"{late.active_state(unit)} ({late.prop(unit, 'SubState')})"
    fd.check(f"{unit} on {workers[0]} booted before Redis", "activating (condition)", during,
             during == "activating (condition)")
    # Power Redis on only once the precheck is in its wait loop: its first PING to a host that is
    # off can still be pending (ARP, SYN retries) and would succeed without ever waiting.
    ts.wait_for(lambda: wait_lines() > waited_before, 60, "the precheck's WAIT line", interval=0.5)
    t0 = time.monotonic()
    _power_back(fl, redis_host)
    ts.wait_for(lambda: late.active_state(unit) != "activating", 120, lambda: _unit_state(late, unit))
    booting.join(60)
    waited = wait_lines() - waited_before
    fd.check(f"{unit} on {workers[0]} after Redis is back", "active, no human, precheck waited",
             f"{late.active_state(unit)}, NRestarts {late.prop(unit, 'NRestarts')}, WAIT lines {waited}",
             late.active_state(unit) == "active" and waited == 1)
    ts.wait_for(lambda: api.http.get("/readyz").status_code == 200, 120, "/readyz 200 after Redis is back")
    ready_after = time.monotonic() - t0
    after = ts.wait_for(lambda: _submit(api), 30, "POST /jobs accepted")
    ts.wait_for(lambda: _status(api, after).get("status") == "done", 120, "a new job done after Redis is back")
    fd.recover_s = time.monotonic() - t0
    fd.note(f"from power-on: API ready in {ready_after:.1f} s, a new job done in {fd.recover_s:.1f} s")
    survived = _status(api, before).get("status")
    fd.check_loss("No" if survived == "done" else "Yes", f"the job acknowledged before the cut: {survived}")
    fd.verify()


def _submit(api: ts.Server) -> str | None:
    r = api.http.post("/jobs", json={"steps": 2, "step_seconds": 0.1})
    return str(r.json()["id"]) if r.status_code == 202 else None


@fleet_row("worker1", "worker", "partition")
def test_worker_host_cut_off_from_redis(fleet: Delivery, fd: Drill, production: Tree) -> None:
    fl = fleet
    workers = _hosts_running(production, "worker")
    apis = _hosts_running(production, "api")
    victim, other = workers[0], workers[1]
    facts = Facts(production.builds[f"{ENV}/{victim}"])
    unit, hc_unit = facts.service("worker").unit_file, f"{facts.monitor.timer_unit}.service"
    api = fl.server(apis[0])
    fl.server(other).systemctl("stop", unit)  # the job in flight must be the victim's
    steps = 30
    job, follower = _follow(fl, apis, steps, 1.0)
    fl.server(other).systemctl("start", unit)
    n = len(follower.events)
    t0 = time.monotonic()
    fl.fleet.partition(victim)
    try:
        code = ts.wait_for(lambda: (c := _hc(fl.server(victim), hc_unit)) == 2 and c, 60, "healthcheck DOWN")
        fd.check_hc(code)
        fd.check(f"{unit} on {victim}", "active", fl.server(victim).active_state(unit))
        ts.wait_for(lambda: len(follower.events) > n + 1, 240, "progress on the other worker host")
        fd.note(f"the job went on on {other} {time.monotonic() - t0:.0f} s after the cut")
    finally:
        t1 = time.monotonic()
        fl.fleet.partition(victim, down=False)
    ts.wait_for(lambda: _hc(fl.server(victim), hc_unit) == 0, 120, "healthcheck OK after the network is back")
    fd.recover_s = time.monotonic() - t1
    follower.join(steps * 1.0 + 120)
    _check_sse(fd, follower, steps)
    st = _status(api, job)
    fd.check_loss("No" if st.get("status") == "done" else "Yes", f"job {st.get('status')}")
    fd.check(f"{unit} restarts on {victim}", 0, int(fl.server(victim).prop(unit, "NRestarts") or 0))
    fd.verify()


def test_every_host_row_of_production_is_drilled(production: Tree) -> None:
    rows = {(sv.sc.component, sv.sc.event)
            for folder, b in production.builds.items() if folder and folder.startswith(f"{ENV}/")
            for views in b.plan.scenarios.values() for sv in views
            if sv.sc is not None and sv.sc.event in HOST_EVENTS}
    assert rows == DRILLED, f"host rows without a drill: {sorted(rows - DRILLED)}; drills without a row: " \
                            f"{sorted(DRILLED - rows)}"
