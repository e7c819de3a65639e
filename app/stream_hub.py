"""One Redis reader for every SSE stream of an API process.

A stream that held its own blocking ``XREAD`` held its own Redis connection: 5,000 open streams
were 5,000 Redis connections, each also polling the job hash once a second. Here one task, on one
dedicated connection, reads every followed job stream in a single call (Redis docs, XREAD:
``XREAD [COUNT count] [BLOCK milliseconds] STREAMS key [key ...] id [id ...]`` "can read data from
one or multiple streams"), and hands each entry to the subscribers of its key that are behind it.

* Each key is read from the lowest position any of its subscribers has; a subscriber gets an entry
  only once, in order (stream IDs ``0-<seq>``, :mod:`app.progress`). A subscriber behind the
  position a reply was read from gets nothing of that reply (it would skip the entries between)
  and is served by the next read, which starts at its position.
* A subscription behind the XREAD in flight (a new key, or one read from further on: a client
  resuming with an older Last-Event-ID than the other streams of its job) wakes the reader.
  The wake is ``CLIENT UNBLOCK <id>`` (Redis docs: the blocked command returns as if its timeout
  elapsed), so its first events are not late by up to a block period. Should the wake reach Redis before the
  XREAD does, the events come at the end of that block instead (at most :data:`BLOCK_SECONDS`).
* A Redis error ends every subscription (each gets the error; its SSE stream closes and the client
  reconnects with Last-Event-ID); the reader tries again after :data:`RETRY_SECONDS` for whoever
  subscribes next.

A subscriber's queue is unbounded, but a job's stream is finite (its steps plus one final event),
so a slow client costs at most its job's events.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

#: Longest single blocking XREAD of the reader (seconds).
BLOCK_SECONDS = 1.0
#: Entries read per stream per XREAD.
COUNT = 100
#: Pause (seconds) after a Redis error before the reader reads again.
RETRY_SECONDS = 1.0

#: One stream entry: (seq, event name, data JSON).
Entry = tuple[int, str, str]


@dataclass(eq=False)
class Subscription:
    """One client's place in one job stream.

    Attributes:
        key: the stream's Redis key. last: seq of the last entry queued for it (0 = none).
        queue: entries after ``last`` in order, or a ``RedisError`` that ended the subscription.
    """

    key: str
    last: int
    queue: asyncio.Queue[Entry | RedisError] = field(default_factory=asyncio.Queue)


class EventHub:
    """Reads every subscribed stream with one XREAD loop on one connection.

    Args:
        reader: a client with ``single_connection_client=True`` and ``decode_responses=True``,
            used only by the loop (it blocks up to :data:`BLOCK_SECONDS` per call; give it a
            socket timeout above that).
        waker: any client (the API's pool) for ``CLIENT UNBLOCK``.
        block_seconds: the longest blocking XREAD (seconds).

    Use :meth:`start` inside the running event loop, :meth:`subscribe` / :meth:`unsubscribe` per
    stream, :meth:`close` at shutdown.
    """

    def __init__(self, reader: aioredis.Redis, waker: aioredis.Redis, block_seconds: float = BLOCK_SECONDS) -> None:
        self._reader = reader
        self._waker = waker
        self._block_ms = max(1, int(block_seconds * 1000))
        self._subs: dict[str, set[Subscription]] = {}
        self._reading: dict[str, int] = {}
        """Each key of the XREAD in flight and the seq it reads after."""
        self._reader_id: int | None = None
        self._wake_sent = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def start(self) -> None:
        """Start the reader task (call once, from the running event loop)."""
        self._task = asyncio.create_task(self._run(), name="sse-event-hub")

    async def close(self) -> None:
        """Stop the reader task and close the reader's connection; subscriptions get nothing more."""
        # A flag as well as cancel(): redis-py 7 can turn the cancel of a blocked XREAD into an
        # empty reply, after which the loop would block again.
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=self._block_ms / 1000 + 1)
        await self._reader.aclose()

    async def subscribe(self, key: str, after: int) -> Subscription:
        """Follow stream ``key`` (str) from just after seq ``after`` (int, 0 = from the start).

        Returns:
            The :class:`Subscription`; pass it to :meth:`unsubscribe` when the stream ends.
        """
        sub = Subscription(key, after)
        self._subs.setdefault(key, set()).add(sub)
        self._changed.set()
        if after < self._reading.get(key, after + 1):  # not read at all, or read from beyond ``after``
            await self._wake()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop following for ``sub``; its key leaves the next XREAD when nobody else follows it."""
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]

    async def _wake(self) -> None:
        if self._wake_sent or self._reader_id is None or not self._reading:
            return
        self._wake_sent = True
        try:
            await self._waker.client_unblock(self._reader_id)
        except RedisError:
            pass  # best effort: the reader's block ends by itself within block_seconds

    async def _run(self) -> None:
        while not self._closing:
            if not self._subs:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                if self._reader_id is None:
                    self._reader_id = int(await self._reader.client_id())
                reading = {k: min(s.last for s in subs) for k, subs in self._subs.items()}
                self._reading, self._wake_sent = reading, False
                streams = {k: f"0-{seq}" for k, seq in reading.items()}
                resp = await self._reader.xread(streams, count=COUNT, block=self._block_ms)  # type: ignore[arg-type]
            except RedisError as exc:
                self._reading, self._reader_id = {}, None
                self._fail_all(exc)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            self._reading = {}
            self._deliver(resp, reading)

    def _deliver(self, resp: Any, read_after: dict[str, int]) -> None:
        """Hand each entry of ``resp`` (the entries after ``read_after[key]``, in order) to the
        subscribers of its key that were at or past that seq when it was read; one that
        subscribed since from further back waits for the next read, from its own position."""
        items = resp.items() if isinstance(resp, dict) else (resp or [])  # RESP3 map / RESP2 list
        for key, entries in items:
            subs = [sub for sub in self._subs.get(key, ()) if sub.last >= read_after.get(key, 0)]
            for entry_id, fields in entries:
                seq = int(entry_id.split("-", 1)[1])
                entry: Entry = (seq, fields.get("event", "progress"), fields.get("data", "{}"))
                for sub in subs:
                    if seq > sub.last:
                        sub.last = seq
                        sub.queue.put_nowait(entry)

    def _fail_all(self, exc: RedisError) -> None:
        log.warning("SSE event hub: Redis error %s; closing %d stream(s) (clients reconnect)",
                    exc, sum(len(s) for s in self._subs.values()))
        for subs in self._subs.values():
            for sub in subs:
                sub.queue.put_nowait(exc)
        self._subs.clear()
