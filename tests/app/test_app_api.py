"""The API under a real uvicorn, with a real dramatiq worker and redis-server."""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable

import dramatiq
import httpx
import pytest
from apptest_support import Api, ManagedProcess, RedisServer, parse_sse, wait_until

from app.broker import build_broker
from app.progress import JobStore
from app.settings import load_settings

pytestmark = pytest.mark.slow  # real redis-server / worker / uvicorn processes

SSE_ENV = {"ZACHOT_SSE_KEEPALIVE_SECONDS": "1"}


def create_job(c: httpx.Client, steps: int, step_seconds: float) -> str:
    r = c.post("/jobs", json={"steps": steps, "step_seconds": step_seconds})
    assert r.status_code == 202, r.text
    body = r.json()
    assert re.fullmatch(r"[0-9a-f]{32}", body["id"])
    assert body["status"] == "queued"
    assert body["events_url"] == f"/jobs/{body['id']}/events"
    assert r.headers["location"] == f"/jobs/{body['id']}"
    return str(body["id"])


def read_events(c: httpx.Client, url: str, headers: dict[str, str] | None = None,
                stop_after_id: int | None = None) -> list[dict[str, str]]:
    """Read SSE events (with an id) until the server closes the stream or ``stop_after_id`` is seen."""
    events: list[dict[str, str]] = []
    with c.stream("GET", url, headers=headers or {}) as resp:
        assert resp.status_code == 200, resp.read()
        assert resp.headers["content-type"].startswith("text/event-stream")
        for ev in parse_sse(resp.iter_lines()):
            if "id" in ev:
                events.append(ev)
                if stop_after_id is not None and int(ev["id"]) >= stop_after_id:
                    break
    return events


def check_sequence(events: list[dict[str, str]], first: int, steps: int) -> None:
    """Events must be ids first..steps+1: progress for each step, then done."""
    assert [int(e["id"]) for e in events] == list(range(first, steps + 2))
    for e in events:
        data = json.loads(e["data"])
        assert data["seq"] == int(e["id"])
        if int(e["id"]) <= steps:
            assert e["event"] == "progress" and data["step"] == int(e["id"]) and data["steps"] == steps
        else:
            assert e["event"] == "done" and data["result"]["steps"] == steps


def test_job_runs_in_worker_and_sse_delivers_every_event_in_order(
    start_worker: Callable[..., ManagedProcess], start_api: Callable[..., Api]
) -> None:
    start_worker()
    api = start_api(**SSE_ENV)
    with api.client() as c:
        job = create_job(c, steps=8, step_seconds=0.1)
        events = read_events(c, f"/jobs/{job}/events")  # returns only when the server closes the stream
        check_sequence(events, 1, 8)
        status = c.get(f"/jobs/{job}").json()
    assert status["status"] == "done" and status["steps_done"] == 8 and status["last_event_id"] == 9
    assert status["result"] == {"steps": 8, "step_seconds": 0.1, "work_seconds": 0.8}
    assert status["worker"].startswith("zachot-worker-") and status["attempts"] == 1


def test_reconnect_with_last_event_id_resumes_without_gaps_or_duplicates(
    start_worker: Callable[..., ManagedProcess], start_api: Callable[..., Api]
) -> None:
    start_worker()
    api = start_api(**SSE_ENV)
    with api.client() as c:
        job = create_job(c, steps=10, step_seconds=0.15)
        url = f"/jobs/{job}/events"
        first = read_events(c, url, stop_after_id=4)  # client drops the connection after id 4
        assert [int(e["id"]) for e in first] == [1, 2, 3, 4]
        rest = read_events(c, url, headers={"Last-Event-ID": first[-1]["id"]})
        check_sequence(first + rest, 1, 10)
        # the query parameter works too, and the header wins over it
        check_sequence(read_events(c, f"{url}?last_event_id=7"), 8, 10)
        check_sequence(read_events(c, f"{url}?last_event_id=2", headers={"Last-Event-ID": "9"}), 10, 10)
        # resuming after the final event: no events, and the server closes the stream at once
        t0 = time.monotonic()
        assert read_events(c, url, headers={"Last-Event-ID": "11"}) == []
        assert time.monotonic() - t0 < 3


def test_bad_requests_get_4xx_with_clear_json_body(redis_server: RedisServer, start_api: Callable[..., Api]) -> None:
    api = start_api(**SSE_ENV)
    with api.client() as c:
        for body, field in [({"steps": 0, "step_seconds": 1}, "steps"), ({"steps": 1001, "step_seconds": 1}, "steps"),
                            ({"steps": 1.5, "step_seconds": 1}, "steps"), ({"steps": "3", "step_seconds": 1}, "steps"),
                            ({"steps": 3, "step_seconds": -1}, "step_seconds"),
                            ({"steps": 3, "step_seconds": 3600.5}, "step_seconds"),
                            ({"steps": 3}, "step_seconds"), ({"steps": 3, "step_seconds": 1, "x": 1}, "x")]:
            r = c.post("/jobs", json=body)
            assert r.status_code == 422, (body, r.text)
            assert any(field in d["loc"] for d in r.json()["detail"]), r.text
        r = c.post("/jobs", content=b"{not json", headers={"content-type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["type"] == "json_invalid"

        unknown = "0" * 32
        for path in (f"/jobs/{unknown}", f"/jobs/{unknown}/events", "/jobs/not-a-job-id", "/jobs/x/events"):
            r = c.get(path)
            assert r.status_code == 404 and r.json()["error"] == "job_not_found", (path, r.text)

        job = create_job(c, steps=3, step_seconds=0)  # no worker: stays queued
        assert c.get(f"/jobs/{job}").json()["status"] == "queued"

        # a job hash edited by hand: a clear JSON 500 naming the field, not a traceback
        rc = redis_server.client()
        for field, value in [("steps_done", "three"), ("created_at", "nan"), ("updated_at", "inf"),
                             ("steps", b"\xff\xfe"), ("result", "{not json")]:
            broken = create_job(c, steps=3, step_seconds=0)
            rc.hset(f"zachot:job:{broken}", field, value)
            r = c.get(f"/jobs/{broken}")
            assert r.status_code == 500 and r.json()["error"] == "job_record_corrupt", (field, r.text)
            assert field in r.json()["detail"] or "not UTF-8" in r.json()["detail"], (field, r.text)
            assert c.get(f"/jobs/{job}").json()["status"] == "queued"  # the connection pool is still fine
        broken = create_job(c, steps=3, step_seconds=0)
        rc.hset(f"zachot:job:{broken}", "last_seq", "x")
        r = c.get(f"/jobs/{broken}/events")
        assert r.status_code == 500 and r.json()["error"] == "job_record_corrupt", r.text
        rc.close()
        for headers, params in [({"Last-Event-ID": "abc"}, {}), ({}, {"last_event_id": "-1"}),
                                ({"Last-Event-ID": "1.5"}, {}), ({"Last-Event-ID": "5"}, {})]:
            r = c.get(f"/jobs/{job}/events", headers=headers, params=params)
            assert r.status_code == 400, (headers, params, r.text)
            assert r.json()["error"] == "bad_last_event_id" and r.json()["detail"]

        # an idle stream gets comment keep-alives (interval 1 s here)
        with c.stream("GET", f"/jobs/{job}/events") as resp:
            assert resp.status_code == 200
            t0, seen = time.monotonic(), []
            for ev in parse_sse(resp.iter_lines()):
                seen.append(ev)
                if "comment" in ev:
                    break
            assert seen[0] == {"retry": "3000"} and seen[-1] == {"comment": "keep-alive"}
            assert 0.8 < time.monotonic() - t0 < 5


def test_readyz_follows_redis_and_healthz_does_not(redis_server: RedisServer,
                                                   start_api: Callable[..., Api]) -> None:
    api = start_api()
    with api.client() as c:
        assert c.get("/readyz").status_code == 200 and c.get("/readyz").json()["status"] == "ready"
        redis_server.stop()
        t0 = time.monotonic()
        r = c.get("/readyz")
        assert r.status_code == 503 and time.monotonic() - t0 < 5
        assert r.json()["status"] == "not ready" and "redis unreachable" in r.json()["reason"]
        assert c.get("/healthz").status_code == 200
        r = c.post("/jobs", json={"steps": 1, "step_seconds": 0})
        assert r.status_code == 503 and r.json()["error"] == "redis_unavailable", r.text
        r = c.get(f"/jobs/{'a' * 32}")
        assert r.status_code == 503 and r.json()["error"] == "redis_unavailable", r.text
        redis_server.start()
        wait_until(lambda: c.get("/readyz").status_code == 200, 15, "/readyz to recover")
        create_job(c, 1, 0)


def test_sigterm_ends_open_sse_streams_so_uvicorn_exits_promptly(start_api: Callable[..., Api]) -> None:
    api = start_api(**SSE_ENV)
    ended = threading.Event()
    with api.client() as c:
        job = create_job(c, steps=5, step_seconds=1)  # no worker: the stream stays open

        def reader() -> None:
            with httpx.Client(base_url=api.base_url, timeout=30) as rc:
                with rc.stream("GET", f"/jobs/{job}/events") as resp:
                    for _ in resp.iter_lines():
                        pass
            ended.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        time.sleep(0.5)  # let the stream open (it has sent its retry: line)
    t0 = time.monotonic()
    api.proc.signal_main(signal.SIGTERM)
    # uvicorn 0.54 re-raises the captured SIGTERM after its graceful shutdown (server.capture_signals),
    # so the process ends "killed by SIGTERM", which systemd counts as a clean stop.
    assert api.proc.wait(15) == -signal.SIGTERM
    assert "Application shutdown complete." in api.proc.log()
    # --timeout-graceful-shutdown is 20 s; open SSE streams must not hold the shutdown that long
    assert time.monotonic() - t0 < 5
    assert ended.wait(5)


def test_failed_job_streams_failed_event_and_closes(redis_server: RedisServer,
                                                    start_worker: Callable[..., ManagedProcess],
                                                    start_api: Callable[..., Api]) -> None:
    """A message the API would never send (steps=0) reaches the worker: the job ends ``failed``."""
    start_worker()
    api = start_api(**SSE_ENV)
    job = "f" * 32
    settings = load_settings({"ZACHOT_REDIS_URL": redis_server.url})
    broker = build_broker(settings, "api")
    JobStore(broker.client, 3600).create(job, 0, 1.0)
    broker.enqueue(dramatiq.Message(queue_name="default", actor_name="run_job", args=(),
                                    kwargs={"job_id": job, "steps": 0, "step_seconds": 1.0}, options={}))
    with api.client() as c:
        events = read_events(c, f"/jobs/{job}/events")
        assert [(e["id"], e["event"]) for e in events] == [("1", "failed")]
        assert "invalid parameters" in json.loads(events[0]["data"])["error"]
        status = c.get(f"/jobs/{job}").json()
    assert status["status"] == "failed" and "steps=0" in status["error"] and status["finished_at"]
