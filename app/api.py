"""HTTP API of zachot (FastAPI), run as ``uvicorn app.api:app --host 127.0.0.1 --port 8000``.

Endpoints: ``POST /jobs``, ``GET /jobs/{id}``, ``GET /jobs/{id}/events`` (SSE),
``GET /healthz`` (liveness), ``GET /readyz`` (readiness: Redis PING).

All job state is in Redis; the only in-memory state is the set of open SSE
connections (see ``app/README.md``).

Limits (documented in ``app/README.md``): request bodies over 64 KiB (65536 bytes) get 413
``{"error": "body_too_large"}`` before anything is parsed (:mod:`app.bodylimit`); a job has
1..1000 steps of 0..60 seconds and at most 3600 seconds in all; 422 replies never echo the
request body (each error's ``input`` is a repr cut to 200 characters).
"""

from __future__ import annotations

import asyncio
import logging
import math
import reprlib
import signal
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import dramatiq
import redis.asyncio as aioredis
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from redis.exceptions import RedisError

from app.bodylimit import MAX_BODY_BYTES, BodyLimitMiddleware
from app.broker import AsyncEnqueuer, build_broker, make_async_client
from app.progress import JOB_ID_RE, CorruptJob, JobStore, add_new_job, job_key, job_status_from_hash
from app.settings import (
    MAX_JOB_SECONDS,
    MAX_STEP_SECONDS,
    MAX_STEPS,
    QUEUE_NAME,
    RUN_JOB_ACTOR,
    Settings,
    job_too_long,
    load_settings,
)
from app.sse import POLL_SECONDS, BadLastEventId, job_events, parse_last_event_id
from app.stream_hub import BLOCK_SECONDS, EventHub

log = logging.getLogger(__name__)

#: Upper bound (seconds) on the readiness probe's PING.
READY_TIMEOUT_SECONDS = 3.0


#: A 422 reply shows at most this many characters of each offending value (its repr), and of
#: each error message / context string.
MAX_ECHO_CHARS = 200


@dataclass
class _State:
    settings: Settings
    aredis: aioredis.Redis
    hub: EventHub
    broker: Any
    store: JobStore
    shutdown: asyncio.Event
    enqueuer: AsyncEnqueuer


def _hook_shutdown_signals(shutdown: asyncio.Event) -> None:
    """Chain onto the server's SIGTERM/SIGINT handlers so open SSE streams end promptly.

    uvicorn waits up to ``--timeout-graceful-shutdown`` seconds for open
    responses; SSE streams would hold it for the whole time. Only installed
    from the main thread when a Python-level handler (uvicorn's) is present.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum: int, frame: Any, _prev: Any = previous) -> None:
            loop.call_soon_threadsafe(shutdown.set)
            _prev(signum, frame)

        signal.signal(sig, handler)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Create Redis clients and the broker at startup; close them at shutdown.

    Raises:
        app.settings.SettingsError / ValueError: bad ``ZACHOT_*`` configuration
            (uvicorn then exits instead of serving).
    """
    settings = load_settings()
    aredis = make_async_client(settings.redis_url, socket_timeout=POLL_SECONDS + 4.0)
    hub = EventHub(make_async_client(settings.redis_url, socket_timeout=BLOCK_SECONDS + 4.0,
                                     single_connection=True), aredis)
    broker = build_broker(settings, "api")
    state = _State(settings, aredis, hub, broker, JobStore(broker.client, settings.job_ttl_seconds),
                   asyncio.Event(), AsyncEnqueuer(broker, aredis))
    _hook_shutdown_signals(state.shutdown)
    app.state.zachot = state
    hub.start()
    try:
        yield
    finally:
        state.shutdown.set()
        await hub.close()
        await aredis.aclose()
        broker.close()
        broker.client.close()


app = FastAPI(title="zachot", version="1.0", lifespan=lifespan)
app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)


def _state(request: Request) -> _State:
    return request.app.state.zachot  # type: ignore[no-any-return]


def _error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "detail": detail})


def _corrupt(job_id: str, exc: CorruptJob) -> JSONResponse:
    log.error("job %s: %s", job_id, exc)
    return _error(500, "job_record_corrupt", f"job {job_id}: {exc}")


@app.exception_handler(RedisError)
async def _redis_error(request: Request, exc: RedisError) -> JSONResponse:
    """Map any Redis failure to 503 ``{"error": "redis_unavailable", "detail": ...}``."""
    log.warning("%s %s: Redis error: %s", request.method, request.url.path, exc)
    return _error(503, "redis_unavailable", f"Redis is unavailable: {type(exc).__name__}: {exc}")


_echo_repr = reprlib.Repr()
_echo_repr.maxstring = MAX_ECHO_CHARS
_echo_repr.maxother = MAX_ECHO_CHARS
_echo_repr.maxlevel = 3


def _cut(text: str) -> str:
    """Return ``text`` cut to MAX_ECHO_CHARS characters (a cut one ends with ``...``)."""
    return text if len(text) <= MAX_ECHO_CHARS else text[: MAX_ECHO_CHARS - 3] + "..."


def short_repr(value: Any) -> str:
    """A repr of ``value`` of at most MAX_ECHO_CHARS characters, computed without building the full repr."""
    return _cut(_echo_repr.repr(value))


def _json_safe(value: Any) -> Any:
    """``value`` itself if it is a short JSON scalar (finite numbers only), else its short repr."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return _cut(value)
    return short_repr(value)


def safe_validation_errors(errors: Any) -> list[dict[str, Any]]:
    """Turn pydantic/FastAPI validation errors into a short, always JSON-encodable list.

    Args:
        errors: ``RequestValidationError.errors()``: dicts with ``type``, ``loc``, ``msg`` and
            usually ``input`` and ``ctx``.

    Returns:
        One dict per error with ``type``, ``loc`` (list of str/int), ``msg`` (at most
        MAX_ECHO_CHARS characters), ``input`` (when the error had one: ``repr`` of the value, at
        most MAX_ECHO_CHARS characters, so a NaN, an infinity or a large body is never echoed raw)
        and ``ctx`` (when present: finite numbers kept, anything else as a short string).
    """
    out: list[dict[str, Any]] = []
    for err in errors:
        item: dict[str, Any] = {
            "type": _cut(str(err.get("type", ""))),
            "loc": [p if isinstance(p, int | str) and not isinstance(p, bool) else short_repr(p)
                    for p in err.get("loc", ())],
            "msg": _cut(str(err.get("msg", ""))),
        }
        if "input" in err:
            item["input"] = short_repr(err["input"])
        ctx = err.get("ctx")
        if isinstance(ctx, dict) and ctx:
            item["ctx"] = {_cut(str(k)): _json_safe(v) for k, v in ctx.items()}
        out.append(item)
    return out


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Answer 422 ``{"detail": [{"type", "loc", "msg", "input", "ctx"}]}`` without echoing the body.

    FastAPI's own handler copies every offending value into the reply: the whole body for a
    missing field, and a NaN/Infinity value made it fail with a 500 (JSON cannot encode it).
    Here ``input`` is a repr of at most MAX_ECHO_CHARS (200) characters; see
    :func:`safe_validation_errors`.
    """
    return JSONResponse(status_code=422, content={"detail": safe_validation_errors(exc.errors())})


class JobRequest(BaseModel):
    """Body of ``POST /jobs``.

    Fields:
        steps: int, 1..1000 (MAX_STEPS); JSON integers only.
        step_seconds: seconds per step, a finite number 0..60 (MAX_STEP_SECONDS); NaN, Infinity
            and numbers too large for a float (1e309, which JSON parsers turn into infinity) are
            refused.
        steps * step_seconds: at most 3600 seconds (MAX_JOB_SECONDS) per job, so that one job
            cannot hold a worker thread for longer than an hour.

    Violations are 422 replies naming the field in ``detail[].loc``; the product's error has
    ``loc`` ``["body", "step_seconds"]`` and ``type`` ``job_too_long``.
    """

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(ge=1, le=MAX_STEPS, strict=True, description="number of steps (1..1000)")
    step_seconds: float = Field(ge=0, le=MAX_STEP_SECONDS, allow_inf_nan=False, strict=True,
                                description="duration of one step, seconds (0..60)")

    @field_validator("step_seconds")
    @classmethod
    def _job_at_most_an_hour(cls, step_seconds: float, info: ValidationInfo) -> float:
        """Refuse ``steps * step_seconds`` above MAX_JOB_SECONDS (seconds).

        Runs after both fields passed their own bounds (``steps`` is validated first); the rule
        is :func:`app.settings.job_too_long`, which the worker applies too.

        Raises:
            PydanticCustomError: ``job_too_long`` (FastAPI turns it into a 422).
        """
        steps = info.data.get("steps")
        if isinstance(steps, int):
            total = steps * step_seconds
            if job_too_long(steps, step_seconds):
                raise PydanticCustomError(
                    "job_too_long",
                    "steps * step_seconds = {total} s is more than the {limit} s one job may take",
                    {"total": f"{total:.10g}", "limit": f"{MAX_JOB_SECONDS:g}"},
                )
        return step_seconds


class JobCreated(BaseModel):
    """Response of ``POST /jobs``."""

    id: str
    status: str
    events_url: str
    status_url: str


@app.post("/jobs", status_code=202, response_model=JobCreated)
async def create_job(body: JobRequest, request: Request) -> JSONResponse:
    """Create a job and enqueue it on dramatiq queue ``default``.

    Both writes run on the event loop (redis.asyncio): the job hash (one MULTI/EXEC round trip),
    then the message (:class:`app.broker.AsyncEnqueuer`, dramatiq's own enqueue script).

    Returns:
        202 ``{"id", "status": "queued", "events_url", "status_url"}`` with a
        ``Location`` header; 422 on an invalid body (bounds in :class:`JobRequest`);
        413 ``{"error": "body_too_large"}`` for a body over 64 KiB (65536 bytes);
        503 if Redis is down (a job whose message could not be enqueued is marked
        failed, best effort).
    """
    st = _state(request)
    job_id = uuid.uuid4().hex
    async with st.aredis.pipeline(transaction=True) as pipe:
        add_new_job(pipe, job_id, body.steps, body.step_seconds, st.settings.job_ttl_seconds)
        await pipe.execute()
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=QUEUE_NAME, actor_name=RUN_JOB_ACTOR, args=(),
        kwargs={"job_id": job_id, "steps": body.steps, "step_seconds": body.step_seconds}, options={},
    )
    try:
        await st.enqueuer.enqueue(message)
    except RedisError:
        try:
            await asyncio.to_thread(st.store.fail, job_id, "could not enqueue the job (Redis unavailable)")
        except RedisError:
            pass
        raise
    url = f"/jobs/{job_id}"
    return JSONResponse(
        status_code=202,
        headers={"Location": url},
        content={"id": job_id, "status": "queued", "events_url": f"{url}/events", "status_url": url},
    )


def _not_found(job_id: str) -> JSONResponse:
    return _error(404, "job_not_found", f"no job with id {job_id[:64]!r} (unknown or expired)")


@app.get("/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> JSONResponse:
    """Return 200 with the job's status JSON, 404 ``{"error": "job_not_found"}``, or 500
    ``{"error": "job_record_corrupt", "detail": <field and value>}`` when the job hash holds a
    non-number in a counter field (edited by hand); the error is logged."""
    if not JOB_ID_RE.match(job_id):
        return _not_found(job_id)
    try:
        raw = await cast("Awaitable[dict[str, str]]", _state(request).aredis.hgetall(job_key(job_id)))
    except UnicodeDecodeError as exc:  # the client decodes replies as UTF-8
        return _corrupt(job_id, CorruptJob("(a field)", f"not UTF-8: {exc.object[exc.start:exc.end]!r}"))
    if not raw:
        return _not_found(job_id)
    try:
        return JSONResponse(job_status_from_hash(raw))
    except CorruptJob as exc:
        return _corrupt(job_id, exc)


@app.get("/jobs/{job_id}/events", response_model=None)
async def job_events_sse(
    job_id: str,
    request: Request,
    last_event_id: str | None = Query(None, description="resume after this event id"),
) -> StreamingResponse | JSONResponse:
    """Stream the job's events as ``text/event-stream`` (see :mod:`app.sse`).

    Returns:
        200 SSE stream; 404 unknown job; 500 ``job_record_corrupt`` when the
        job's ``last_seq`` is not a number; 400 ``{"error": "bad_last_event_id"}``
        when Last-Event-ID / ``last_event_id`` is not an integer or lies after
        the job's last event.
    """
    if not JOB_ID_RE.match(job_id):
        return _not_found(job_id)
    try:
        after = parse_last_event_id(request.headers.get("last-event-id"), last_event_id)
    except BadLastEventId as exc:
        return _error(400, "bad_last_event_id", str(exc))
    st = _state(request)
    try:
        status, last_seq = await cast("Awaitable[list[str | None]]",
                                      st.aredis.hmget(job_key(job_id), ["status", "last_seq"]))
    except UnicodeDecodeError as exc:
        return _corrupt(job_id, CorruptJob("status/last_seq", f"not UTF-8: {exc.object[exc.start:exc.end]!r}"))
    if status is None:
        return _not_found(job_id)
    try:
        last = int(last_seq or 0)
    except ValueError:
        return _corrupt(job_id, CorruptJob("last_seq", str(last_seq)))
    if after > last:
        return _error(400, "bad_last_event_id", f"Last-Event-ID {after} is after the job's last event {last}")
    return StreamingResponse(
        job_events(st.hub, st.aredis, job_id, after, st.settings.sse_keepalive_seconds, st.shutdown),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: always 200 ``{"status": "ok"}`` while the process serves requests."""
    return {"status": "ok"}


@app.get("/readyz", response_model=None)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: 200 when Redis answers PING within 3 s, else 503 with ``reason``."""
    try:
        await asyncio.wait_for(cast("Awaitable[bool]", _state(request).aredis.ping()), READY_TIMEOUT_SECONDS)
    except (TimeoutError, RedisError, OSError) as exc:
        reason = f"redis unreachable: {type(exc).__name__}: {exc}".rstrip(": ")
        return JSONResponse(status_code=503, content={"status": "not ready", "reason": reason})
    return JSONResponse({"status": "ready", "redis": "ok"})
