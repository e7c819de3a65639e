"""Configuration of the zachot app, read only from ``ZACHOT_*`` environment variables.

Every variable is documented in ``app/README.md``. The queue name is *not*
configurable: it is always :data:`QUEUE_NAME` (``default``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

#: The one dramatiq queue the app uses (fixed by the deployment contract).
QUEUE_NAME = "default"

#: dramatiq's Redis key namespace (dramatiq's own default, kept so the
#: healthcheck can read dramatiq's keys).
DRAMATIQ_NAMESPACE = "dramatiq"

#: Prefix of every key the app itself writes (job hashes and event streams).
KEY_PREFIX = "zachot"

#: Name of the long-running job actor (shared by the API, which enqueues
#: messages for it without importing the worker module, and the worker).
RUN_JOB_ACTOR = "run_job"

#: Bounds of a job, enforced by the API (422) and again by the worker (status failed): steps
#: per job, seconds per step, seconds per job (steps * step_seconds), so that no job holds a
#: worker thread for more than an hour.
MAX_STEPS = 1000
MAX_STEP_SECONDS = 60.0
MAX_JOB_SECONDS = 3600.0


def job_too_long(steps: int, step_seconds: float) -> bool:
    """Whether ``steps * step_seconds`` (seconds) exceeds MAX_JOB_SECONDS; a relative slack of
    1e-9 absorbs float rounding (71 * (3600 / 71) is 3600.0000000000005)."""
    return steps * step_seconds > MAX_JOB_SECONDS * (1 + 1e-9)

#: Prefixes of the dramatiq ``broker_id`` (the member name in the
#: ``dramatiq:__heartbeats__`` sorted set) used by the worker and the API.
WORKER_ID_PREFIX = "zachot-worker-"
API_ID_PREFIX = "zachot-api-"

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class SettingsError(ValueError):
    """A ``ZACHOT_*`` environment variable has an invalid value."""


@dataclass(frozen=True)
class Settings:
    """All tunables of the app.

    Attributes:
        redis_url: ``ZACHOT_REDIS_URL``.
        job_ttl_seconds: ``ZACHOT_JOB_TTL_SECONDS``; TTL (seconds) of a job's
            hash and event stream, refreshed on every write.
        heartbeat_timeout_ms: ``ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS``; dramatiq
            RedisBroker ``heartbeat_timeout`` (milliseconds).
        maintenance_chance: ``ZACHOT_BROKER_MAINTENANCE_CHANCE``; dramatiq
            RedisBroker ``maintenance_chance`` (per million broker commands).
        dead_message_ttl_ms: ``ZACHOT_BROKER_DEAD_MESSAGE_TTL_MS``; dramatiq
            RedisBroker ``dead_message_ttl`` (milliseconds).
        job_max_retries: ``ZACHOT_JOB_MAX_RETRIES``; unexpected job errors
            tolerated before the job is marked ``failed``.
        sse_keepalive_seconds: ``ZACHOT_SSE_KEEPALIVE_SECONDS``; idle time
            (seconds) after which the SSE endpoint sends a comment line.
    """

    redis_url: str = DEFAULT_REDIS_URL
    job_ttl_seconds: int = 7 * 24 * 3600
    heartbeat_timeout_ms: int = 60_000
    maintenance_chance: int = 100_000
    dead_message_ttl_ms: int = 7 * 24 * 3600 * 1000
    job_max_retries: int = 3
    sse_keepalive_seconds: float = 15.0


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not an integer") from None
    if not lo <= value <= hi:
        raise SettingsError(f"{name}={value} is outside {lo}..{hi}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a number") from None
    if not lo <= value <= hi:  # also rejects NaN
        raise SettingsError(f"{name}={value} is outside {lo}..{hi}")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from environment variables.

    Args:
        environ: mapping to read instead of ``os.environ`` (for tests).

    Returns:
        The parsed settings; unset or empty variables take their defaults.

    Raises:
        SettingsError: a variable is set to an unparsable or out-of-range value.
    """
    env = os.environ if environ is None else environ
    d = Settings()
    return Settings(
        redis_url=env.get("ZACHOT_REDIS_URL", "").strip() or DEFAULT_REDIS_URL,
        job_ttl_seconds=_int(env, "ZACHOT_JOB_TTL_SECONDS", d.job_ttl_seconds, 60, 365 * 24 * 3600),
        heartbeat_timeout_ms=_int(
            env, "ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS", d.heartbeat_timeout_ms, 1000, 3_600_000
        ),
        maintenance_chance=_int(env, "ZACHOT_BROKER_MAINTENANCE_CHANCE", d.maintenance_chance, 0, 1_000_000),
        dead_message_ttl_ms=_int(
            env, "ZACHOT_BROKER_DEAD_MESSAGE_TTL_MS", d.dead_message_ttl_ms, 1000, 365 * 86_400_000
        ),
        job_max_retries=_int(env, "ZACHOT_JOB_MAX_RETRIES", d.job_max_retries, 0, 100),
        sse_keepalive_seconds=_float(env, "ZACHOT_SSE_KEEPALIVE_SECONDS", d.sse_keepalive_seconds, 0.5, 300.0),
    )
