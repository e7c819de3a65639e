"""Failure drills: every row of build/staging/docs/failure_matrix.md reproduced on the booted server.

Each test is named after its row and takes the expectation from the generator's plan
(``ScenarioView.action`` = the doc's "systemd auto-action", ``sc.healthcheck.exit`` = detection,
``sc.data_loss``); it records what the server did in a :class:`~server_support.Drill`, which
fails the test on any mismatch and feeds the table printed at the end of the run. When a drill
disagrees with the doc, the doc or the unit is what needs fixing, not the drill.

How failures are injected (one server: no real OOM, disk or host loss):

* crash = SIGSEGV to the main process (a native crash: systemd sees code=killed/dumped);
* OOM = SIGKILL (what the OOM killer sends; cgroup memory limits are not enforced in this
  nspawn container, so a real OOM kill cannot be provoked for one unit);
* hang = SIGSTOP (process alive, answers nothing) for the API and the worker's process; for
  Redis a Lua script that never returns (it answers BUSY and a SIGTERM only schedules a
  shutdown, so the doc's restart really hangs);
* crash loop / broken precheck = a runtime drop-in or env file that makes every start fail;
* Redis data loss = FLUSHALL (the outcome of a lost disk/server for the app).
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from drill_env import (
    DRILLED,
    DROP_IN,
    MSG_FAILURE_RESULT,
    MSG_PROCESS_EXIT,
    MSG_SKIPPED,
    MSG_STARTING,
    Env,
    check_gives_up,
    exactly_once,
    first,
    followers_for,
    join_all,
    restart_delay,
    row,
    settings_default,
    start_limit_reached,
    stop_events,
    stop_start_events,
    t_of,
    within,
)
from server_support import Drill, Facts, expected_action_text, worker_heartbeat_age
from testserver import submit_job, wait_for

pytestmark = pytest.mark.server


# ============================================================================================
# Redis
# ============================================================================================

def _redis_killed(env: Env, d: Drill, sig: str) -> None:
    """Kill Redis' main process with ``sig``: once with everything running (auto-action and
    detection), once with jobs waiting in the queue around an RDB snapshot, and once right after
    100 jobs were enqueued (data loss: with AOF every one of them completes)."""
    s, r = env.s, env.s.redis()
    live = {k: r.config_get(k)[k] for k in ("save", "appendonly", "appendfsync", "maxmemory-policy")}
    r.close()
    ext = env.f.unit("redis").external
    conf = ext.redis if ext else None
    assert conf is not None, "the repo's Redis is configured by the tree (external_units.redis.redis)"
    want = {"save": " ".join(f"{p.seconds} {p.changes}" for p in conf.save), "appendonly": "yes" if conf.appendonly else "no",
            "appendfsync": conf.appendfsync, "maxmemory-policy": "noeviction"}
    d.check("persistence (spec: external_units.redis.redis, the tree's config)", want, live, want == live)
    a = d.sv.action
    assert a is not None
    inflight = submit_job(s.http, 6, 0.5)
    env.wait_progress(inflight, 1)
    old, n0 = s.main_pid(env.redis), env.nrestarts(env.redis)
    cur = s.journal_cursor()
    t_fail = env.kill(env.redis, sig)
    early, _ = env.healthcheck()
    delay, exit_msg, _ = restart_delay(env, cur, env.redis, 30)
    wait_for(lambda: s.http.get("/readyz").status_code == 200, 30, "/readyz 200 again")
    d.recover_s = time.monotonic() - t_fail
    d.check("auto-action", expected_action_text(d.sv),
            f"restarted {delay:.2f}s after '{exit_msg.split(': ', 1)[-1]}'; NRestarts {n0}->{env.nrestarts(env.redis)}",
            a.key == "restart" and within(delay, float(a.params["delay"]), 0.5)
            and env.nrestarts(env.redis) == n0 + 1 and s.main_pid(env.redis) != old)
    # The job in flight at the kill: Redis came back from its last snapshot, where the job is older
    # or absent; it must end done or gone, never stay "running" with nobody working on it.
    wait_for(lambda: (env.job(inflight) or {"status": "gone"}).get("status") in ("done", "gone"), 60,
             lambda: f"the job in flight at the kill done or gone (now {env.job(inflight)})")
    d.note(f"the job in flight at the kill: {(env.job(inflight) or {'status': 'gone (created after the snapshot)'})['status']}")
    # What the timer's healthcheck sees from now on (the worker has reconnected and beats again).
    wait_for(lambda: (worker_heartbeat_age(s) or 99) < 2, 30, "the worker's heartbeat after the Redis restart")
    late, _ = env.healthcheck()
    d.note(f"healthcheck started right after the kill: exit {early} (it races the {a.params['delay']} s restart); "
           f"once Redis is back: exit {late}")
    d.check_hc(late, env.hc_alerts)
    # Data loss: jobs waiting in the queue on both sides of the last RDB snapshot.
    s.systemctl("stop", env.worker)
    before = submit_job(s.http, 2, 0.1)
    r = s.redis()
    r.save()  # a snapshot point (on its own Debian's `save 3600 1` would take up to an hour)
    r.close()
    after = submit_job(s.http, 2, 0.1)
    cur = s.journal_cursor()
    env.kill(env.redis, sig)
    restart_delay(env, cur, env.redis, 30)
    wait_for(lambda: s.http.get("/readyz").status_code == 200, 30, "/readyz 200 again")
    kept, lost = env.job(before) is not None, env.job(after) is None
    s.systemctl("start", env.worker)
    if kept:
        env.wait_job(before, 30)
    observed = "Partial" if kept and lost else ("Yes" if lost else "No")
    d.check_loss(observed, f"job queued before the last RDB snapshot {'kept' if kept else 'LOST'}, "
                           f"job queued after it {'lost' if lost else 'kept'}")
    # The AOF drill: 100 jobs enqueued with the worker stopped, Redis killed at once after the last.
    s.systemctl("stop", env.worker)
    jobs = [submit_job(s.http, 1, 0) for _ in range(100)]
    cur = s.journal_cursor()
    env.kill(env.redis, sig)
    restart_delay(env, cur, env.redis, 30)
    wait_for(lambda: s.http.get("/readyz").status_code == 200, 30, "/readyz 200 again")
    s.systemctl("start", env.worker)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any((env.job(j) or {}).get("status") not in ("done", None) for j in jobs):
        time.sleep(0.5)
    done = sum((env.job(j) or {}).get("status") == "done" for j in jobs)
    d.note(f"{sig} right after 100 jobs were enqueued: {done} of 100 completed")
    d.check_loss("No" if done == 100 else ("Yes" if done == 0 else "Partial"),
                 f"{done} of 100 jobs enqueued right before the kill completed")


@row("redis", "crash")
def test_redis_process_crashed(env: Env, d: Drill) -> None:
    d.mechanism = "SIGSEGV to redis-server"
    _redis_killed(env, d, "SIGSEGV")
    d.verify()


@row("redis", "oom")
def test_redis_killed_by_oom_killer(env: Env, d: Drill) -> None:
    d.mechanism = "SIGKILL to redis-server, as the OOM killer sends (simulated)"
    _redis_killed(env, d, "SIGKILL")
    d.verify()


@row("redis", "manual_stop")
def test_redis_stopped_by_admin(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "systemctl stop redis-server"
    job = submit_job(s.http, 8, 0.5)
    env.wait_progress(job, 1)
    n0 = env.nrestarts(env.redis)
    t_fail = time.monotonic()
    s.systemctl("stop", env.redis)
    ready, post = s.http.get("/readyz").status_code, s.http.post("/jobs", json={"steps": 1, "step_seconds": 0}).status_code
    code, _ = env.healthcheck()
    d.check_hc(code, env.hc_alerts)
    window = 5.0
    samples = []
    while time.monotonic() < t_fail + window:
        samples.append((env.s.active_state(env.redis), env.s.active_state(env.worker), env.s.active_state(env.api)))
        time.sleep(0.5)
    redis_states = {x[0] for x in samples}
    d.check("auto-action", expected_action_text(d.sv),
            f"Redis {'/'.join(sorted(redis_states))} for {window:g}s, NRestarts {n0}->{env.nrestarts(env.redis)}",
            redis_states == {"inactive"} and env.nrestarts(env.redis) == n0)
    d.check("symptoms: API /readyz and POST /jobs", "503, 503", f"{ready}, {post}")
    worker_states = {x[1] for x in samples} | {x[2] for x in samples}
    d.check("symptoms: worker and API keep running (Wants=)", "active", "/".join(sorted(worker_states)))
    s.systemctl("start", env.redis)  # the doc's manual action
    env.wait_job(job, 60)
    d.recover_s = time.monotonic() - t_fail
    d.check_loss("No" if env.job(job) else "Yes", "the running job finished after `systemctl start` of Redis")
    # What a new start of the worker does while Redis is stopped: a start job pulls in the unit's
    # Wants=/Requires= (systemd.unit(5)), so with Redis among them Redis starts again and the
    # worker with it (the doc's symptoms say so); without them the precheck would skip the start.
    worker = env.f.service("worker")
    pulls = env.redis in (*worker.wants, *worker.requires)
    s.systemctl("stop", env.redis)
    cur = s.journal_cursor()
    s.systemctl("restart", env.worker, check=False)
    time.sleep(1)
    redis_now, worker_now = s.active_state(env.redis), s.active_state(env.worker)
    pulled = first(env.events(cur, env.redis), MSG_STARTING) is not None
    skipped = worker_now == "inactive" and s.prop(env.worker, "Result") == "exec-condition"
    if pulls:
        want, ok = "Redis started again by the worker's start job (Wants=/Requires=), worker active", (
            pulled and redis_now == "active" and worker_now == "active")
    else:
        want, ok = "worker skipped by the precheck (inactive, Result=exec-condition), Redis stays stopped", (
            skipped and redis_now == "inactive")
    d.check("a new worker start while Redis is stopped", want,
            f"worker {worker_now}{' (Result=exec-condition)' if skipped else ''}, Redis {redis_now}"
            + (" — started by the worker's start job" if pulled else ""), ok)
    d.verify()


@row("redis", "hang")
def test_redis_hung(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = ("a Lua script that never returns (EVAL 'while true do end'): Redis answers nothing for "
                   "busy-reply-threshold (5 s), then BUSY, and a SIGTERM only schedules a shutdown it never reaches")
    job = submit_job(s.http, 8, 0.5)
    env.wait_progress(job, 1)
    r = s.redis()
    r.save()  # the last RDB snapshot: what a SIGKILLed Redis comes back with
    r.close()
    env.wait_progress(job, 3)
    pid, n0 = s.main_pid(env.redis), env.nrestarts(env.redis)
    t_fail = time.monotonic()
    s.run(["sh", "-c", "setsid redis-cli EVAL 'while true do end' 0 >/dev/null 2>&1 &"])
    at_hang = (env.job(job) or {}).get("steps_done")
    time.sleep(0.5)
    t0 = time.monotonic()
    ready = s.http.get("/readyz", timeout=15).status_code
    d.note(f"/readyz answered {ready} after {time.monotonic() - t0:.1f} s")
    code, _ = env.healthcheck()
    d.check_hc(code, env.hc_alerts)
    d.check("symptoms: /readyz", 503, ready)
    time.sleep(max(0.0, t_fail + 6 - time.monotonic()))
    ping = s.run(["timeout", "5", "redis-cli", "ping"], check=False)
    d.check("detection `redis-cli ping`", "no answer or BUSY",
            f"exit {ping.returncode}: {(ping.stdout + ping.stderr).strip()[:60]}",
            ping.returncode != 0 or "BUSY" in ping.stdout + ping.stderr)
    d.check("auto-action", expected_action_text(d.sv),
            f"after 6s: {s.active_state(env.redis)}, same PID {s.main_pid(env.redis) == pid}, "
            f"NRestarts {n0}->{env.nrestarts(env.redis)}",
            s.active_state(env.redis) == "active" and s.main_pid(env.redis) == pid and env.nrestarts(env.redis) == n0)
    ext = env.f.unit("redis").external
    assert ext is not None
    want_stop = "infinity" if ext.stop_timeout_sec == "infinity" else f"{ext.stop_timeout_sec:g}s"
    d.check("TimeoutStopSec= of the packaged unit (spec: stop_timeout_sec)", want_stop,
            s.prop(env.redis, "TimeoutStopUSec"))
    # The doc's manual action, as an operator would start it; it does not return (a second shell
    # is needed), so it runs --no-block here and the unit's state is watched.
    manual = re.search(r"`(systemctl restart [^`]+)`", str(d.sv.sc.manual_action))
    fallback = re.search(r"`(systemctl kill -s SIGKILL [^`]+)`", str(d.sv.sc.manual_action))
    assert manual and fallback, d.sv.sc.manual_action
    s.run(manual.group(1).replace("systemctl restart", "systemctl restart --no-block", 1))
    wait = 10.0 if ext.stop_timeout_sec == "infinity" else float(ext.stop_timeout_sec) + 5
    time.sleep(wait)
    stuck = f"{s.active_state(env.redis)}/{s.prop(env.redis, 'SubState')}"
    d.check(f"`{manual.group(1)}` {wait:g} s later", "still stopping (no stop timeout, no SIGKILL)"
            if ext.stop_timeout_sec == "infinity" else "restarted (systemd sent SIGKILL after TimeoutStopSec=)",
            stuck, stuck.startswith("deactivating") if ext.stop_timeout_sec == "infinity" else stuck == "active/running")
    s.run(fallback.group(1))
    wait_for(lambda: s.active_state(env.redis) == "active" and s.main_pid(env.redis) not in (0, pid), 30,
             "Redis started again after the fallback SIGKILL")
    wait_for(lambda: s.http.get("/readyz").status_code == 200, 30, "/readyz 200 after the fallback")
    d.recover_s = time.monotonic() - t_fail
    back = env.job(job)
    d.check(f"fallback `{fallback.group(1)}`", "Redis started again by the waiting restart job, new PID",
            f"{s.active_state(env.redis)}, new PID {s.main_pid(env.redis) != pid}",
            s.active_state(env.redis) == "active" and s.main_pid(env.redis) != pid)
    if back is not None:
        env.wait_job(job, 120)
    observed = "Yes" if back is None else ("Partial" if (back.get("steps_done") or 0) < (at_hang or 0) else "No")
    fresh = submit_job(s.http, 1, 0)
    env.wait_job(fresh, 30)
    d.check_loss(observed, f"job at step {at_hang} when Redis hung; back at step "
                           f"{back.get('steps_done') if back else '—'} from the RDB snapshot; "
                           f"{'done, the lost steps run again' if back else 'LOST'}")
    d.verify()


# ============================================================================================
# API
# ============================================================================================

def _api_died(env: Env, d: Drill, sig: str) -> None:
    s = env.s
    steps = 10
    job = submit_job(s.http, steps, 0.5)
    fs = followers_for(env, [job], 90)
    wait_for(lambda: fs[0].events, 20, "first SSE event")
    old, n0 = s.main_pid(env.api), env.nrestarts(env.api)
    cur = s.journal_cursor()
    t_fail = env.kill(env.api, sig)
    delay, exit_msg, _ = restart_delay(env, cur, env.api, 60)
    wait_for(lambda: s.http.get("/healthz").status_code == 200, 30, "/healthz 200")
    d.recover_s = time.monotonic() - t_fail
    a = d.sv.action
    assert a is not None
    d.check("auto-action", expected_action_text(d.sv),
            f"restarted {delay:.2f}s after '{exit_msg.split(': ', 1)[-1]}'; NRestarts {n0}->{env.nrestarts(env.api)}",
            a.key == "restart" and within(delay, float(a.params["delay"]), 1.0)
            and env.nrestarts(env.api) == n0 + 1 and s.main_pid(env.api) != old)
    env.wait_job(job, 60)
    join_all(fs, 30)
    problems = exactly_once(fs, steps)
    d.check("SSE clients reconnect with Last-Event-ID and miss nothing", "every event once",
            "; ".join(problems) or f"every event once over {fs[0].connections} connections",
            not problems and fs[0].connections >= 2)
    d.check_loss("No" if not problems else "Yes", "job done, stream complete")


@row("api", "crash")
def test_api_crashed(env: Env, d: Drill) -> None:
    d.mechanism = "SIGSEGV to uvicorn (no way to make it exit ≠ 0 mid-run from outside; Restart=on-failure treats both alike)"
    _api_died(env, d, "SIGSEGV")
    d.verify()


@row("api", "oom")
def test_api_killed_by_oom_killer(env: Env, d: Drill) -> None:
    d.mechanism = "SIGKILL to uvicorn, as the OOM killer sends (simulated)"
    _api_died(env, d, "SIGKILL")
    d.verify()


@row("api", "manual_restart")
def test_api_restarted_with_open_sse_streams(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "systemctl restart zachot-api with 3 open SSE streams"
    steps = 12
    jobs = [submit_job(s.http, steps, 0.5) for _ in range(2)]
    fs = followers_for(env, [jobs[0], jobs[0], jobs[1]], 120)
    wait_for(lambda: all(f.events for f in fs), 20, "an SSE event on every stream")
    cur = s.journal_cursor()
    t0 = time.monotonic()
    s.systemctl("restart", env.api, timeout=120)
    cmd_s = time.monotonic() - t0
    wait_for(lambda: s.http.get("/healthz").status_code == 200, 30, "/healthz 200")
    d.recover_s = time.monotonic() - t0
    stop_s, killed = stop_start_events(env, cur, env.api)
    a = d.sv.action
    assert a is not None
    d.check("auto-action", expected_action_text(d.sv),
            f"SIGTERM, stopped in {stop_s:.2f}s{' then ' + '; '.join(killed) if killed else ' (no SIGKILL)'}, started again"
            f" (systemctl restart took {cmd_s:.1f}s)",
            a.key == "stop_start" and stop_s < float(a.params["stop_timeout"]) and not killed
            and s.active_state(env.api) == "active")
    d.note(f"SSE streams closed and the API stopped in {stop_s:.2f} s (doc comment: ~1 s)")
    for j in jobs:
        env.wait_job(j, 60)
    join_all(fs, 30)
    problems = exactly_once(fs, steps)
    d.check("SSE clients reconnect with Last-Event-ID and miss nothing", "every event once on each stream",
            "; ".join(problems) or f"every event once; connections per stream {[f.connections for f in fs]}",
            not problems and all(f.connections >= 2 for f in fs))
    d.check_loss("No" if not problems else "Yes", "jobs done, every stream complete")
    d.verify()


@row("api", "hang")
def test_api_hung(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "SIGSTOP to uvicorn"
    pid, n0 = s.main_pid(env.api), env.nrestarts(env.api)
    t_fail = env.kill(env.api, "SIGSTOP")
    doc_cmd = re.search(r"`(curl [^`]+)`", str(d.sv.sc.detection))
    assert doc_cmd, d.sv.sc.detection
    r = s.run(doc_cmd.group(1), check=False, timeout=30)
    d.check(f"detection `{doc_cmd.group(1)}`", "no answer (curl exit 28, timeout)", f"curl exit {r.returncode}",
            r.returncode == 28)
    time.sleep(max(0.0, t_fail + 7 - time.monotonic()))
    d.check("auto-action", expected_action_text(d.sv),
            f"after 7s: {s.active_state(env.api)}, same PID {s.main_pid(env.api) == pid}, "
            f"NRestarts {n0}->{env.nrestarts(env.api)}",
            s.active_state(env.api) == "active" and s.main_pid(env.api) == pid and env.nrestarts(env.api) == n0)
    manual = re.search(r"`(systemctl restart [^`]+)`", str(d.sv.sc.manual_action))
    assert manual, d.sv.sc.manual_action
    t0 = time.monotonic()
    s.run(manual.group(1), timeout=120)
    d.note(f"`{manual.group(1)}` of the stopped API took {time.monotonic() - t0:.1f} s")
    wait_for(lambda: s.http.get("/healthz").status_code == 200, 30, "/healthz 200")
    d.recover_s = time.monotonic() - t_fail
    d.check_loss("No", "the API holds no job state")
    d.verify()




def _crash_loop(env: Env, d: Drill, unit: str, variable: str, hc: bool) -> None:
    """Make every start of ``unit`` fail (a bad ZACHOT_* value in a runtime drop-in) and count
    the starts until systemd gives up with start-limit-hit."""
    s = env.s
    a = d.sv.action
    assert a is not None and a.key == "restart_then_limit", a
    env.drop_in(unit, f"[Service]\nEnvironment={variable}=not-a-number\n")
    s.systemctl("reset-failed", unit, check=False)
    cur = s.journal_cursor()
    t_fault = time.monotonic()
    s.systemctl("restart", unit, check=False)
    check_gives_up(env, d, unit, cur)
    if hc:  # the state the doc's detection describes: the unit failed, the loop over
        hc_code, _ = env.healthcheck()
        d.check_hc(hc_code, env.hc_alerts)
    # The doc's manual action: fix the cause, then reset-failed && start.
    s.run(f"rm -f {DROP_IN.format(unit=unit)}")
    s.systemctl("daemon-reload")
    manual = re.search(r"`(systemctl reset-failed [^`]+)`", str(d.sv.sc.manual_action))
    assert manual, d.sv.sc.manual_action
    t_limit = time.monotonic()
    s.run(manual.group(1), timeout=120)
    wait_for(lambda: s.active_state(unit) == "active", 30, f"{unit} active after the manual action")
    d.recover_s = time.monotonic() - t_fault  # the whole outage: the loop, then the manual action
    d.note(f"the loop lasted {t_limit - t_fault:.0f} s; active {time.monotonic() - t_limit:.1f} s after the manual action")
    d.check_loss("No", "nothing is lost while the unit does not start")


@row("api", "crash_loop")
def test_api_crashes_on_every_start(env: Env, d: Drill) -> None:
    d.mechanism = "drop-in Environment=ZACHOT_SSE_KEEPALIVE_SECONDS=not-a-number (uvicorn exits 3 at startup)"
    _crash_loop(env, d, env.api, "ZACHOT_SSE_KEEPALIVE_SECONDS", hc=False)
    d.verify()


# ============================================================================================
# Worker
# ============================================================================================

def _recovery_timeout() -> float:
    return settings_default("heartbeat_timeout_ms") / 1000 + 90


@row("worker", "crash")
def test_worker_crashed(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "SIGKILL to the dramatiq worker process: the main process exits 1"
    steps = 6
    job = submit_job(s.http, steps, 1.0)
    fs = followers_for(env, [job], _recovery_timeout() + 60)
    env.wait_progress(job, 1)
    main, n0 = s.main_pid(env.worker), env.nrestarts(env.worker)
    child = s.children_of(main)[0]
    cur = s.journal_cursor()
    t_fail = time.monotonic()
    s.run(["kill", "-KILL", str(child)])
    wait_for(lambda: first(env.events(cur, env.worker), MSG_PROCESS_EXIT, text="Main process exited"), 20,
             "the main process to exit")
    code, _ = env.healthcheck()
    d.check_hc(code, env.hc_alerts)
    r = s.redis()
    kept = any(job in v for v in r.hvals("dramatiq:default.msgs"))
    r.close()
    delay, exit_msg, _ = restart_delay(env, cur, env.worker, 60)
    a = d.sv.action
    assert a is not None
    d.check("auto-action", expected_action_text(d.sv),
            f"restarted {delay:.2f}s after '{exit_msg.split(': ', 1)[-1]}'; NRestarts {n0}->{env.nrestarts(env.worker)}",
            a.key == "restart" and within(delay, float(a.params["delay"]), 1.5)
            and env.nrestarts(env.worker) == n0 + 1 and "code=exited" in exit_msg)
    d.check("the unfinished message stays in Redis", "kept", "kept" if kept else "gone", kept)
    t_done = env.wait_job(job, _recovery_timeout())
    d.recover_s = t_done - t_fail
    join_all(fs, 30)
    problems = exactly_once(fs, steps)
    d.note(f"job finished {d.recover_s:.0f} s after the crash (message requeued after the heartbeat timeout)")
    d.check_loss("No" if not problems else "Yes", "; ".join(problems) or "job done, every event once")
    d.verify()


@row("worker", "killed")
def test_worker_killed_mid_job(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "systemctl kill --signal=SIGKILL (every process of the unit)"
    steps = 8
    job = submit_job(s.http, steps, 1.0)
    fs = followers_for(env, [job], _recovery_timeout() + 60)
    env.wait_progress(job, 2)
    n0 = env.nrestarts(env.worker)
    done_before = (env.job(job) or {})["steps_done"]
    cur = s.journal_cursor()
    t_fail = env.kill(env.worker, "SIGKILL", whom="all")
    code, _ = env.healthcheck()
    d.check_hc(code, env.hc_alerts)
    delay, exit_msg, t_started = restart_delay(env, cur, env.worker, 60)
    a = d.sv.action
    assert a is not None
    d.check("auto-action", expected_action_text(d.sv),
            f"restarted {delay:.2f}s after '{exit_msg.split(': ', 1)[-1]}'; NRestarts {n0}->{env.nrestarts(env.worker)}",
            a.key == "restart" and within(delay, float(a.params["delay"]), 1.5) and env.nrestarts(env.worker) == n0 + 1)
    wait_for(lambda: ((env.job(job) or {}).get("steps_done") or 0) > done_before + 1, _recovery_timeout(),
             "the job to make progress again", interval=0.5)
    t_resumed = time.monotonic()
    t_done = env.wait_job(job, 60)
    d.recover_s = t_resumed - t_fail
    join_all(fs, 30)
    st = env.job(job) or {}
    problems = exactly_once(fs, steps)
    hb = settings_default("heartbeat_timeout_ms") / 1000
    d.note(f"worker back {t_started - t_fail:.1f} s after SIGKILL; job resumed after {t_resumed - t_fail:.1f} s "
           f"(heartbeat timeout {hb:g} s + maintenance chance); done after "
           f"{t_done - t_fail:.1f} s; attempts {st.get('attempts')}")
    p99 = max((int(x) for x in re.findall(r"≈\s*(\d+)", str(d.sv.sc.comment))), default=int(hb) + 35)
    d.check(f"job resumes within the doc comment's p99 (≈{p99} s)", f"≤ {p99} s", f"{t_resumed - t_fail:.1f} s",
            t_resumed - t_fail <= p99 + 5)
    d.check_loss("No" if not problems and st.get("status") == "done" else "Yes",
                 "; ".join(problems) or f"resumed after step {done_before}, every event once")
    d.verify()


@row("worker", "manual_restart")
def test_worker_stopped_or_restarted_mid_job(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "systemctl restart, then systemctl stop + start, each mid-job (3 jobs, 2 threads)"
    steps = 6
    jobs = [submit_job(s.http, steps, 1.0) for _ in range(3)]
    fs = followers_for(env, jobs, 120)
    wait_for(lambda: sum(((env.job(j) or {}).get("steps_done") or 0) >= 1 for j in jobs) >= 2, 30, "2 jobs running")
    a = d.sv.action
    assert a is not None
    cur = s.journal_cursor()
    s.systemctl("restart", env.worker, timeout=200)
    stop_s, killed = stop_start_events(env, cur, env.worker)
    d.check("auto-action (restart)", expected_action_text(d.sv),
            f"stopped in {stop_s:.2f}s{' then ' + '; '.join(killed) if killed else ' by SIGTERM (no SIGKILL)'}, started again",
            stop_s < float(a.params["stop_timeout"]) and not killed and s.active_state(env.worker) == "active")
    d.note(f"`systemctl restart`: the unit stopped in {stop_s:.2f} s")
    # `systemctl stop`: how fast the running jobs are handed back, the unit stays down (no Restart=),
    # the jobs wait, `start` resumes them.
    wait_for(lambda: sum(((env.job(j) or {}).get("status")) == "running" for j in jobs) >= 1, 30, "a job running again")
    running = [j for j in jobs if (env.job(j) or {}).get("status") == "running"]
    cur = s.journal_cursor()
    stopper = threading.Thread(target=s.systemctl, args=("stop", env.worker), kwargs={"timeout": 200})
    t_stop = time.monotonic()
    stopper.start()
    t_back = wait_for(lambda: all((env.job(j) or {}).get("status") == "queued" for j in running) and time.monotonic(),
                      30, "the running jobs back to queued", interval=0.05)
    stopper.join(200)
    stop2_s, killed2 = stop_events(env, cur, env.worker)
    m_lim = re.search(r"<\s*(\d+(?:[.,]\d+)?)", str(d.sv.sc.comment))
    limit = float(m_lim.group(1).replace(",", ".")) if m_lim else 2.0
    d.check(f"task interrupted between steps, message back in the queue (doc comment: < {limit:g} s)",
            f"< {limit:g} s",
            f"{len(running)} running job(s) queued again {t_back - t_stop:.2f} s after `systemctl stop`; the unit "
            f"stopped in {stop2_s:.2f} s{' then ' + '; '.join(killed2) if killed2 else ''}",
            t_back - t_stop < limit and not killed2)
    statuses = [(env.job(j) or {}).get("status") for j in jobs]
    time.sleep(float(a.params["delay"]) + 2)
    stayed = s.active_state(env.worker)
    d.check("after `systemctl stop` (Restart= not triggered)", f"inactive for RestartSec+2 = {float(a.params['delay']) + 2:g}s",
            f"{stayed}; job statuses {statuses}", stayed == "inactive" and "running" not in statuses)
    s.systemctl("start", env.worker)
    for j in jobs:
        env.wait_job(j, 90)
    d.recover_s = time.monotonic() - t_stop
    join_all(fs, 30)
    problems = exactly_once(fs, steps)
    attempts = [(env.job(j) or {}).get("attempts") for j in jobs]
    d.check_loss("No" if not problems else "Yes", "; ".join(problems) or f"3 jobs done, every event once, attempts {attempts}")
    d.verify()


@row("worker", "condition_skip")
def test_worker_start_while_redis_unavailable(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = ("Redis stopped and masked (it cannot be started: a plain `systemctl stop` is undone by the "
                   "worker's Wants=), then systemctl start of the worker; later a start during which Redis returns")
    a = d.sv.action
    assert a is not None
    wait = float(a.params.get("wait", 0))
    s.systemctl("stop", env.worker)
    job = submit_job(s.http, 2, 0.2)
    s.systemctl("mask", "--runtime", env.redis)
    s.systemctl("stop", env.redis)
    n0 = env.nrestarts(env.worker)
    cur = s.journal_cursor()
    t0 = time.monotonic()
    s.systemctl("start", "--no-block", env.worker)
    if wait:  # the precheck retries: the start is still on, in ExecCondition=
        time.sleep(3)
        during = f"{s.active_state(env.worker)} ({s.prop(env.worker, 'SubState')})"
        d.check("while the precheck waits", "activating (condition)", during, during == "activating (condition)")
    wait_for(lambda: s.active_state(env.worker) != "activating", wait + 60, "the start to end")
    took = time.monotonic() - t0
    state, result, failed = (s.active_state(env.worker), s.prop(env.worker, "Result"),
                             s.systemctl("is-failed", env.worker, check=False).stdout.strip())
    log_lines = s.run(["tail", "-n", "2", env.f.service("worker").stdout_path]).stdout.strip().splitlines()
    env.check_status_detection(d, env.worker, cur)
    code, _ = env.healthcheck()
    d.check_hc(code, env.hc_alerts)
    time.sleep(max(0.0, t0 + took + float(a.params["delay"]) + 3 - time.monotonic()))
    ev = env.events(cur, env.worker)
    attempts = [e for e in ev if e.get("MESSAGE_ID") == MSG_SKIPPED]
    d.check("auto-action", expected_action_text(d.sv),
            f"start took {took:.0f} s; {state} (is-failed: {failed}), Result={result}; "
            f"{len(attempts)} skipped start(s), NRestarts {n0}->{env.nrestarts(env.worker)}; "
            f"precheck said {' / '.join(ln[25:85] for ln in log_lines)}",
            state == "inactive" and failed != "failed" and result == "exec-condition" and len(attempts) == 1
            and env.nrestarts(env.worker) == n0 and wait <= took <= wait + 30
            and (not wait or (log_lines[0][25:].startswith("WAIT redis") and f"tries in {wait:.0f} s" in log_lines[-1])))
    alone = s.active_state(env.worker)
    d.check("after the skip (doc: a human must start the worker)",
            f"still inactive after RestartSec+3 = {float(a.params['delay']) + 3:g}s", alone, alone == "inactive")
    if wait:  # the comment: a Redis back within the wait is waited for -- as at boot, Redis on a later host
        s.systemctl("start", "--no-block", env.worker)
        time.sleep(min(10.0, wait / 3))
        s.systemctl("unmask", "--runtime", env.redis)
        s.systemctl("start", env.redis)
        t_back = time.monotonic()
        wait_for(lambda: s.active_state(env.worker) != "activating", wait + 30, "the waiting start to end")
        came = s.active_state(env.worker)
        d.check("Redis back while the start waits", "the worker starts by itself", came, came == "active")
    else:
        s.systemctl("unmask", "--runtime", env.redis)
        s.systemctl("start", env.redis)
        t_back = time.monotonic()
        s.systemctl("start", env.worker)  # the doc's manual action
    env.wait_job(job, 60)
    d.recover_s = time.monotonic() - t_back
    d.check_loss("No" if env.job(job) else "Yes", "the queued job survived and finished")
    d.verify()


@row("worker", "condition_error")
def test_worker_precheck_broken(env: Env, d: Drill) -> None:
    s, f = env.s, env.f
    d.mechanism = "ZACHOT_REDIS_URL=bogus://nowhere in the env file"
    a = d.sv.action
    assert a is not None
    s.run(f"sed -i 's|^ZACHOT_REDIS_URL=.*|ZACHOT_REDIS_URL=bogus://nowhere|' {f.project.env_file}")
    n0 = env.nrestarts(env.worker)
    cur = s.journal_cursor()
    t0 = time.monotonic()
    r = s.systemctl("restart", env.worker, check=False)
    wait_for(lambda: first(env.events(cur, env.worker), MSG_FAILURE_RESULT), 30, "the start to fail")
    state = f"{s.active_state(env.worker)}/{s.prop(env.worker, 'SubState')}"
    is_failed = s.systemctl("is-failed", env.worker, check=False).stdout.strip()
    ev = env.events(cur, env.worker)
    cond_exit = [str(e["MESSAGE"]).split(": ", 1)[-1] for e in ev if e.get("MESSAGE_ID") == MSG_PROCESS_EXIT]
    fail = first(ev, MSG_FAILURE_RESULT)
    assert fail is not None
    again = wait_for(lambda: first(env.events(cur, env.worker), MSG_STARTING, after=t_of(fail)),
                     float(a.params["delay"]) + 15, "the automatic restart")
    delay = t_of(again) - t_of(fail)
    d.check("auto-action", expected_action_text(d.sv),
            f"systemctl restart exit {r.returncode}; '{str(fail['MESSAGE']).split(': ', 1)[-1]}' "
            f"({'; '.join(cond_exit)}); then {state}, is-failed: {is_failed}; restarted {delay:.2f}s later",
            any("status=255" in c for c in cond_exit) and "exit-code" in str(fail["MESSAGE"])
            and within(delay, float(a.params["delay"]), 1.5))
    doc_cmd = re.search(r"`([^`]*redis_check\.py; echo \$\?)`", str(d.sv.sc.detection))
    assert doc_cmd, d.sv.sc.detection
    out = s.run(doc_cmd.group(1), check=False).stdout.strip().splitlines()
    d.check(f"detection `{doc_cmd.group(1)}`", "255", f"{out[-1] if out else '?'} ({out[0][:60] if out else ''})",
            bool(out) and out[-1] == "255")
    # manual action, as a person reading `systemctl status` (activating (auto-restart)) would do it:
    # fix the env file, then reset-failed && start (not while a restart attempt is running)
    wait_for(lambda: s.prop(env.worker, "SubState") == "auto-restart", float(a.params["delay"]) + 15,
             "the worker waiting to restart")
    env.check_status_detection(d, env.worker, cur)
    # ...until the start limit (the label's "after {burst} starts in {interval} s it stays failed")
    if a.params["gives_up_after"] is not None:
        d.check("start limit", f"failed after {a.params['burst']} starts (≥ {a.params['gives_up_after']} s)",
                *start_limit_reached(env, cur, env.worker, a.params))
    n1 = env.nrestarts(env.worker)
    s.run(["tee", f.project.env_file], input="".join(ln + "\n" for ln in env.dep.env_file_lines))
    manual = re.search(r"`(systemctl reset-failed [^`]+)`", str(d.sv.sc.manual_action))
    assert manual, d.sv.sc.manual_action
    s.run(manual.group(1), timeout=120)
    wait_for(lambda: s.active_state(env.worker) == "active", 30, "worker active")
    d.recover_s = time.monotonic() - t0
    d.note(f"NRestarts {n0}->{n1} before the fix")
    d.check_loss("No", "no job involved; queued jobs wait in Redis")
    d.verify()


@row("worker", "hang")
def test_worker_hung(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "SIGSTOP to the dramatiq worker process (the main process stays alive): a whole frozen process"
    codes = {ec.status: code for code, ec in env.f.monitor.hc.exit_codes.items()}
    timeout_s = settings_default("heartbeat_timeout_ms") / 1000
    a = d.sv.action
    assert a is not None
    steps = 5
    job = submit_job(s.http, steps, 1.0)
    fs = followers_for(env, [job], 400)
    env.wait_progress(job, 1)
    main, n0 = s.main_pid(env.worker), env.nrestarts(env.worker)
    child = s.children_of(main)[0]
    t_fail = time.monotonic()
    s.run(["kill", "-STOP", str(child)])
    at = (env.job(job) or {}).get("steps_done")
    code, _ = env.healthcheck()
    d.check("detection: healthcheck while the heartbeat is fresh (doc: OK)", codes["OK"], code)
    time.sleep(max(0.0, t_fail + 6 - time.monotonic()))
    still = (env.job(job) or {}).get("steps_done")
    d.check("auto-action", expected_action_text(d.sv),
            f"after 6s: {s.active_state(env.worker)}, same PID {s.main_pid(env.worker) == main}, "
            f"NRestarts {n0}->{env.nrestarts(env.worker)}; job stuck at step {still}",
            s.active_state(env.worker) == "active" and s.main_pid(env.worker) == main
            and env.nrestarts(env.worker) == n0 and still == at)
    # The doc's manual action, started now (it may take up to TimeoutStopSec=, so --no-block).
    manual = re.search(r"`(systemctl restart [^`]+)`", str(d.sv.sc.manual_action))
    assert manual, d.sv.sc.manual_action
    cur = s.journal_cursor()
    t_restart = time.monotonic()
    s.run(manual.group(1).replace("systemctl restart", "systemctl restart --no-block", 1))
    # Meanwhile the frozen process sends no heartbeat: after heartbeat_timeout the healthcheck says so.
    wait_for(lambda: (worker_heartbeat_age(s) or 0) > timeout_s + 1 or s.active_state(env.worker) == "active",
             timeout_s + 30, "the frozen worker's heartbeat to go stale")
    if s.active_state(env.worker) != "active":
        code, _ = env.healthcheck()
        d.check(f"detection: healthcheck after heartbeat_timeout ({timeout_s:g} s; doc: DEGRADED)",
                codes["DEGRADED"], code)
    stop_s, killed = stop_start_events(env, cur, env.worker, timeout=float(a.params["stop_timeout"]) + 60)
    # systemd.kill(5): KillMode=mixed sends SIGTERM (and SIGCONT) to the main process only, so a
    # frozen child stays frozen until the final SIGKILL after TimeoutStopSec=.
    mixed = a.params.get("kill_mode") == "mixed"
    d.check(f"`{manual.group(1)}` of a frozen worker (KillMode={a.params.get('kill_mode')})",
            f"SIGKILL after TimeoutStopSec={a.params['stop_timeout']:g}s" if mixed else "stopped without SIGKILL",
            f"stopped {stop_s:.1f}s after SIGTERM" + (f", then {'; '.join(killed)}" if killed else ", no SIGKILL"),
            (bool(killed) and stop_s >= float(a.params["stop_timeout"]) - 1) if mixed else not killed)
    env.wait_job(job, timeout_s * 2 + 60)
    d.recover_s = time.monotonic() - t_fail
    d.note(f"the restart took {time.monotonic() - t_restart:.0f} s until the job was done again")
    join_all(fs, 30)
    problems = exactly_once(fs, steps)
    d.check_loss("No" if not problems else "Yes", "; ".join(problems) or "job finished after the restart, every event once")
    d.verify()


@row("worker", "crash_loop")
def test_worker_crashes_on_every_start(env: Env, d: Drill) -> None:
    d.mechanism = "drop-in Environment=ZACHOT_JOB_TTL_SECONDS=not-a-number (import of app.actors fails, exit 2)"
    _crash_loop(env, d, env.worker, "ZACHOT_JOB_TTL_SECONDS", hc=True)
    d.verify()


# ============================================================================================
# Queue
# ============================================================================================

@row("queue", "Очередь растёт (worker не успевает)")
def test_queue_grows(env: Env, d: Drill) -> None:
    s = env.s
    runner = env.f.service("worker").svc.runner
    capacity = runner.processes * runner.threads
    d.mechanism = f"{capacity + 4} jobs for {capacity} worker threads"
    n0 = env.nrestarts(env.worker)
    jobs = [submit_job(s.http, 3, 1.0) for _ in range(capacity + 4)]
    time.sleep(1.5)
    queued = sum((env.job(j) or {}).get("status") == "queued" for j in jobs)
    code, out = env.healthcheck()
    depth = re.search(r"pending=(\d+) in_flight=(\d+)", out)
    d.check_hc(code, env.hc_alerts)
    d.check("detection: queue depth in the healthcheck output", f"≥ {4} waiting",
            f"{depth.group(0) if depth else '?'}; {queued} jobs queued", queued >= 4 and depth is not None)
    t0 = time.monotonic()
    for j in jobs:
        env.wait_job(j, 60)
    d.recover_s = time.monotonic() - t0
    d.check("auto-action", "(spec text) " + str(d.sv.sc.auto_action),
            f"worker untouched (NRestarts {n0}->{env.nrestarts(env.worker)}), all jobs waited and ran",
            env.nrestarts(env.worker) == n0)
    d.check_loss("No", f"{len(jobs)} jobs done")
    d.verify()


@row("queue", "Задача падает при каждой попытке")
def test_job_fails_on_every_attempt(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "a job whose hash has steps_done='' (corrupt): every attempt raises in the worker"
    from app.settings import DRAMATIQ_NAMESPACE, QUEUE_NAME
    s.systemctl("stop", env.worker)
    job = submit_job(s.http, 2, 0.1)
    r = s.redis()
    r.hset(f"zachot:job:{job}", "steps_done", "")
    r.close()
    err_log = env.f.service("worker").stderr_path
    offset = s.file_stat(err_log)[3]  # only this drill's lines: the worker runs nothing else meanwhile
    fs = followers_for(env, [job], 180)
    t0 = time.monotonic()
    s.systemctl("start", env.worker)
    max_retries = settings_default("job_max_retries")
    env.wait_job(job, 150, status="failed")
    d.recover_s = time.monotonic() - t0
    join_all(fs, 30)
    st = env.job(job) or {}
    log_text = s.read(err_log)[offset:].decode(errors="replace")
    retries = [int(x) for x in re.findall(r"Retrying message \S+ in (\d+) milliseconds", log_text)]
    r = s.redis()
    dead = r.zcard(f"{DRAMATIQ_NAMESPACE}:{QUEUE_NAME}.XQ")
    r.close()
    last = fs[0].events[-1].event if fs[0].events else "none"
    d.check("auto-action", "(spec text) " + str(d.sv.sc.auto_action),
            f"{len(retries)} retries after {', '.join(f'{x / 1000:.1f}s' for x in retries)}; then status "
            f"{st.get('status')} after {st.get('failures')} failures (ZACHOT_JOB_MAX_RETRIES={max_retries}); "
            f"last SSE event '{last}'; dead-letter queue {QUEUE_NAME}.XQ holds {dead}",
            len(retries) == max_retries and retries == sorted(retries) and st.get("failures") == max_retries + 1
            and last == "failed" and dead == 0)
    det = str(d.sv.sc.detection)
    quotes = re.findall(r"«([^»]+)»", det)
    assert "status failed" in det and quotes, det
    d.check(f"detection: {det}", "status failed, error; " + ", ".join(f"«{q}» in {err_log}" for q in quotes),
            f"status {st.get('status')}, error {str(st.get('error'))[:50]!r}; "
            + ", ".join(f"«{q}» {log_text.count(q)} times" for q in quotes),
            st.get("status") == "failed" and bool(st.get("error")) and all(q in log_text for q in quotes))
    d.check_loss("No", "the job is visible as failed with its error; its saved progress is kept")
    d.verify()


@row("queue", "Данные Redis потеряны (диск, FLUSHALL, потеря сервера)")
def test_redis_data_lost(env: Env, d: Drill) -> None:
    s = env.s
    d.mechanism = "redis-cli FLUSHALL"
    job = submit_job(s.http, 1, 0)
    env.wait_job(job, 30)
    n0 = {u: env.nrestarts(u) for u in (env.redis, env.api, env.worker)}
    t0 = time.monotonic()
    s.run(["redis-cli", "FLUSHALL"])
    gone = s.http.get(f"/jobs/{job}").status_code
    doc_cmd = re.search(r"`(redis-cli [^`]+)`", str(d.sv.sc.detection))
    assert doc_cmd, d.sv.sc.detection
    size = s.run(doc_cmd.group(1)).stdout.strip()
    time.sleep(3)
    d.check("symptoms: GET /jobs/{id}", 404, gone)
    n1 = {u: env.nrestarts(u) for u in n0}
    d.check("auto-action", "(spec text) " + str(d.sv.sc.auto_action),
            f"nothing restarted ({n0 == n1}); `{doc_cmd.group(1)}` = {size}",
            n0 == n1 and all(s.active_state(u) == "active" for u in n0))
    new = submit_job(s.http, 1, 0)
    env.wait_job(new, 30)
    d.recover_s = time.monotonic() - t0
    d.check_loss("Yes" if gone == 404 else "No", "the job and its events are gone; new jobs run")
    d.verify()


# ============================================================================================

def test_every_failure_matrix_row_has_a_drill(facts: Facts) -> None:
    """A new row in spec/failures.yaml needs a drill here or in test_drills_server.py (imported for
    its ``@row`` marks, also when only this module runs)."""
    import test_drills_server  # noqa: F401
    rows = {(c, sv.sc.event or sv.sc.failure) for c, svs in facts.plan.scenarios.items() for sv in svs}
    missing = sorted(rows - set(DRILLED))
    stale = sorted(set(DRILLED) - rows)
    assert not missing and not stale, f"rows without a drill: {missing}; drills without a row: {stale}"
