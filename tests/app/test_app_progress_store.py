"""JobStore and its Lua scripts against a real redis-server."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis
from apptest_support import RedisServer, SyncRedis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.broker import make_redis_client
from app.progress import JobStore, events_key, job_key

pytestmark = pytest.mark.slow  # a real redis-server


@pytest.fixture
def store(redis_server: RedisServer) -> JobStore:
    return JobStore(make_redis_client(redis_server.url), ttl_seconds=3600)


def _stream(r: SyncRedis, job_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    return [(int(eid.split("-")[1]), f["event"], json.loads(f["data"]))
            for eid, f in r.xrange(events_key(job_id))]


def test_steps_commit_once_in_order_and_finish(store: JobStore, redis_server: RedisServer) -> None:
    r = redis_server.client()
    job = uuid.uuid4().hex
    store.create(job, 3, 0.5)
    assert store.start(job, "w1").steps_done == 0
    assert store.commit_step(job, 1, 3, {"x": 1}) == 1
    assert store.commit_step(job, 1, 3, {"x": 1}) == 1  # duplicate: not written again
    assert store.commit_step(job, 2, 3, {"x": 1}) == 2
    with pytest.raises(redis.ResponseError, match="step gap"):
        store.commit_step(job, 5, 3, {"x": 1})
    assert store.start(job, "w2").steps_done == 2  # resume point
    assert store.commit_step(job, 3, 3, {"x": 1}) == 3
    events = _stream(r, job)
    assert [(s, e) for s, e, _ in events] == [(1, "progress"), (2, "progress"), (3, "progress"), (4, "done")]
    assert events[-1][2]["result"] == {"x": 1}
    status = store.status(job)
    assert status is not None
    assert (status["status"], status["steps_done"], status["last_event_id"], status["attempts"]) == ("done", 3, 4, 2)
    assert status["result"] == {"x": 1} and status["worker"] == "w2"
    # terminal: further commits, fails and starts change nothing
    assert store.commit_step(job, 3, 3, {}) == -2
    assert store.fail(job, "late") == -2
    assert store.start(job, "w3").terminal_status == "done"
    assert len(_stream(r, job)) == 4
    assert 0 < r.ttl(job_key(job)) <= 3600 and 0 < r.ttl(events_key(job)) <= 3600


def test_fail_appends_failed_event_after_last(store: JobStore, redis_server: RedisServer) -> None:
    r = redis_server.client()
    job = uuid.uuid4().hex
    store.create(job, 5, 0)
    store.start(job, "w1")
    store.commit_step(job, 1, 5, {})
    assert store.fail(job, "boom") == 2
    events = _stream(r, job)
    assert [(s, e) for s, e, _ in events] == [(1, "progress"), (2, "failed")]
    assert events[1][2]["error"] == "boom" and events[1][2]["steps_done"] == 1
    assert store.status(job)["status"] == "failed"  # type: ignore[index]


def test_missing_job_is_reported_not_created(store: JobStore, redis_server: RedisServer) -> None:
    job = uuid.uuid4().hex
    assert store.start(job, "w").exists is False
    assert store.commit_step(job, 1, 1, {}) == -1
    assert store.fail(job, "x") == -1
    assert store.record_failure(job) == -1
    assert redis_server.client().exists(job_key(job), events_key(job)) == 0


def test_requeue_only_own_running_job(store: JobStore) -> None:
    job = uuid.uuid4().hex
    store.create(job, 2, 0)
    store.start(job, "w1")
    assert store.mark_requeued(job, "other") is False
    assert store.mark_requeued(job, "w1") is True
    assert [store.record_failure(job), store.record_failure(job)] == [1, 2]
    assert store.status(job)["status"] == "queued"  # type: ignore[index]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts=st.lists(st.integers(min_value=1, max_value=6), min_size=1, max_size=40))
def test_any_commit_order_yields_each_step_once(store: JobStore, redis_server: RedisServer,
                                                attempts: list[int]) -> None:
    """Whatever steps are (re)committed in whatever order, the stream is 1..k without gaps or dups."""
    r = redis_server.client()
    job = uuid.uuid4().hex
    store.create(job, 6, 0)
    store.start(job, "w")
    for step in attempts:
        try:
            store.commit_step(job, step, 6, {})
        except redis.ResponseError:
            pass  # a gap is refused
    seqs = [s for s, _, _ in _stream(r, job)]
    assert seqs == list(range(1, len(seqs) + 1))
    done = store.status(job)["steps_done"]  # type: ignore[index]
    assert seqs[:done] == list(range(1, done + 1))
