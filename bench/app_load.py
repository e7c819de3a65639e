"""The app's side of the bench: ``POST /jobs`` against the same work in-process, and concurrent SSE
streams, on a real redis-server and a real uvicorn serving ``app.api:app``.

* Enqueue: ``--posts`` requests from :data:`CONCURRENCY` keep-alive connections, against the same
  create + enqueue done in this process (``JobStore.create`` then ``broker.enqueue``, one request's
  Redis work), against ``broker.enqueue`` alone (what dramatiq's ``send()`` does) and against the
  same route with no Redis work (``bench/floor_app.py``: the HTTP stack's floor); :data:`ROUNDS`
  interleaved rounds, each figure their median.
* Streams: ``--streams`` SSE clients (50 a job) opened at once; once all are open, the Redis
  connections of the API (``CLIENT LIST``) and the commands Redis runs per second while they idle
  (``INFO stats``); then every job gets :data:`STEPS` steps, and each event's latency from its
  ``XADD`` (the ``ts`` in its data) to its arrival is taken. Every stream must get every event once,
  in order, or the row says how many did not.

The HTTP client is h11 (uvicorn's own HTTP/1.1 library) on asyncio streams: light enough that
5,000 connections in one process measure the server, not the client.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import h11
import redis

REPO = Path(__file__).resolve().parents[1]
#: Concurrent keep-alive connections that POST jobs.
CONCURRENCY = 16
#: Steps of each job the streams follow (each stream gets STEPS + 1 events).
STEPS = 5
#: Rounds of the enqueue measurements; each figure is their median.
ROUNDS = 3
#: Streams that follow one job.
STREAMS_PER_JOB = 50


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(pred: Callable[[], object], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except (OSError, redis.RedisError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"bench: {what} did not come up in {timeout:g} s")


def _listening(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), 1):
        return True


def _commands(r: Any) -> int:
    return int(r.info("stats")["total_commands_processed"])


@contextmanager
def app_stack() -> Iterator[tuple[str, int, int]]:
    """A redis-server, ``uvicorn app.api:app`` and ``uvicorn bench.floor_app:app`` on free loopback
    ports; yields (Redis URL, API port, floor port)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # inherited by both servers
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="zachot-bench-redis-") as tmp:
        try:
            rport, aport = _free_port(), _free_port()
            procs.append(subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", tmp, "--maxclients", "10000"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            url = f"redis://127.0.0.1:{rport}/0"
            _wait(lambda: redis.Redis.from_url(url).ping(), "redis-server")
            env = {**os.environ, "ZACHOT_REDIS_URL": url, "ZACHOT_SSE_KEEPALIVE_SECONDS": "15"}
            fport = _free_port()
            for app, port in (("app.api:app", aport), ("bench.floor_app:app", fport)):
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
                     "--log-level", "warning", "--backlog", "8192"],
                    cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                _wait(functools.partial(_listening, port), app)
            yield url, aport, fport
        finally:
            for p in reversed(procs):
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: h11.Connection,
                   method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    headers = [("Host", "bench"), ("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    writer.write(conn.send(h11.Request(method=method, target=path, headers=headers)) or b"")
    writer.write(conn.send(h11.Data(data=body)) or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    status, chunks = 0, []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            conn.start_next_cycle()
            return status, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("the API closed the connection")


async def post_jobs(port: int, total: int) -> tuple[float, list[str]]:
    """POST ``total`` jobs over :data:`CONCURRENCY` connections; (seconds taken, job ids)."""
    ids: list[str] = []
    body = json.dumps({"steps": 1, "step_seconds": 0}).encode()

    async def client(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        conn = h11.Connection(h11.CLIENT)
        for _ in range(n):
            status, data = await _request(reader, writer, conn, "POST", "/jobs", body)
            if status != 202:
                raise RuntimeError(f"POST /jobs answered {status}: {data[:200]!r}")
            ids.append(json.loads(data)["id"])
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(client(total // CONCURRENCY + (i < total % CONCURRENCY)) for i in range(CONCURRENCY)))
    return time.perf_counter() - t0, ids


async def follow(port: int, job: str, opened: asyncio.Event) -> list[tuple[int, float]]:
    """Read one job's SSE stream to its end; [(event id, seconds from the event's ts to arrival)]."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    conn = h11.Connection(h11.CLIENT)
    writer.write(conn.send(h11.Request(method="GET", target=f"/jobs/{job}/events", headers=[("Host", "bench")]))
                 or b"")
    writer.write(conn.send(h11.EndOfMessage()) or b"")
    got: list[tuple[int, float]] = []
    text = ""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Data):
                opened.set()
                now = time.time()
                text += bytes(event.data).decode()
                *blocks, text = text.split("\n\n")
                for block in blocks:
                    fields = dict(ln.split(": ", 1) for ln in block.splitlines() if ": " in ln)
                    if "id" in fields:
                        got.append((int(fields["id"]), now - json.loads(fields["data"])["ts"]))
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return got
    finally:
        opened.set()
        writer.close()


def in_process(url: str, total: int) -> tuple[float, float]:
    """Rates (per second) of ``total`` create + enqueue, and of ``total`` enqueues alone, done here."""
    import dramatiq

    from app.broker import build_broker
    from app.progress import JobStore
    from app.settings import QUEUE_NAME, RUN_JOB_ACTOR, load_settings

    os.environ["ZACHOT_REDIS_URL"] = url
    settings = load_settings()
    broker = build_broker(settings, "api")
    store = JobStore(broker.client, settings.job_ttl_seconds)

    def message(job_id: str) -> dramatiq.Message[object]:
        return dramatiq.Message(queue_name=QUEUE_NAME, actor_name=RUN_JOB_ACTOR, args=(),
                                kwargs={"job_id": job_id, "steps": 1, "step_seconds": 0.0}, options={})

    t0 = time.perf_counter()
    for i in range(total):
        store.create(f"{i:032x}", 1, 0.0)
        broker.enqueue(message(f"{i:032x}"))
    both = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(total):
        broker.enqueue(message(f"{i:032x}"))
    alone = time.perf_counter() - t0
    broker.close()
    return total / both, total / alone


async def streams(port: int, url: str, n: int, idle_seconds: float) -> dict[str, object]:
    """Open ``n`` streams, count the API's Redis connections and idle commands, then run every job."""
    from app.progress import JobStore

    r = redis.Redis.from_url(url, decode_responses=True)
    own = str(r.client_id())
    jobs = (await post_jobs(port, max(1, n // STREAMS_PER_JOB)))[1]
    r.delete("dramatiq:default")  # nobody works them: the bench writes their steps
    opened = [asyncio.Event() for _ in range(n)]
    tasks = []
    for i in range(0, n, 250):  # open in waves: a listen backlog is finite
        tasks += [asyncio.create_task(follow(port, jobs[j % len(jobs)], opened[j])) for j in range(i, min(n, i + 250))]
        await asyncio.gather(*(e.wait() for e in opened[i:i + 250]))
    await asyncio.sleep(1.5)
    clients: Any = r.client_list()
    connections = sum(1 for c in clients if c["id"] != own)
    before = _commands(r)
    await asyncio.sleep(idle_seconds)
    idle_rate = (_commands(r) - before - 1) / idle_seconds
    store = JobStore(redis.Redis.from_url(url), 600)
    for step in range(1, STEPS + 1):
        for job in jobs:
            await asyncio.to_thread(store.commit_step, job, step, STEPS, {"bench": True})
        await asyncio.sleep(0.2)
    results = await asyncio.wait_for(asyncio.gather(*tasks), 120)
    want = list(range(1, STEPS + 2))
    complete = sum(1 for got in results if [i for i, _ in got] == want)
    lat = sorted(s for got in results for _, s in got)
    return {"complete": complete, "connections": connections, "idle_rate": idle_rate,
            "p50": lat[len(lat) // 2] if lat else None, "p99": lat[int(len(lat) * 0.99)] if lat else None}


def run_app(posts: int, n_streams: int, idle_seconds: float) -> list[tuple[str, str, str]]:
    """Every app measurement as (what, figure, comparison) rows; a missing redis-server is a row."""
    if shutil.which("redis-server") is None:
        return [("app measurements", "skipped: no redis-server (scripts/install-system-deps.sh)", "")]
    rates: dict[str, list[float]] = {"http": [], "floor": [], "both": [], "alone": []}
    with app_stack() as (url, port, floor_port):
        for _ in range(ROUNDS):  # interleaved, so a busy moment slows each of them alike
            redis.Redis.from_url(url).flushall()
            rates["http"].append(posts / asyncio.run(post_jobs(port, posts))[0])
            rates["floor"].append(posts / asyncio.run(post_jobs(floor_port, posts))[0])
            redis.Redis.from_url(url).flushall()
            both, alone = in_process(url, posts)
            rates["both"].append(both)
            rates["alone"].append(alone)
        redis.Redis.from_url(url).flushall()
        s = asyncio.run(streams(port, url, n_streams, idle_seconds))
    http, floor, both, alone = (statistics.median(rates[k]) for k in ("http", "floor", "both", "alone"))
    p50, p99 = s["p50"], s["p99"]
    lat = f"event latency p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms" if isinstance(p50, float) and \
        isinstance(p99, float) else "no events"
    return [
        (f"POST /jobs, {posts} from {CONCURRENCY} connections (median of {ROUNDS})", f"{http:.0f}/s",
         f"{http / both:.2f}× in-process create + enqueue, {http / alone:.2f}× enqueue alone, "
         f"{http / floor:.2f}× the HTTP floor"),
        ("the same route without Redis work: the HTTP floor (peer)", f"{floor:.0f}/s", ""),
        ("create + enqueue in-process (peer)", f"{both:.0f}/s", ""),
        ("broker.enqueue alone, what send() does (peer)", f"{alone:.0f}/s", ""),
        (f"SSE, {n_streams} streams on {max(1, n_streams // STREAMS_PER_JOB)} jobs",
         f"{s['complete']} of {n_streams} got all {STEPS + 1} events in order", lat),
        (f"Redis connections with {n_streams} streams open", f"{s['connections']}",
         "API pool (≤ 32) + SSE reader + broker"),
        (f"Redis commands/s while {n_streams} streams idle", f"{s['idle_rate']:.0f}", ""),
    ]


def app_table(rows: list[tuple[str, str, str]]) -> str:
    """The app's Markdown table."""
    return "\n".join(["| app | figure | compared |", "|---|---|---|"] + [f"| {a} | {b} | {c} |" for a, b, c in rows])
