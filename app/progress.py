"""Job state and progress events in Redis (the only place they live).

Key layout (``<id>`` is a 32-hex-digit job id):

* ``zachot:job:<id>`` -- HASH with the job's status record (see :data:`FIELDS`).
* ``zachot:job:<id>:events`` -- STREAM of the job's events. Entry ``0-<seq>``
  carries fields ``event`` (``progress``/``done``/``failed``) and ``data``
  (JSON). ``seq`` counts from 1: the progress event of step *k* has seq *k*,
  the terminal event has seq ``steps_done + 1``. The SSE ``id:`` is ``seq``.

Both keys get the job TTL on every write. Every state change is one Lua
script, so a step's event and the ``steps_done`` counter change together and
a step is committed at most once even if two workers run the same job.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import redis

from app.settings import KEY_PREFIX

#: Job statuses, in lifecycle order.
STATUSES = ("queued", "running", "done", "failed")
TERMINAL_STATUSES = frozenset({"done", "failed"})
#: Event types that can appear in a job's stream.
EVENT_TYPES = ("progress", "done", "failed")

JOB_ID_RE = re.compile(r"^[0-9a-f]{32}$")

#: Hash fields (all stored as strings).
FIELDS = (
    "id", "status", "steps", "step_seconds", "steps_done", "last_seq", "attempts",
    "failures", "worker", "result", "error", "created_at", "started_at", "updated_at",
    "finished_at",
)


def job_key(job_id: str) -> str:
    """Return the Redis key (str) of the status hash of job ``job_id`` (str)."""
    return f"{KEY_PREFIX}:job:{job_id}"


def events_key(job_id: str) -> str:
    """Return the Redis key (str) of the event stream of job ``job_id`` (str)."""
    return f"{KEY_PREFIX}:job:{job_id}:events"


# KEYS: hash. ARGV: now, ttl, worker_id.
# Returns {-1} when the job does not exist, {-2, status} when it is terminal,
# else {steps_done} after marking it running.
_START = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'done' or status == 'failed' then return {-2, status} end
redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[3], 'updated_at', ARGV[1])
redis.call('HSETNX', KEYS[1], 'started_at', ARGV[1])
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {tonumber(redis.call('HGET', KEYS[1], 'steps_done') or '0')}
"""

# KEYS: hash, stream. ARGV: step, total, now, ttl, progress_json, done_json, result_json.
# Returns -1 (job gone), -2 (job terminal) or steps_done after the call; a step
# that is already committed is not written again.
_COMMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'done' or status == 'failed' then return -2 end
local step = tonumber(ARGV[1])
local total = tonumber(ARGV[2])
local done = tonumber(redis.call('HGET', KEYS[1], 'steps_done') or '0')
if done >= step then return done end
if done ~= step - 1 then return redis.error_reply('step gap: steps_done=' .. done .. ' step=' .. step) end
redis.call('XADD', KEYS[2], '0-' .. step, 'event', 'progress', 'data', ARGV[5])
redis.call('HSET', KEYS[1], 'steps_done', step, 'last_seq', step, 'updated_at', ARGV[3], 'status', 'running')
if step == total then
  redis.call('XADD', KEYS[2], '0-' .. (step + 1), 'event', 'done', 'data', ARGV[6])
  redis.call('HSET', KEYS[1], 'status', 'done', 'last_seq', step + 1, 'finished_at', ARGV[3],
             'result', ARGV[7])
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return step
"""

# KEYS: hash, stream. ARGV: now, ttl, error. Returns the failed event's seq,
# -1 (job gone) or -2 (already terminal).
_FAIL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'done' or status == 'failed' then return -2 end
local done = tonumber(redis.call('HGET', KEYS[1], 'steps_done') or '0')
local seq = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0') + 1
local data = cjson.encode({job_id = redis.call('HGET', KEYS[1], 'id'), seq = seq, status = 'failed',
                           error = ARGV[3], steps_done = done, ts = tonumber(ARGV[1])})
redis.call('XADD', KEYS[2], '0-' .. seq, 'event', 'failed', 'data', data)
redis.call('HSET', KEYS[1], 'status', 'failed', 'last_seq', seq, 'error', ARGV[3],
           'updated_at', ARGV[1], 'finished_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return seq
"""


# KEYS: hash. ARGV: now, worker_id. A running job owned by worker_id goes back
# to 'queued' (it was interrupted and its message re-enqueued). Returns 1/0.
_REQUEUE = """
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'worker') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued', 'updated_at', ARGV[1])
return 1
"""


# KEYS: hash. Returns the new failure count, or -1 if the job is gone (no stub hash is created).
_RECORD_FAILURE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HINCRBY', KEYS[1], 'failures', 1)
"""


@dataclass(frozen=True)
class StartResult:
    """Outcome of :meth:`JobStore.start`.

    Attributes:
        exists: False when the job hash is gone (never created or expired).
        terminal_status: ``done``/``failed`` when the job already finished, else None.
        steps_done: steps already committed (resume after this one).
    """

    exists: bool
    terminal_status: str | None
    steps_done: int


def _dec(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CorruptJob(ValueError):
    """A job hash field that should hold a number (or JSON) holds something else.

    Attributes: ``field`` (the hash field), ``value`` (what it holds, as text).
    """

    def __init__(self, field: str, value: str) -> None:
        super().__init__(f"job hash field {field!r} is not valid: {value[:64]!r}")
        self.field, self.value = field, value


def job_status_from_hash(raw: Mapping[Any, Any]) -> dict[str, Any]:
    """Convert a job hash as returned by HGETALL into the API's status JSON.

    Args:
        raw: field -> value mapping (bytes or str); must not be empty.

    Returns:
        dict with typed values: ints for counters, floats (Unix seconds) for
        timestamps, the decoded ``result`` object, None for missing fields.

    Raises:
        CorruptJob: a numeric field is not a finite number, a field is not
            UTF-8, or ``result`` is not JSON (a hash edited by hand or by
            another program).
    """
    h: dict[str, str] = {}
    for k, v in raw.items():
        try:
            h[_dec(k)] = _dec(v)
        except UnicodeDecodeError:
            raise CorruptJob(repr(k)[:64], repr(v)) from None

    def num(name: str, conv: type[int] | type[float]) -> int | float | None:
        if h.get(name, "") == "":
            return None
        try:
            value = conv(h[name])
        except ValueError:
            raise CorruptJob(name, h[name]) from None
        if not math.isfinite(value):  # float("nan"), float("inf"): no JSON for them
            raise CorruptJob(name, h[name])
        return value

    def result() -> Any:
        try:
            return json.loads(h["result"]) if h.get("result") else None
        except ValueError:
            raise CorruptJob("result", h["result"]) from None

    return {
        "id": h.get("id"),
        "status": h.get("status"),
        "steps": num("steps", int),
        "step_seconds": num("step_seconds", float),
        "steps_done": num("steps_done", int) or 0,
        "last_event_id": num("last_seq", int) or 0,
        "attempts": num("attempts", int) or 0,
        "failures": num("failures", int) or 0,
        "worker": h.get("worker") or None,
        "result": result(),
        "error": h.get("error") or None,
        "created_at": num("created_at", float),
        "started_at": num("started_at", float),
        "updated_at": num("updated_at", float),
        "finished_at": num("finished_at", float),
    }


def add_new_job(pipe: Any, job_id: str, steps: int, step_seconds: float, ttl_seconds: int,
                now: float | None = None) -> None:
    """Queue on ``pipe`` (a redis-py pipeline, sync or asyncio) the writes that create the status
    hash of a new ``queued`` job with TTL ``ttl_seconds``; the caller executes it.

    ``now``: creation time, Unix seconds (default ``time.time()``).
    """
    ts = repr(time.time() if now is None else now)
    key = job_key(job_id)
    pipe.hset(key, mapping={
        "id": job_id, "status": "queued", "steps": steps, "step_seconds": repr(float(step_seconds)),
        "steps_done": 0, "last_seq": 0, "attempts": 0, "failures": 0, "created_at": ts, "updated_at": ts,
    })
    pipe.expire(key, ttl_seconds)


class JobStore:
    """Synchronous access to job hashes and event streams (worker and API enqueue path).

    Args:
        client: a ``redis.Redis`` client (bytes or str responses both work).
        ttl_seconds: TTL (seconds) applied to both keys on every write.

    Every method raises ``redis.RedisError`` (e.g. ``ConnectionError``,
    ``TimeoutError``) when Redis cannot be reached.
    """

    def __init__(self, client: redis.Redis, ttl_seconds: int) -> None:
        self.client = client
        self.ttl_seconds = ttl_seconds
        self._start = client.register_script(_START)
        self._commit = client.register_script(_COMMIT)
        self._fail = client.register_script(_FAIL)
        self._requeue = client.register_script(_REQUEUE)
        self._record_failure = client.register_script(_RECORD_FAILURE)

    def create(self, job_id: str, steps: int, step_seconds: float, now: float | None = None) -> None:
        """Create the status hash of a new ``queued`` job.

        Args:
            job_id: 32 hex digits. steps: number of steps. step_seconds: seconds per step.
            now: creation time, Unix seconds (default: ``time.time()``).
        """
        pipe = self.client.pipeline(transaction=True)
        add_new_job(pipe, job_id, steps, step_seconds, self.ttl_seconds, now)
        pipe.execute()

    def start(self, job_id: str, worker_id: str) -> StartResult:
        """Mark the job ``running`` by ``worker_id`` (str) and return where to resume.

        Returns:
            :class:`StartResult`; nothing is changed for a missing or terminal job.
        """
        res = self._start(keys=[job_key(job_id), events_key(job_id)],
                          args=[repr(time.time()), self.ttl_seconds, worker_id])
        if int(res[0]) == -1:
            return StartResult(False, None, 0)
        if int(res[0]) == -2:
            return StartResult(True, _dec(res[1]), 0)
        return StartResult(True, None, int(res[0]))

    def commit_step(self, job_id: str, step: int, steps: int, result: Mapping[str, Any]) -> int:
        """Atomically record step ``step`` of ``steps`` (and, for the last one, ``done``).

        Args:
            result: JSON-serialisable job result, stored only with the last step.

        Returns:
            ``steps_done`` after the call (== ``step`` on success or if the step
            was already committed earlier); -1 if the job is gone, -2 if terminal.

        Raises:
            redis.ResponseError: ``steps_done`` is below ``step - 1`` (a gap).
        """
        now = time.time()
        progress = json.dumps({"job_id": job_id, "seq": step, "step": step, "steps": steps,
                               "percent": round(100.0 * step / steps, 2), "ts": now})
        done = json.dumps({"job_id": job_id, "seq": steps + 1, "status": "done",
                           "steps": steps, "result": result, "ts": now})
        return int(self._commit(
            keys=[job_key(job_id), events_key(job_id)],
            args=[step, steps, repr(now), self.ttl_seconds, progress, done, json.dumps(result)],
        ))

    def fail(self, job_id: str, error: str) -> int:
        """Mark the job ``failed`` with message ``error`` and append the ``failed`` event.

        Returns:
            the failed event's seq, -1 if the job is gone, -2 if it already finished.
        """
        return int(self._fail(keys=[job_key(job_id), events_key(job_id)],
                              args=[repr(time.time()), self.ttl_seconds, error[:1000]]))

    def mark_requeued(self, job_id: str, worker_id: str) -> bool:
        """Set a ``running`` job owned by ``worker_id`` back to ``queued``; True if changed."""
        return bool(self._requeue(keys=[job_key(job_id)], args=[repr(time.time()), worker_id]))

    def record_failure(self, job_id: str) -> int:
        """Increment and return (int) the job's count of unexpected errors; -1 if the job is gone."""
        return int(self._record_failure(keys=[job_key(job_id)]))

    def status(self, job_id: str) -> dict[str, Any] | None:
        """Return the status JSON of the job (see :func:`job_status_from_hash`) or None if unknown."""
        raw = cast("dict[Any, Any]", self.client.hgetall(job_key(job_id)))
        return job_status_from_hash(raw) if raw else None
