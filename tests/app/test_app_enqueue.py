"""The API's event-loop enqueue (app/broker.py AsyncEnqueuer) stores what dramatiq's own
``broker.enqueue`` stores, on a real redis-server; a worker running such a job is in test_app_api.py."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import dramatiq
import pytest
from apptest_support import RedisServer

from app.broker import AsyncEnqueuer, build_broker, make_async_client
from app.settings import QUEUE_NAME, RUN_JOB_ACTOR, load_settings

pytestmark = pytest.mark.slow  # real redis-server


def _message(job_id: str) -> dramatiq.Message[Any]:
    return dramatiq.Message(queue_name=QUEUE_NAME, actor_name=RUN_JOB_ACTOR, args=(),
                            kwargs={"job_id": job_id, "steps": 2, "step_seconds": 0.5}, options={})


async def _enqueue_on_the_loop(broker: Any, url: str, job_id: str) -> bool:
    """Enqueue job ``job_id``'s message with an AsyncEnqueuer; returns whether it ran natively."""
    client = make_async_client(url, socket_timeout=5)
    try:
        enqueuer = AsyncEnqueuer(broker, client)
        await enqueuer.enqueue(_message(job_id))
        return enqueuer.native
    finally:
        await client.aclose()


def _stored(redis_server: RedisServer) -> list[dict[str, Any]]:
    r = redis_server.client()
    ids = r.lrange("dramatiq:default", 0, -1)
    msgs = r.hgetall("dramatiq:default.msgs")
    assert sorted(ids) == sorted(msgs), (ids, msgs)
    return [json.loads(msgs[i]) for i in ids]


def test_the_async_enqueue_stores_what_broker_enqueue_stores(redis_server: RedisServer,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "ZACHOT_REDIS_URL", redis_server.url)
    broker = build_broker(load_settings(), "api")
    broker.enqueue(_message("a" * 32))
    native = asyncio.run(_enqueue_on_the_loop(broker, redis_server.url, "b" * 32))
    assert native, f"dramatiq {dramatiq.__version__}: the event-loop enqueue fell back to a thread"
    by_threads, on_the_loop = sorted(_stored(redis_server), key=lambda m: m["kwargs"]["job_id"])
    assert on_the_loop["kwargs"]["job_id"] == "b" * 32
    assert on_the_loop["options"]["redis_message_id"] != by_threads["options"]["redis_message_id"]
    for m in (by_threads, on_the_loop):
        m["kwargs"].pop("job_id")
        for varying in ("message_id", "message_timestamp"):
            m.pop(varying)
        m["options"].pop("redis_message_id")
    assert on_the_loop == by_threads
    # the API's broker id is in dramatiq's heartbeats, as after broker.enqueue (the healthcheck tells it from workers)
    assert broker.broker_id in redis_server.client().zrange("dramatiq:__heartbeats__", 0, -1)
    broker.close()


def test_without_dramatiq_2_the_enqueue_runs_broker_enqueue_in_a_thread(redis_server: RedisServer,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(os.environ, "ZACHOT_REDIS_URL", redis_server.url)
    monkeypatch.setattr(dramatiq, "__version__", "3.0.0")
    broker = build_broker(load_settings(), "api")
    assert asyncio.run(_enqueue_on_the_loop(broker, redis_server.url, "c" * 32)) is False
    assert [m["kwargs"]["job_id"] for m in _stored(redis_server)] == ["c" * 32]
    broker.close()
