"""One Redis reader for every SSE stream (app/stream_hub.py), against a real redis-server and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from apptest_support import Api, RedisServer, parse_sse
from redis.exceptions import RedisError

from app.broker import ASYNC_POOL_CONNECTIONS, make_async_client, make_redis_client
from app.progress import JobStore, events_key
from app.stream_hub import Entry, EventHub, Subscription

pytestmark = pytest.mark.slow  # real redis-server / uvicorn processes


async def _take(sub: Subscription, n: int, timeout: float) -> list[Entry | RedisError]:
    out: list[Entry | RedisError] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            out.append(await sub.queue.get())
    return out


def _hub(url: str, block_seconds: float) -> tuple[EventHub, aioredis.Redis]:
    pool = make_async_client(url, socket_timeout=block_seconds + 4)
    return EventHub(make_async_client(url, socket_timeout=block_seconds + 4, single_connection=True),
                    pool, block_seconds), pool


@contextlib.asynccontextmanager
async def _running_hub(url: str, block_seconds: float) -> AsyncIterator[EventHub]:
    """A started hub (:func:`_hub`), closed with its pool on the way out."""
    hub, pool = _hub(url, block_seconds)
    hub.start()
    try:
        yield hub
    finally:
        await hub.close()
        await pool.aclose()


def _job_at_step_3(url: str, job_id: str) -> JobStore:
    """A job of 5 steps whose first 3 are committed (stream entries 1..3)."""
    store = JobStore(make_redis_client(url), 600)
    store.create(job_id, 5, 0)
    for step in (1, 2, 3):
        store.commit_step(job_id, step, 5, {})
    return store


def test_each_subscriber_gets_each_entry_once_in_order_from_its_own_position(redis_server: RedisServer) -> None:
    store = _job_at_step_3(redis_server.url, "a" * 32)

    async def run() -> tuple[list[Entry | RedisError], list[Entry | RedisError]]:
        hub, pool = _hub(redis_server.url, 1.0)
        hub.start()
        try:
            early = await hub.subscribe(events_key("a" * 32), 0)
            late = await hub.subscribe(events_key("a" * 32), 2)
            await asyncio.to_thread(store.commit_step, "a" * 32, 4, 5, {})
            await asyncio.to_thread(store.commit_step, "a" * 32, 5, 5, {"ok": True})
            return await _take(early, 6, 10), await _take(late, 4, 10)
        finally:
            await hub.close()
            await pool.aclose()

    early, late = asyncio.run(run())
    assert [e[0] for e in early if isinstance(e, tuple)] == [1, 2, 3, 4, 5, 6]
    assert [e[0] for e in late if isinstance(e, tuple)] == [3, 4, 5, 6]
    assert [e[1] for e in late if isinstance(e, tuple)] == ["progress"] * 3 + ["done"]


def test_a_stream_resuming_behind_the_blocked_read_of_its_job_gets_every_entry(redis_server: RedisServer) -> None:
    """The server drill's case: after an API restart one client of a job had already caught up
    to seq 3 (the reader then blocks reading after 3) when another resumed with Last-Event-ID 1.
    It must get 2 and 3 at once, not only what comes after 3 (the drill saw ids 1, 2, 9, 10...)."""
    store = _job_at_step_3(redis_server.url, "b" * 32)

    async def run() -> tuple[list[Entry | RedisError], list[Entry | RedisError]]:
        async with _running_hub(redis_server.url, 30.0) as hub:
            ahead = await hub.subscribe(events_key("b" * 32), 0)
            assert [e[0] for e in await _take(ahead, 3, 10) if isinstance(e, tuple)] == [1, 2, 3]
            await asyncio.sleep(0.5)  # the reader is now in a 30 s XREAD BLOCK after seq 3
            behind = await hub.subscribe(events_key("b" * 32), 1)
            caught_up = await _take(behind, 2, 5)
            await asyncio.to_thread(store.commit_step, "b" * 32, 4, 5, {})
            return caught_up + await _take(behind, 1, 10), await _take(ahead, 1, 10)

    behind, ahead = asyncio.run(run())
    assert [e[0] for e in behind if isinstance(e, tuple)] == [2, 3, 4]
    assert [e[0] for e in ahead if isinstance(e, tuple)] == [4]


def test_a_new_stream_wakes_the_blocked_reader(redis_server: RedisServer) -> None:
    """The reader blocks 30 s on the streams it had; a new one must not wait for that block to end."""
    client = redis_server.client()

    async def run() -> float:
        hub, pool = _hub(redis_server.url, 30.0)
        hub.start()
        try:
            await hub.subscribe("zachot:test:idle", 0)
            await asyncio.sleep(0.5)  # the reader is now in a 30 s XREAD BLOCK on the idle stream
            sub = await hub.subscribe("zachot:test:new", 0)
            t0 = time.monotonic()
            await asyncio.to_thread(client.xadd, "zachot:test:new", {"event": "progress", "data": "{}"}, id="0-1")
            got = await _take(sub, 1, 10)
            assert got == [(1, "progress", "{}")]
            return time.monotonic() - t0
        finally:
            await hub.close()
            await pool.aclose()

    assert asyncio.run(run()) < 10  # without the wake: 30 s (and _take's 10 s timeout fails first)


def test_a_redis_failure_ends_every_subscription(redis_server: RedisServer) -> None:
    async def run() -> list[list[Entry | RedisError]]:
        hub, pool = _hub(redis_server.url, 1.0)
        hub.start()
        try:
            subs = [await hub.subscribe(f"zachot:test:{i}", 0) for i in range(3)]
            await asyncio.sleep(0.3)
            await asyncio.to_thread(redis_server.kill)
            return [await _take(s, 1, 15) for s in subs]
        finally:
            await hub.close()
            await pool.aclose()

    for got in asyncio.run(run()):
        assert len(got) == 1 and isinstance(got[0], RedisError)


def _api_connections(r: redis.Redis, own: set[str]) -> int:
    return sum(1 for c in r.client_list() if c["id"] not in own)


def test_hundreds_of_streams_share_a_bounded_number_of_redis_connections(
    redis_server: RedisServer, start_api: Callable[..., Api]
) -> None:
    """300 open streams on 6 jobs: every event reaches every stream, over at most pool + reader + broker
    connections (one connection per stream before the hub)."""
    api = start_api(ZACHOT_SSE_KEEPALIVE_SECONDS="1")
    r = redis_server.client()
    own = {str(r.client_id())}
    store = JobStore(make_redis_client(redis_server.url), 600)
    with api.client() as c:
        jobs = [c.post("/jobs", json={"steps": 3, "step_seconds": 0}).json()["id"] for _ in range(6)]
    streams_per_job, connections_seen = 50, []

    async def follow(client: httpx.AsyncClient, job: str, opened: asyncio.Event) -> list[int]:
        ids: list[int] = []
        async with client.stream("GET", f"/jobs/{job}/events") as resp:
            assert resp.status_code == 200
            opened.set()
            async for ev in _aparse(resp):
                if "id" in ev:
                    ids.append(int(ev["id"]))
                    assert json.loads(ev["data"])["job_id"] == job
        return ids

    async def run() -> list[list[int]]:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=api.base_url, timeout=60, limits=limits) as client:
            opened = [asyncio.Event() for _ in range(len(jobs) * streams_per_job)]
            tasks = [asyncio.create_task(follow(client, jobs[i // streams_per_job], ev)) for i, ev in enumerate(opened)]
            async with asyncio.timeout(60):
                await asyncio.gather(*(ev.wait() for ev in opened))
            await asyncio.sleep(2.5)  # idle past a keep-alive period: each stream reads its job hash once
            connections_seen.append(await asyncio.to_thread(_api_connections, r, own))
            for step in (1, 2, 3):
                for job in jobs:
                    await asyncio.to_thread(store.commit_step, job, step, 3, {"n": step})
            return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    assert all(ids == [1, 2, 3, 4] for ids in results), [ids for ids in results if ids != [1, 2, 3, 4]][:3]
    # the pool, the reader, the broker's enqueue connection; before the hub: one per stream (300+)
    assert connections_seen[0] <= ASYNC_POOL_CONNECTIONS + 2, connections_seen


async def _aparse(resp: httpx.Response) -> AsyncIterator[dict[str, str]]:
    lines: list[str] = []
    async for line in resp.aiter_lines():
        lines.append(line)
        if line == "":
            for ev in parse_sse(iter(lines)):
                yield ev
            lines = []
