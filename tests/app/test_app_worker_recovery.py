"""A job survives its worker being stopped (SIGTERM) or killed (SIGKILL) mid-job.

Real redis-server, real ``dramatiq app.actors`` subprocesses, real uvicorn;
the SSE client stays connected across the worker restart and must see every
event exactly once.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable

import httpx
import pytest
import redis
from apptest_support import (
    FAST_RECOVERY_ENV,
    Api,
    ManagedProcess,
    RedisServer,
    SyncRedis,
    parse_sse,
    wait_until,
)

from app.progress import events_key, job_key

pytestmark = pytest.mark.slow  # real redis-server / worker / uvicorn processes

STEPS = 12
STEP_SECONDS = 0.2


class SseCollector(threading.Thread):
    """Reads a job's SSE stream in the background until the server closes it."""

    def __init__(self, api: Api, job: str) -> None:
        super().__init__(daemon=True)
        self.api, self.job = api, job
        self.events: list[dict[str, str]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with httpx.Client(base_url=self.api.base_url, timeout=30) as c:
                with c.stream("GET", f"/jobs/{self.job}/events") as resp:
                    for ev in parse_sse(resp.iter_lines()):
                        if "id" in ev:
                            self.events.append(ev)
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def start_job(api: Api, steps: int, step_seconds: float) -> str:
    with api.client() as c:
        r = c.post("/jobs", json={"steps": steps, "step_seconds": step_seconds})
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def steps_done(r: SyncRedis, job: str) -> int:
    return int(r.hget(job_key(job), "steps_done") or 0)


def job_three_steps_in(
    r: SyncRedis, start_api: Callable[..., Api], start_worker: Callable[..., ManagedProcess]
) -> tuple[Api, ManagedProcess, str, SseCollector]:
    """An API, worker 1 and a job of STEPS steps followed over SSE, once 3 steps are done."""
    api = start_api(ZACHOT_SSE_KEEPALIVE_SECONDS="1")
    worker1 = start_worker()
    job = start_job(api, STEPS, STEP_SECONDS)
    collector = SseCollector(api, job)
    collector.start()
    wait_until(lambda: steps_done(r, job) >= 3, 20, "3 steps done by worker 1")
    return api, worker1, job, collector


def assert_each_event_once(r: SyncRedis, collector: SseCollector, job: str, steps: int) -> None:
    collector.join(30)
    assert not collector.is_alive(), "SSE stream did not close after the final event"
    assert collector.error is None, collector.error
    ids = [int(e["id"]) for e in collector.events]
    assert ids == list(range(1, steps + 2)), ids
    assert [e["event"] for e in collector.events] == ["progress"] * steps + ["done"]
    assert [json.loads(e["data"])["step"] for e in collector.events[:-1]] == list(range(1, steps + 1))
    stored = r.xrange(events_key(job))
    assert [eid for eid, _ in stored] == [f"0-{i}" for i in range(1, steps + 2)]


@pytest.mark.parametrize("target", ["main", "group"])
def test_sigterm_mid_job_next_worker_resumes_every_event_once(
    target: str, redis_server: RedisServer, start_worker: Callable[..., ManagedProcess],
    start_api: Callable[..., Api],
) -> None:
    """target=main: systemd KillMode=mixed; target=group: KillMode=control-group (SIGTERM twice)."""
    r = redis_server.client()
    api, worker1, job, collector = job_three_steps_in(r, start_api, start_worker)

    t0 = time.monotonic()
    (worker1.signal_main if target == "main" else worker1.signal_group)(signal.SIGTERM)
    assert worker1.wait(15) == 0, worker1.log()
    assert time.monotonic() - t0 < 5  # cooperative stop, not dramatiq's 600 s shutdown wait
    assert "Killing worker process" not in worker1.log()
    done_at_stop = steps_done(r, job)
    assert 3 <= done_at_stop < STEPS
    # the message went back to the queue (not left un-acked with the stopped worker)
    assert r.hget(job_key(job), "status") == "queued"
    assert r.keys("dramatiq:__acks__.*") == []
    assert r.hlen("dramatiq:default.msgs") + r.hlen("dramatiq:default.DQ.msgs") == 1

    worker2 = start_worker()
    assert_each_event_once(r, collector, job, STEPS)
    assert f"resuming after step {done_at_stop} of {STEPS}" in worker2.log()
    status = r.hgetall(job_key(job))
    assert status["status"] == "done" and status["attempts"] == "2"
    wait_until(lambda: r.hlen("dramatiq:default.msgs") == 0 and r.llen("dramatiq:default") == 0, 5,
               "the message to be acked")


def test_sigkill_mid_job_is_recovered_after_heartbeat_timeout(
    redis_server: RedisServer, start_worker: Callable[..., ManagedProcess], start_api: Callable[..., Api],
) -> None:
    r = redis_server.client()
    timeout_s = int(FAST_RECOVERY_ENV["ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS"]) / 1000
    api, worker1, job, collector = job_three_steps_in(r, start_api, start_worker)

    worker1.signal_group(signal.SIGKILL)
    worker1.wait(10)
    done_at_kill = steps_done(r, job)
    dead_id = r.hget(job_key(job), "worker")
    assert dead_id and dead_id.startswith("zachot-worker-")
    # the message is stuck un-acked with the dead worker until its heartbeat is older than the timeout
    assert r.smembers(f"dramatiq:__acks__.{dead_id}.default")
    last_beat = float(r.zscore("dramatiq:__heartbeats__", dead_id) or 0) / 1000
    assert r.hget(job_key(job), "status") == "running"

    start_worker()
    assert_each_event_once(r, collector, job, STEPS)
    resumed = json.loads(collector.events[done_at_kill]["data"])  # first step committed by worker 2
    recovery = resumed["ts"] - STEP_SECONDS - last_beat
    assert timeout_s - 0.05 <= recovery < timeout_s + 10, recovery
    assert r.hget(job_key(job), "attempts") == "2"
    # the ack follows the final commit by a few ms
    wait_until(lambda: r.keys("dramatiq:__acks__.*") == [] and r.hlen("dramatiq:default.msgs") == 0, 5,
               "the message to be acked")
    assert r.zscore("dramatiq:__heartbeats__", dead_id) is None  # maintenance removed the dead worker


def test_job_waits_out_a_busy_redis_and_redoes_steps_lost_to_an_older_snapshot(
    redis_server: RedisServer, start_worker: Callable[..., ManagedProcess], start_api: Callable[..., Api],
) -> None:
    """Found by the server drill "Redis hung": a Redis busy in a script answers BUSY to every
    other command (the job must wait, not fail), and once it is SIGKILLed it comes back from its
    last RDB snapshot with fewer steps than the worker committed (the worker must redo them,
    not stop on a step gap and leave the job "running" for ever). Here the snapshot is a
    DUMP/RESTORE of the job's hash and stream, and the script is ended with SCRIPT KILL."""
    r = redis_server.client()
    raw = redis.Redis.from_url(redis_server.url, socket_timeout=30)
    api = start_api()
    worker = start_worker()
    job = start_job(api, STEPS, STEP_SECONDS)
    wait_until(lambda: steps_done(r, job) >= 2, 20, "2 steps done")
    snapshot = {k: raw.dump(k) for k in (job_key(job), events_key(job))}
    at_snapshot = steps_done(r, job)
    wait_until(lambda: steps_done(r, job) >= at_snapshot + 3, 20, "3 more steps")

    busy = redis.Redis.from_url(redis_server.url, socket_timeout=None)
    script = threading.Thread(target=lambda: pytest.raises(redis.ResponseError, busy.eval, "while true do end", 0),
                              daemon=True)
    script.start()
    time.sleep(6.5)  # past busy-reply-threshold (5 s): every other command now gets BUSY
    assert "BUSY" in worker.log(), "the worker never met the BUSY Redis"
    raw.script_kill()
    script.join(10)
    for key, value in snapshot.items():
        raw.restore(key, 0, value, replace=True)

    wait_until(lambda: r.hget(job_key(job), "status") == "done", 30, "the job done")
    status = r.hgetall(job_key(job))
    assert status["steps_done"] == str(STEPS) and status["failures"] == "0", status
    assert [eid for eid, _ in r.xrange(events_key(job))] == [f"0-{i}" for i in range(1, STEPS + 2)]
    assert "redoing them" in worker.log(), worker.log()
    busy.close()
    raw.close()


def test_job_waits_out_a_redis_at_maxmemory_and_counts_no_failure(
    redis_server: RedisServer, start_worker: Callable[..., ManagedProcess], start_api: Callable[..., Api],
) -> None:
    """Found by the server drill "Redis reached maxmemory": under ``noeviction`` Redis answers
    every write with ``OOM command not allowed``. That is the server's state, not the job's error:
    the job must wait (not burn its retries and end failed) and go on once memory is freed; the
    API meanwhile refuses new jobs with 503 ``redis_unavailable``. redis-py drops the ``OOM``
    prefix (OutOfMemoryError), so the text an operator greps for is the rest of the reply."""
    r = redis_server.client()
    api = start_api()
    worker = start_worker()
    job = start_job(api, STEPS, STEP_SECONDS)
    wait_until(lambda: steps_done(r, job) >= 2, 20, "2 steps done")
    r.config_set("maxmemory", max(1, int(r.info("memory")["used_memory"]) // 2))
    try:
        wait_until(lambda: "command not allowed when used memory" in worker.log(), 20, "the worker met the full Redis")
        stuck = steps_done(r, job)
        with api.client() as c:
            refused = c.post("/jobs", json={"steps": 1, "step_seconds": 0})
        assert refused.status_code == 503 and refused.json()["error"] == "redis_unavailable", refused.text
        detail = refused.json()["detail"]
        assert "OutOfMemoryError" in detail and "command not allowed when used memory" in detail, detail
        time.sleep(2)
        assert steps_done(r, job) == stuck, "a step was committed to a Redis refusing writes"
    finally:
        r.config_set("maxmemory", 0)
    wait_until(lambda: r.hget(job_key(job), "status") == "done", 40, "the job done after memory was freed")
    status = r.hgetall(job_key(job))
    assert status["steps_done"] == str(STEPS) and status["failures"] == "0", status
    assert [eid for eid, _ in r.xrange(events_key(job))] == [f"0-{i}" for i in range(1, STEPS + 2)]
