"""Redis clients and the dramatiq RedisBroker used by the worker and the API.

dramatiq facts this module relies on (checked in dramatiq 2.2.1's source):

* ``RedisBroker(heartbeat_timeout=60000 ms, maintenance_chance=1000 per
  million, dead_message_ttl=7 days)`` are the library defaults; we pass the
  values from :mod:`app.settings` instead.
* The worker's ``Worker.stop()`` first emits ``before_worker_shutdown`` and
  then joins the worker threads for up to ``--worker-shutdown-timeout`` ms;
  :class:`GracefulStop` turns that signal into a :class:`threading.Event` the
  job actor polls between (and during) steps, so actors stop cooperatively
  instead of via the asynchronous exceptions of ``ShutdownNotifications``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

import dramatiq
import redis
import redis.asyncio as aioredis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.common import current_millis
from dramatiq.middleware import Middleware
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from app.settings import DRAMATIQ_NAMESPACE, Settings

log = logging.getLogger(__name__)

#: Connect timeout (seconds) of every Redis client the app makes.
CONNECT_TIMEOUT_SECONDS = 2.0
#: Socket read/write timeout (seconds) of the synchronous clients; the broker
#: never issues blocking commands, so this only bounds a hung Redis.
SOCKET_TIMEOUT_SECONDS = 10.0


def make_redis_client(url: str, *, socket_timeout: float = SOCKET_TIMEOUT_SECONDS) -> redis.Redis:
    """Create a synchronous Redis client with bounded timeouts and few retries.

    Args:
        url: ``redis://``, ``rediss://`` or ``unix://`` URL (query-string
            options in the URL override the timeouts given here).
        socket_timeout: read/write timeout in seconds.

    Returns:
        A lazily-connecting ``redis.Redis`` (no I/O happens here).

    Raises:
        ValueError: the URL cannot be parsed (e.g. wrong scheme).
    """
    # TCP keepalive finds a peer that vanished; a unix socket has no such option and redis-py's
    # UnixDomainSocketConnection refuses the argument (TypeError at the first connect).
    keepalive = {} if urlsplit(url).scheme == "unix" else {"socket_keepalive": True}
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        **keepalive,
        retry=Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.1), retries=2),
    )


#: Most Redis connections the API's async pool opens; a request finding none free waits.
ASYNC_POOL_CONNECTIONS = 32
#: How long (seconds) a request waits for a free pooled connection before a 503.
ASYNC_POOL_WAIT_SECONDS = 5.0


def make_async_client(url: str, *, socket_timeout: float, single_connection: bool = False) -> aioredis.Redis:
    """Create the API's redis.asyncio client: a bounded pool, or one connection.

    Args:
        url: as for :func:`make_redis_client`.
        socket_timeout: read/write timeout in seconds (above any BLOCK the client issues).
        single_connection: one dedicated connection (the SSE reader's blocking XREAD) instead
            of a ``BlockingConnectionPool`` of :data:`ASYNC_POOL_CONNECTIONS`, where a request
            that finds every connection busy waits up to :data:`ASYNC_POOL_WAIT_SECONDS` and then
            gets ``redis.ConnectionError`` (the API answers 503).

    Returns:
        A lazily-connecting client with ``decode_responses=True`` and one retry.

    Raises:
        ValueError: the URL cannot be parsed.
    """
    options: dict[str, Any] = {
        "decode_responses": True, "socket_connect_timeout": CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": socket_timeout, "retry": AsyncRetry(NoBackoff(), retries=1),
    }
    if single_connection:
        return aioredis.Redis.from_url(url, single_connection_client=True, **options)
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=ASYNC_POOL_CONNECTIONS, timeout=ASYNC_POOL_WAIT_SECONDS, **options)
    return aioredis.Redis.from_pool(pool)


def broker_id(role: str) -> str:
    """Return a unique dramatiq broker id for this process.

    Args:
        role: ``worker`` or ``api``.

    Returns:
        ``zachot-<role>-<hostname>-<pid>-<12 hex>``: the member name of this
        process in ``dramatiq:__heartbeats__`` and part of its acks keys, so
        the healthcheck can tell worker heartbeats from API ones.
    """
    host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())
    return f"zachot-{role}-{host}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class GracefulStop(Middleware):
    """dramatiq middleware: set :attr:`stop_requested` when the worker begins shutting down.

    The event is set in ``before_worker_shutdown``, i.e. right after the
    worker process received SIGTERM (or SIGINT/SIGHUP via the parent), before
    dramatiq waits for the worker threads. It is never cleared: a worker
    process shuts down only once.
    """

    def __init__(self) -> None:
        self.stop_requested = threading.Event()

    def before_worker_shutdown(self, broker: Any, worker: Any) -> None:
        """Set :attr:`stop_requested` (args are dramatiq's broker and worker; returns None)."""
        log.info("worker shutdown requested: interrupting running jobs after their current wait")
        self.stop_requested.set()


def build_broker(settings: Settings, role: str) -> RedisBroker:
    """Create the RedisBroker for ``role`` (``worker`` or ``api``).

    Args:
        settings: heartbeat timeout, maintenance chance and dead-message TTL
            come from here (milliseconds / per-million, as dramatiq takes them).
        role: used in :func:`broker_id`.

    Returns:
        A RedisBroker with dramatiq's default middleware plus :class:`GracefulStop`.

    Raises:
        ValueError: ``settings.redis_url`` cannot be parsed.
    """
    broker = RedisBroker(  # type: ignore[no-untyped-call]
        client=make_redis_client(settings.redis_url),
        namespace=DRAMATIQ_NAMESPACE,
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        maintenance_chance=settings.maintenance_chance,
        dead_message_ttl=settings.dead_message_ttl_ms,
    )
    broker.broker_id = broker_id(role)
    broker.add_middleware(GracefulStop())
    return broker


class AsyncEnqueuer:
    """``broker.enqueue(message)`` issued on redis.asyncio, so the API's event loop enqueues without
    a thread per request.

    It runs the broker's own Lua script (``broker.scripts["dispatch"]``, dramatiq's
    ``brokers/redis/dispatch.lua``) with the arguments ``RedisBroker._dispatch("enqueue")`` passes,
    the same message copy (a fresh ``redis_message_id``) and the same ``before_enqueue`` /
    ``after_enqueue`` middleware hooks as ``RedisBroker.enqueue`` (dramatiq 2.x, read in 2.2.1's
    source). That argument list is dramatiq's private convention: with any other major version,
    or a broker without it, :attr:`native` is False and :meth:`enqueue` runs ``broker.enqueue`` in
    a worker thread instead. ``tests/app/test_app_enqueue.py`` compares what both ways store.

    Args:
        broker: the API's broker from :func:`build_broker`.
        client: a redis.asyncio client for the same Redis (the API's pool).
    """

    def __init__(self, broker: RedisBroker, client: aioredis.Redis) -> None:
        self.broker = broker
        self.native = (dramatiq.__version__.split(".")[0] == "2"
                       and all(hasattr(broker, a) for a in ("scripts", "_should_do_maintenance", "_max_unpack_size")))
        self._script = client.register_script(broker.scripts["dispatch"].script) if self.native else None
        self._unpack: int | None = None

    async def enqueue(self, message: dramatiq.Message[Any]) -> None:
        """Put ``message`` on its queue, as ``broker.enqueue(message)`` does (no delay).

        Raises:
            redis.RedisError: Redis is unreachable or refused the write.
        """
        if self._script is None:
            await asyncio.to_thread(self.broker.enqueue, message)
            return
        b = self.broker
        if self._unpack is None:  # dramatiq asks Redis once per process, then caches it
            self._unpack = int(await asyncio.to_thread(b._max_unpack_size))
        message = message.copy(options={"redis_message_id": str(uuid.uuid4())})
        b.emit_before("enqueue", message, None)
        await self._script(keys=[b.namespace], args=[
            "enqueue", current_millis(), message.queue_name, b.broker_id, b.heartbeat_timeout,
            b.dead_message_ttl, b._should_do_maintenance("enqueue"), self._unpack,
            message.options["redis_message_id"], message.encode(),
        ])
        b.emit_after("enqueue", message, None)


def graceful_stop_of(broker: RedisBroker) -> GracefulStop:
    """Return the :class:`GracefulStop` middleware instance of ``broker``.

    Raises:
        LookupError: the broker was not made by :func:`build_broker`.
    """
    for m in broker.middleware:
        if isinstance(m, GracefulStop):
            return m
    raise LookupError("broker has no GracefulStop middleware")
