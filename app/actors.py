"""dramatiq actors of the zachot worker.

Run as: ``dramatiq app.actors --queues default --processes 1 --threads 2``.

Importing this module (in each dramatiq worker process) builds the broker from
the ``ZACHOT_*`` environment, installs it as dramatiq's global broker and
declares :func:`run_job` on queue ``default``.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from typing import Any, TypeVar

import dramatiq
import redis

from app.broker import build_broker, graceful_stop_of
from app.progress import JobStore
from app.settings import (
    MAX_STEP_SECONDS,
    MAX_STEPS,
    QUEUE_NAME,
    RUN_JOB_ACTOR,
    job_too_long,
    load_settings,
)
from app.sigterm_guard import install_duplicate_sigterm_guard

log = logging.getLogger(__name__)

settings = load_settings()
broker = build_broker(settings, "worker")
dramatiq.set_broker(broker)
store = JobStore(broker.client, settings.job_ttl_seconds)
stop_requested = graceful_stop_of(broker).stop_requested
install_duplicate_sigterm_guard()

#: Backoff (milliseconds) dramatiq's Retries applies after an unexpected error.
RETRY_MIN_BACKOFF_MS = 5_000
RETRY_MAX_BACKOFF_MS = 300_000

T = TypeVar("T")


class JobInterrupted(dramatiq.Retry):
    """Raised inside :func:`run_job` when the worker is shutting down.

    It is a ``dramatiq.Retry`` with ``delay=0``: dramatiq's Retries middleware
    re-enqueues the message (via the ``default.DQ`` delay queue, eta = now)
    before the original message is acked, and does not log it as an error.
    """

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} interrupted by worker shutdown", delay=0)


def _retry_when(retries: int, exception: BaseException) -> bool:
    """dramatiq ``retry_when``: always retry (args: dramatiq's retry count, the exception).

    Shutdown interruptions must never exhaust a retry budget; unexpected
    errors are counted in the job hash and :func:`run_job` itself gives up
    (marks the job ``failed`` and returns) after ``ZACHOT_JOB_MAX_RETRIES``.
    """
    return True


REFUSING_WRITES = ("BUSY", "MISCONF")
"""Error prefixes of a Redis that answers but does no write for now (Redis docs, "Redis
persistence"): ``BUSY``, a script runs (nothing else is answered until it ends or is killed);
``MISCONF``, it cannot write its RDB snapshot or AOF (disk full, fork refused). redis-py keeps
these prefixes in the message; ``OOM`` (``maxmemory`` reached under ``noeviction``, Redis docs "Key
eviction") it turns into :class:`redis.exceptions.OutOfMemoryError` without the prefix. Each
passes when the server is mended, so a job waits for it instead of counting it as its failure."""


def _redis_unavailable(exc: Exception) -> bool:
    """True for the errors of a Redis that is down, loading (``LOADING``, a ConnectionError) or
    refusing writes for now (:data:`REFUSING_WRITES`, ``OutOfMemoryError``)."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError | redis.exceptions.OutOfMemoryError):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(REFUSING_WRITES)


def _redis_call(job_id: str, fn: Callable[[], T]) -> T:
    """Call ``fn`` until Redis answers; raise :class:`JobInterrupted` if asked to stop meanwhile.

    Retries while :func:`_redis_unavailable` (down, loading, BUSY, OOM, MISCONF) with 0.5..10 s backoff.
    """
    delay = 0.5
    while True:
        try:
            return fn()
        except redis.RedisError as exc:
            if not _redis_unavailable(exc):
                raise
            log.warning("job %s: Redis unavailable (%s); retrying in %.1f s", job_id, exc, delay)
            if stop_requested.wait(delay):
                raise JobInterrupted(job_id) from exc
            delay = min(delay * 2, 10.0)


def _valid_params(steps: Any, step_seconds: Any) -> bool:
    """Whether a message's parameters are within the API's bounds (app.settings: MAX_STEPS,
    MAX_STEP_SECONDS, MAX_JOB_SECONDS): a message written to Redis by hand or by an older API
    must not hold a worker thread longer than a job may take."""
    return (
        isinstance(steps, int) and not isinstance(steps, bool) and 1 <= steps <= MAX_STEPS
        and isinstance(step_seconds, (int, float)) and not isinstance(step_seconds, bool)
        and math.isfinite(step_seconds) and 0 <= step_seconds <= MAX_STEP_SECONDS
        and not job_too_long(steps, step_seconds)
    )


def _run_steps(job_id: str, steps: int, step_seconds: float) -> None:
    """Run the remaining steps of a job, resuming after the last committed one."""
    started = _redis_call(job_id, lambda: store.start(job_id, broker.broker_id))
    if not started.exists:
        log.warning("job %s: status hash missing (expired or never created); dropping message", job_id)
        return
    if started.terminal_status is not None:
        log.info("job %s already %s; nothing to do", job_id, started.terminal_status)
        return
    done = started.steps_done
    if done:
        log.info("job %s: resuming after step %d of %d", job_id, done, steps)
    result = {"steps": steps, "step_seconds": step_seconds, "work_seconds": steps * step_seconds}
    while done < steps:
        step = done + 1
        # The "work" of a step: wait step_seconds, but wake up at once on shutdown.
        if stop_requested.wait(step_seconds):
            log.info("job %s: interrupted during step %d (steps 1..%d are saved)", job_id, step, done)
            raise JobInterrupted(job_id)
        try:
            done = _redis_call(job_id, functools.partial(store.commit_step, job_id, step, steps, result))
        except redis.ResponseError as exc:
            if "step gap" not in str(exc):
                raise
            # Redis has fewer steps than this worker committed: it came back from an older RDB
            # snapshot (crash, OOM, SIGKILL). Resume from what Redis has; the lost steps run again.
            started = _redis_call(job_id, lambda: store.start(job_id, broker.broker_id))
            if not started.exists or started.terminal_status is not None:
                log.warning("job %s: gone or finished after Redis lost data; stopping", job_id)
                return
            log.warning("job %s: Redis lost steps %d..%d (restored from an older snapshot?); redoing them",
                        job_id, started.steps_done + 1, step - 1)
            done = started.steps_done
            continue
        if done < 0:
            log.warning("job %s: %s while committing step %d; stopping", job_id,
                        "job gone" if done == -1 else "job already finished", step)
            return
    log.info("job %s done (%d steps)", job_id, steps)


@dramatiq.actor(
    actor_name=RUN_JOB_ACTOR,
    queue_name=QUEUE_NAME,
    time_limit=math.inf,  # dramatiq's default TimeLimit (10 min) would kill long jobs
    retry_when=_retry_when,
    min_backoff=RETRY_MIN_BACKOFF_MS,
    max_backoff=RETRY_MAX_BACKOFF_MS,
)
def run_job(job_id: str, steps: int, step_seconds: float) -> None:
    """Run job ``job_id``: ``steps`` steps of ``step_seconds`` seconds each.

    Each finished step is committed to Redis together with its ``progress``
    event; the last one also writes the ``done`` event and the result. A
    redelivered message resumes after the last committed step.

    Args:
        job_id: 32-hex-digit id of a job created by the API.
        steps: 1..1000. step_seconds: 0..3600 (seconds).

    Raises:
        JobInterrupted: the worker is shutting down (message is re-enqueued).
        Exception: an unexpected error, re-raised so dramatiq retries the
            message with backoff, until the job's ``failures`` exceed
            ``ZACHOT_JOB_MAX_RETRIES``; then the job is marked failed instead.
    """
    if stop_requested.is_set():
        # A stopping worker's threads may still pick up messages (dramatiq stops consumers only
        # after the worker threads); hand them straight back without touching the job.
        raise JobInterrupted(job_id)
    if not _valid_params(steps, step_seconds):
        _redis_call(job_id, lambda: store.fail(job_id, f"invalid parameters: steps={steps!r} "
                                                       f"step_seconds={step_seconds!r}"))
        return
    try:
        _run_steps(job_id, steps, float(step_seconds))
    except JobInterrupted:
        try:
            store.mark_requeued(job_id, broker.broker_id)
        except redis.RedisError:
            log.warning("job %s: could not mark queued again", job_id, exc_info=True)
        raise
    except Exception as exc:
        failures = store.record_failure(job_id)
        if failures < 0:
            log.exception("job %s: error, and its status hash is gone; dropping message", job_id)
            return
        if failures > settings.job_max_retries:
            log.exception("job %s failed (%d unexpected errors); marking failed", job_id, failures)
            store.fail(job_id, f"{type(exc).__name__}: {exc}")
            return
        raise
