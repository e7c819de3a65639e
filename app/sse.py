"""Server-sent events for a job's progress, read from the job's Redis stream.

Wire format of one event (``seq`` is the stream entry ``0-<seq>``)::

    id: 3
    event: progress
    data: {"job_id": "...", "seq": 3, "step": 3, "steps": 10, ...}

A client resumes by sending the last ``id`` it saw back as the
``Last-Event-ID`` header (or ``?last_event_id=``); the stream then continues
strictly after it. Comment lines (``: keep-alive``) are sent while idle.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable
from typing import cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.progress import TERMINAL_STATUSES, events_key, job_key
from app.stream_hub import EventHub

log = logging.getLogger(__name__)

#: Sent once at the start of every stream: the client's reconnect delay (ms).
RETRY_MS = 3000
#: Longest wait for the next event (seconds); bounds how late a shutdown is noticed.
POLL_SECONDS = 1.0
KEEPALIVE = ": keep-alive\n\n"

_LAST_ID_RE = re.compile(r"^[0-9]{1,9}$")


class BadLastEventId(ValueError):
    """The Last-Event-ID header / ``last_event_id`` parameter is not a valid event id."""


def parse_last_event_id(header: str | None, query: str | None) -> int:
    """Return the sequence number to resume after (0 = from the start).

    Args:
        header: the ``Last-Event-ID`` request header, if any (takes precedence:
            browsers send it on automatic reconnects).
        query: the ``last_event_id`` query parameter, if any.

    Returns:
        A non-negative int. Empty or absent values mean 0.

    Raises:
        BadLastEventId: the value is not 1..9 decimal digits.
    """
    raw = header if header not in (None, "") else query
    if raw is None or raw == "":
        return 0
    raw = raw.strip()
    if not _LAST_ID_RE.match(raw):
        raise BadLastEventId(f"Last-Event-ID must be a non-negative integer event id, got {raw[:40]!r}")
    return int(raw)


def format_event(seq: int, event: str, data: str) -> str:
    """Render one SSE event (str) with ``id:`` ``seq`` (int), ``event:`` and ``data:`` lines."""
    data_lines = "".join(f"data: {line}\n" for line in data.splitlines() or [""])
    return f"id: {seq}\nevent: {event}\n{data_lines}\n"


async def job_events(
    hub: EventHub,
    client: aioredis.Redis,
    job_id: str,
    after: int,
    keepalive_seconds: float,
    shutdown: asyncio.Event,
) -> AsyncIterator[str]:
    """Yield SSE chunks for job ``job_id`` after event ``after`` until its final event.

    Args:
        hub: the process's :class:`app.stream_hub.EventHub` (one Redis reader for all streams).
        client: redis.asyncio client with ``decode_responses=True`` (the pool): the job hash is
            read once per keep-alive period while the stream is idle.
        job_id: an existing job's id.
        after: last event seq the client already has (0 = none).
        keepalive_seconds: idle seconds before a ``: keep-alive`` comment.
        shutdown: when set (server stopping), the stream ends within :data:`POLL_SECONDS`
            without a final event so the client reconnects (with Last-Event-ID) elsewhere/later.

    Yields:
        ``retry:`` line first, then events and keep-alive comments. The stream
        ends after a ``done``/``failed`` event, when the job expires, on
        shutdown, or when Redis fails (logged; the client reconnects).
    """
    yield f"retry: {RETRY_MS}\n\n"
    sub = await hub.subscribe(events_key(job_id), after)
    last, last_sent = after, time.monotonic()
    try:
        while not shutdown.is_set():
            try:
                item = await asyncio.wait_for(sub.queue.get(), POLL_SECONDS)
            except TimeoutError:
                item = None
            if isinstance(item, RedisError):
                raise item
            if item is not None:
                seq, event, data = item
                yield format_event(seq, event, data)
                last, last_sent = seq, time.monotonic()
                if event in TERMINAL_STATUSES:
                    return
                continue
            if time.monotonic() - last_sent < keepalive_seconds:
                continue
            # Idle for a keep-alive period: has the job expired, or ended without a final event?
            status, last_seq = await cast("Awaitable[list[str | None]]",
                                          client.hmget(job_key(job_id), ["status", "last_seq"]))
            if status is None:
                log.info("job %s vanished (expired) while streaming; closing", job_id)
                return
            if status in TERMINAL_STATUSES and int(last_seq or 0) <= last:
                return
            yield KEEPALIVE
            last_sent = time.monotonic()
    except RedisError as exc:
        log.info("SSE for job %s: Redis error %s; closing stream (client will reconnect)", job_id, exc)
    finally:
        hub.unsubscribe(sub)
