"""Limits of the API under a real uvicorn and redis-server: non-finite numbers, job bounds, body size, echo.

Bounds (app/README.md): steps 1..1000, step_seconds 0..60 s, steps * step_seconds <= 3600 s; bodies over
64 KiB (65536 bytes) get 413 ``{"error": "body_too_large"}``; 422 replies never echo the body.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import dramatiq
import httpx
import pytest
from apptest_support import Api, ManagedProcess, RedisServer

from app.broker import build_broker
from app.progress import JobStore
from app.settings import load_settings

pytestmark = pytest.mark.slow  # real redis-server / uvicorn processes

LIMIT = 64 * 1024
JSON = {"content-type": "application/json"}


def post_raw(c: httpx.Client, body: bytes | Iterator[bytes]) -> httpx.Response:
    """POST /jobs with ``body`` as is (bytes: with Content-Length; an iterator: chunked, no Content-Length)."""
    return c.post("/jobs", content=body, headers=JSON)


def pieces(body: bytes, size: int = 8192) -> Iterator[bytes]:
    """``body`` in ``size``-byte pieces (httpx sends a generator body chunked)."""
    for i in range(0, len(body), size):
        yield body[i:i + size]


def padded_job(total: int) -> bytes:
    """A valid job body (``steps`` 1, ``step_seconds`` 0) padded with JSON whitespace to ``total`` bytes."""
    body = b'{"steps": 1, "step_seconds": 0}'
    return body + b" " * (total - len(body))


def assert_clean_422(r: httpx.Response, field: str, error_type: str | None = None) -> list[dict[str, object]]:
    """The reply is a 422 in FastAPI's shape whose errors name ``field``; returns ``detail``."""
    assert r.status_code == 422, r.text[:500]
    detail = r.json()["detail"]
    assert any(field in d["loc"] for d in detail), r.text[:500]
    for d in detail:
        assert {"type", "loc", "msg"} <= d.keys(), str(d)[:500]
        assert len(str(d.get("input", ""))) <= 200, str(d)[:500]
    if error_type is not None:
        assert any(d["type"] == error_type for d in detail), r.text[:500]
    return list(detail)


def test_non_finite_numbers_get_422_not_500(start_api: Callable[..., Api]) -> None:
    """NaN, Infinity, -Infinity and 1e309 (parsed as infinity) are refused with 422, never 500."""
    api = start_api()
    with api.client() as c:
        for literal in ("NaN", "Infinity", "-Infinity", "1e309", "-1e309"):
            r = post_raw(c, b'{"steps": 3, "step_seconds": %s}' % literal.encode())
            detail = assert_clean_422(r, "step_seconds", "finite_number")
            assert detail[0]["input"] in ("nan", "inf", "-inf"), r.text[:500]
            r = post_raw(c, b'{"steps": %s, "step_seconds": 1}' % literal.encode())
            assert_clean_422(r, "steps")
        # the same values nested where FastAPI would have echoed them (an unknown field)
        assert_clean_422(post_raw(c, b'{"steps": 3, "step_seconds": 1, "x": [NaN, Infinity]}'), "x")
        assert_clean_422(post_raw(c, b'{"steps": 3, "step_seconds": 1e309, "x": NaN}'), "step_seconds")
        # a body nested deeper than the JSON parser's recursion limit is a client error, not a 500
        r = post_raw(c, b"[" * 60000)
        assert 400 <= r.status_code < 500, r.text[:500]
        assert c.get("/healthz").status_code == 200
    assert "Traceback" not in api.proc.log()


def test_job_bounds_steps_step_seconds_and_their_product(start_api: Callable[..., Api]) -> None:
    api = start_api()
    with api.client() as c:
        assert_clean_422(c.post("/jobs", json={"steps": 1001, "step_seconds": 0}), "steps", "less_than_equal")
        assert_clean_422(c.post("/jobs", json={"steps": 1, "step_seconds": 60.001}), "step_seconds",
                         "less_than_equal")
        # the old upper bound: 1000 steps of 3600 s (~41 days) was accepted
        assert_clean_422(c.post("/jobs", json={"steps": 1000, "step_seconds": 3600}), "step_seconds")
        for steps, step_seconds, total in [(61, 60, "3660"), (1000, 3.7, "3700"), (100, 36.01, "3601")]:
            r = c.post("/jobs", json={"steps": steps, "step_seconds": step_seconds})
            detail = assert_clean_422(r, "step_seconds", "job_too_long")
            assert f"= {total} s" in str(detail[0]["msg"]) and "3600 s" in str(detail[0]["msg"]), r.text[:500]
        # at the bounds, float rounding included (71 * (3600 / 71) == 3600.0000000000005)
        for steps, step_seconds in [(60, 60), (1000, 3.6), (71, 3600 / 71), (1, 60), (1000, 0), (1, 0)]:
            r = c.post("/jobs", json={"steps": steps, "step_seconds": step_seconds})
            assert r.status_code == 202, (steps, step_seconds, r.text[:500])


def test_body_over_64_kib_gets_413_with_and_without_content_length(start_api: Callable[..., Api]) -> None:
    api = start_api()
    big = padded_job(70 * 1024)
    with api.client() as c:
        for body in (big, pieces(big)):
            r = post_raw(c, body)
            assert r.status_code == 413, r.text[:500]
            assert r.json()["error"] == "body_too_large" and "65536 bytes" in r.json()["detail"], r.text[:500]
            assert c.get("/healthz").status_code == 200  # the connection and the server are fine
        # exactly the limit is accepted, one byte more is not (both framings)
        assert post_raw(c, padded_job(LIMIT)).status_code == 202
        assert post_raw(c, pieces(padded_job(LIMIT))).status_code == 202
        assert post_raw(c, padded_job(LIMIT + 1)).status_code == 413
        assert post_raw(c, pieces(padded_job(LIMIT + 1))).status_code == 413
        # other routes are limited as well
        assert c.request("GET", "/healthz", content=big).status_code == 413


def raw_exchange(api: Api, head: bytes, body: bytes) -> bytes:
    """Send ``head`` + ``body`` on a new TCP connection WITHOUT finishing the request; return the reply head.

    The server must answer from what it has: if it waited for the rest of the body this would fail
    with a socket timeout (10 s, a failure bound, not a measured time).
    """
    url = urlsplit(api.base_url)
    with socket.create_connection((url.hostname or "127.0.0.1", url.port or 80), timeout=10) as s:
        s.sendall(head + body)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def test_413_comes_before_the_body_is_read(start_api: Callable[..., Api]) -> None:
    """A too large Content-Length is refused without reading the body; a chunked one once it passes 64 KiB."""
    api = start_api()
    head = b"POST /jobs HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
    # 50 MB announced, not one byte sent: the 413 comes anyway
    reply = raw_exchange(api, head + b"Content-Length: 50000000\r\n\r\n", b"")
    assert reply.startswith(b"HTTP/1.1 413 "), reply
    # with Expect: 100-continue the client is never asked for the body
    reply = raw_exchange(api, head + b"Content-Length: 50000000\r\nExpect: 100-continue\r\n\r\n", b"")
    assert reply.startswith(b"HTTP/1.1 413 "), reply
    # chunked: just over 64 KiB sent and the request left unfinished; the 413 comes anyway
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces(b"x" * (LIMIT + 1)))
    reply = raw_exchange(api, head + b"Transfer-Encoding: chunked\r\n\r\n", chunks)
    assert reply.startswith(b"HTTP/1.1 413 "), reply


def test_422_never_echoes_the_body(start_api: Callable[..., Api]) -> None:
    api = start_api()
    marker = "MARKER-" + "0123456789abcdef" * 640  # ~10 KB
    with api.client() as c:
        for body, field in [({"steps": marker, "step_seconds": 1}, "steps"),
                            ({"steps": 3, "step_seconds": 1, "pad": marker}, "pad"),
                            ({"pad": marker}, "steps"),  # a missing field: FastAPI's input is the whole body
                            ({"steps": [marker] * 5, "step_seconds": marker}, "step_seconds")]:
            r = c.post("/jobs", json=body)
            assert_clean_422(r, field)
            assert marker not in r.text and len(r.content) < 2000, (field, len(r.content))
        r = post_raw(c, b'{"steps": 3, "step_seconds": "' + marker.encode() + b'"')  # invalid JSON
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid", r.text[:500]
        assert marker not in r.text


def poll_healthz(api: Api, statuses: list[int | str], done: threading.Event) -> None:
    """GET /healthz every 0.1 s until ``done`` is set, then once more; append each status (or error name)."""
    with api.client(timeout=10) as pc:
        while True:
            try:
                statuses.append(pc.get("/healthz").status_code)
            except httpx.HTTPError as exc:
                statuses.append(type(exc).__name__)
            if done.wait(0.1):
                break
        statuses.append(pc.get("/healthz").status_code)


def test_a_50_mb_body_does_not_block_healthz(redis_server: RedisServer, start_api: Callable[..., Api]) -> None:
    """/healthz keeps answering 200 while 50 MB bodies (with and without Content-Length) are sent.

    Only the statuses are asserted; scripts/api_body_stall.py measures the latencies.
    """
    api = start_api()
    size = 50 * 1000 * 1000

    def big_body() -> Iterator[bytes]:
        yield b'{"steps": 3, "step_seconds": 1, "pad": "'
        for _ in range(size // LIMIT):
            yield b"x" * LIMIT
        yield b'"}'

    for body in (b"".join(big_body()), big_body()):
        statuses: list[int | str] = []
        done = threading.Event()
        poller = threading.Thread(target=poll_healthz, args=(api, statuses, done), daemon=True)
        poller.start()
        try:
            with api.client(timeout=60) as c:
                r = post_raw(c, body)
        finally:
            done.set()
            poller.join(30)
        assert r.status_code == 413 and r.json()["error"] == "body_too_large", r.text[:500]
        assert not poller.is_alive()
        assert len(statuses) >= 2 and all(s == 200 for s in statuses), statuses
    # nothing of it reached Redis
    rc = redis_server.client()
    assert rc.keys("zachot:job:*") == []
    rc.close()
    assert json.loads(httpx.get(f"{api.base_url}/healthz").text) == {"status": "ok"}


def test_worker_refuses_a_message_over_the_job_bounds(redis_server: RedisServer,
                                                     start_worker: Callable[..., ManagedProcess],
                                                     start_api: Callable[..., Api]) -> None:
    """A message the API would refuse (1000 steps of an hour, ~41 days) put on the queue by hand
    ends ``failed`` at once instead of holding a worker thread."""
    start_worker()
    api = start_api()
    job = "e" * 32
    settings = load_settings({"ZACHOT_REDIS_URL": redis_server.url})
    broker = build_broker(settings, "api")
    JobStore(broker.client, 3600).create(job, 1000, 3600.0)
    broker.enqueue(dramatiq.Message(queue_name="default", actor_name="run_job", args=(),
                                    kwargs={"job_id": job, "steps": 1000, "step_seconds": 3600.0}, options={}))
    with api.client() as c:
        status = c.get(f"/jobs/{job}").json()
        for _ in range(100):
            if status["status"] == "failed":
                break
            time.sleep(0.1)
            status = c.get(f"/jobs/{job}").json()
    assert status["status"] == "failed" and "invalid parameters" in status["error"], status
