#!/usr/bin/env python3
"""Healthcheck of the zachot worker (dramatiq on queue ``default``).

Run by path: ``<venv>/bin/python <repo>/app/healthchecks/worker_healthcheck.py [--user U] [--timeout S]``.
Needs only the standard library and ``redis`` (no ``app`` import), reads
``/proc`` (no psutil) and the env vars ``ZACHOT_REDIS_URL``, ``ZACHOT_USER``,
``ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS``.

Prints one line per check (``OK   name: detail`` / ``FAIL name: detail``)
and a final ``overall: ...`` line. Exit codes:

* :data:`EXIT_OK` (0) -- all four checks pass.
* :data:`EXIT_DEGRADED` (1) -- Redis is up, but no python / dramatiq worker
  processes of the user, or no live worker heartbeat in Redis.
* :data:`EXIT_DOWN` (2) -- Redis unreachable, dramatiq's queue keys unreadable,
  the deadline (``--timeout``, default 10 s) exceeded, or the check cannot run
  (unknown user, ``redis`` not importable).
"""

from __future__ import annotations

import argparse
import os
import pwd
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

EXIT_OK = 0
EXIT_DEGRADED = 1
EXIT_DOWN = 2
STATUS_NAMES = {EXIT_OK: "OK", EXIT_DEGRADED: "DEGRADED", EXIT_DOWN: "DOWN"}

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_TIMEOUT_SECONDS = 10.0
#: Connect and read timeouts (seconds) of each Redis command.
REDIS_TIMEOUT_SECONDS = 2.0
#: dramatiq's RedisBroker default heartbeat_timeout (ms) if the env var is unset.
DEFAULT_HEARTBEAT_TIMEOUT_MS = 60_000

NAMESPACE = "dramatiq"
QUEUE = "default"
WORKER_ID_PREFIX = "zachot-worker-"
API_ID_PREFIX = "zachot-api-"
#: Expected Redis types of dramatiq's keys (see dramatiq/brokers/redis/dispatch.lua).
#: A missing key ("none") is normal: Redis deletes empty lists/hashes/sets.
EXPECTED_TYPES = {
    f"{NAMESPACE}:{QUEUE}": "list",             # message ids waiting to be fetched
    f"{NAMESPACE}:{QUEUE}.msgs": "hash",        # id -> message, until acked (waiting + in flight)
    f"{NAMESPACE}:{QUEUE}.DQ.msgs": "hash",     # delayed messages (retries/backoff)
    f"{NAMESPACE}:{QUEUE}.XQ": "zset",          # dead-lettered ids by time
    f"{NAMESPACE}:__heartbeats__": "zset",      # broker id -> last command time (ms)
}


class DeadlineExceeded(BaseException):
    """Raised by the SIGALRM handler when the overall ``--timeout`` elapses.

    A BaseException so that the checks' ``except Exception`` cannot swallow it.
    """


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``name``, ``ok``, ``detail`` and ``severity`` (exit code if failed)."""

    name: str
    ok: bool
    detail: str
    severity: int

    def line(self) -> str:
        """Return the printed line (str), e.g. ``OK   redis: PING 0.4 ms``."""
        return f"{'OK' if self.ok else 'FAIL':<4} {self.name}: {self.detail}"


@dataclass(frozen=True)
class Proc:
    """A process from /proc: ``pid``, ``ppid``, real ``uid`` and ``argv``."""

    pid: int
    ppid: int
    uid: int
    argv: tuple[str, ...]


def list_processes(proc_root: str = "/proc") -> list[Proc]:
    """Return all processes readable under ``proc_root`` (a /proc mount path).

    Returns:
        list of :class:`Proc`; kernel threads, processes that vanish while being
        read and processes whose files are unreadable (hidepid) are skipped.

    Raises:
        OSError: ``proc_root`` itself cannot be listed.
    """
    procs: list[Proc] = []
    for name in os.listdir(proc_root):
        if not name.isdigit():
            continue
        try:
            with open(f"{proc_root}/{name}/cmdline", "rb") as f:
                raw = f.read()
            with open(f"{proc_root}/{name}/status", encoding="utf-8", errors="replace") as f:
                status = f.read()
        except OSError:
            continue
        argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        try:
            uid = int(fields["Uid"].split()[0])
            ppid = int(fields["PPid"].strip())
        except (KeyError, ValueError, IndexError):
            continue
        if argv:
            procs.append(Proc(int(name), ppid, uid, argv))
    return procs


def is_python(p: Proc) -> bool:
    """True if the process's argv[0] is a python interpreter (``python``, ``python3.11``...)."""
    base = os.path.basename(p.argv[0])
    return base.startswith("python") and all(c.isdigit() or c == "." for c in base[6:])


def is_dramatiq_app_worker(p: Proc) -> bool:
    """True if argv runs dramatiq (script ``.../dramatiq`` or ``-m dramatiq``) with module ``app.actors``."""
    args = p.argv
    runs_dramatiq = any(os.path.basename(a) == "dramatiq" for a in args[:3]) or any(
        args[i] == "-m" and args[i + 1] == "dramatiq" for i in range(len(args) - 1)
    )
    has_module = any(a == "app.actors" or a.startswith("app.actors:") for a in args)
    return runs_dramatiq and has_module


def _pids(procs: list[Proc]) -> str:
    shown = ", ".join(str(p.pid) for p in procs[:10])
    return shown + (", ..." if len(procs) > 10 else "")


def check_python_processes(procs: list[Proc], uid: int, user: str) -> CheckResult:
    """Check 1: python processes running as ``uid`` (int; ``user`` is its name for the line).

    Returns:
        :class:`CheckResult` (severity 1); this healthcheck's own process is excluded.
    """
    mine = [p for p in procs if p.uid == uid and p.pid != os.getpid() and is_python(p)]
    if not mine:
        return CheckResult("python_processes", False, f"none running as {user}", EXIT_DEGRADED)
    return CheckResult("python_processes", True, f"{len(mine)} running as {user} (pids {_pids(mine)})", EXIT_DEGRADED)


def check_dramatiq_processes(procs: list[Proc], uid: int, user: str) -> CheckResult:
    """Check 2: dramatiq processes of ``uid`` whose command line runs ``app.actors``.

    Returns:
        :class:`CheckResult` (severity 1) naming the main process(es) and their
        worker processes (children of a matched process).
    """
    found = [p for p in procs if p.uid == uid and is_dramatiq_app_worker(p)]
    if not found:
        return CheckResult("dramatiq_processes", False, f"none found running app.actors as {user}", EXIT_DEGRADED)
    pids = {p.pid for p in found}
    mains = [p for p in found if p.ppid not in pids]
    workers = [p for p in found if p.ppid in pids]
    return CheckResult(
        "dramatiq_processes", True,
        f"{len(mains)} main (pids {_pids(mains)}), {len(workers)} worker processes (pids {_pids(workers) or '-'})",
        EXIT_DEGRADED,
    )


def check_redis(client: Any) -> CheckResult:
    """Check 3: ``client`` (a ``redis.Redis`` with short timeouts) answers PING.

    Returns:
        :class:`CheckResult` (severity 2) with the latency in milliseconds; never raises
        for Redis errors (a :class:`DeadlineExceeded` passes through).
    """
    t0 = time.monotonic()
    try:
        client.ping()
    except Exception as exc:
        return CheckResult("redis", False, f"PING failed: {type(exc).__name__}: {exc}", EXIT_DOWN)
    return CheckResult("redis", True, f"PING {(time.monotonic() - t0) * 1000:.1f} ms", EXIT_DOWN)


def check_queue(client: Any, heartbeat_timeout_ms: int, now_ms: float | None = None) -> CheckResult:
    """Check 4: read queue ``default``'s dramatiq keys; report depth and live worker heartbeats.

    Proves: the keys are readable and of dramatiq's types (absent = empty),
    and some worker's broker ran a command within ``heartbeat_timeout_ms``.
    Does not prove a worker can finish a job. Severity 2 if the keys cannot
    be read or have wrong types, 1 if no live worker heartbeat.

    Args:
        client: ``redis.Redis``. heartbeat_timeout_ms: liveness window (ms).
        now_ms: current Unix time in ms (default: the local clock, like dramatiq's).
    """
    hb_key = f"{NAMESPACE}:__heartbeats__"
    now_ms = time.time() * 1000 if now_ms is None else now_ms
    try:
        pipe = client.pipeline(transaction=False)
        for key in EXPECTED_TYPES:
            pipe.type(key)
        pipe.llen(f"{NAMESPACE}:{QUEUE}")
        pipe.hlen(f"{NAMESPACE}:{QUEUE}.msgs")
        pipe.hlen(f"{NAMESPACE}:{QUEUE}.DQ.msgs")
        pipe.zcard(f"{NAMESPACE}:{QUEUE}.XQ")
        pipe.zrangebyscore(hb_key, now_ms - heartbeat_timeout_ms, "+inf", withscores=True)
        res = pipe.execute(raise_on_error=False)
    except Exception as exc:
        return CheckResult("queue_default", False, f"cannot read keys: {type(exc).__name__}: {exc}", EXIT_DOWN)
    n = len(EXPECTED_TYPES)
    errors = [r for r in res if isinstance(r, Exception)]
    types = {k: (t.decode() if isinstance(t, bytes) else str(t)) for k, t in zip(EXPECTED_TYPES, res[:n], strict=True)}
    wrong = [f"{k} is {t}, expected {EXPECTED_TYPES[k]}" for k, t in types.items()
             if t not in ("none", EXPECTED_TYPES[k])]
    if errors or wrong:
        why = "; ".join(wrong) or f"{type(errors[0]).__name__}: {errors[0]}"
        return CheckResult("queue_default", False, f"unexpected key layout: {why}", EXIT_DOWN)
    pending, total, delayed, dead, beats = res[n:]
    ages = {(m.decode() if isinstance(m, bytes) else str(m)): (now_ms - s) / 1000 for m, s in beats}
    worker_ages = [a for m, a in ages.items() if m.startswith(WORKER_ID_PREFIX)]
    api = sum(1 for m in ages if m.startswith(API_ID_PREFIX))
    other = len(ages) - len(worker_ages) - api
    depth = (f"pending={pending} in_flight={max(total - pending, 0)} delayed={delayed} dead_lettered={dead}")
    window = f"within {heartbeat_timeout_ms / 1000:g} s"
    others = f"api={api} other={other}"
    if not worker_ages:
        return CheckResult("queue_default", False,
                           f"{depth}; no live worker heartbeat {window} ({others})", EXIT_DEGRADED)
    newest = max(min(worker_ages), 0.0)
    return CheckResult("queue_default", True,
                       f"{depth}; live worker heartbeats={len(worker_ages)} {window}, newest {newest:.1f} s ago "
                       f"({others})", EXIT_DEGRADED)


def _heartbeat_timeout_ms() -> int:
    raw = os.environ.get("ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS", "").strip()
    try:
        return int(raw) if raw else DEFAULT_HEARTBEAT_TIMEOUT_MS
    except ValueError:
        return DEFAULT_HEARTBEAT_TIMEOUT_MS


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise DeadlineExceeded()


def run_checks(user: str, uid: int, emit: Callable[[CheckResult], None]) -> list[CheckResult]:
    """Run the four checks in order, passing each result to ``emit`` as soon as it is known.

    Returns:
        the list of results (4 entries).
    """
    results: list[CheckResult] = []

    def add(r: CheckResult) -> None:
        results.append(r)
        emit(r)

    procs = list_processes()
    add(check_python_processes(procs, uid, user))
    add(check_dramatiq_processes(procs, uid, user))
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except Exception as exc:
        for name in ("redis", "queue_default"):
            add(CheckResult(name, False, f"cannot import redis: {type(exc).__name__}: {exc}", EXIT_DOWN))
        return results
    url = os.environ.get("ZACHOT_REDIS_URL", "").strip() or DEFAULT_REDIS_URL
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                                      socket_timeout=REDIS_TIMEOUT_SECONDS, retry=Retry(NoBackoff(), 0))
    except (ValueError, TypeError) as exc:
        for name in ("redis", "queue_default"):
            add(CheckResult(name, False, f"bad ZACHOT_REDIS_URL: {exc}", EXIT_DOWN))
        return results
    try:
        r = check_redis(client)
        add(r)
        if r.ok:
            add(check_queue(client, _heartbeat_timeout_ms()))
        else:
            add(CheckResult("queue_default", False, "not checked: Redis unreachable", EXIT_DOWN))
    finally:
        client.close()
    return results


def main(argv: list[str] | None = None) -> int:
    """Parse ``--user``/``--timeout`` (seconds), run the checks under a hard deadline.

    Returns:
        the exit code (0/1/2); argparse itself exits 2 on bad arguments.
    """
    parser = argparse.ArgumentParser(description="zachot worker healthcheck")
    parser.add_argument("--user", default=os.environ.get("ZACHOT_USER") or None,
                        help="service user (default: $ZACHOT_USER or the current user)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                        help="hard limit for the whole run, seconds (default 10)")
    args = parser.parse_args(argv)
    try:
        if args.user:
            uid, user = pwd.getpwnam(args.user).pw_uid, args.user
        else:
            uid = os.getuid()
            try:
                user = pwd.getpwuid(uid).pw_name
            except KeyError:  # uid without a passwd entry (containers)
                user = f"uid {uid}"
    except KeyError:
        print(f"FAIL config: unknown user {args.user!r}\noverall: DOWN (exit {EXIT_DOWN})", flush=True)
        return EXIT_DOWN

    results: list[CheckResult] = []

    def emit(r: CheckResult) -> None:
        results.append(r)
        print(r.line(), flush=True)

    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, args.timeout)
    try:
        run_checks(user, uid, emit)
    except DeadlineExceeded:
        print(f"FAIL deadline: healthcheck did not finish within {args.timeout:g} s", flush=True)
        print(f"overall: DOWN (exit {EXIT_DOWN})", flush=True)
        return EXIT_DOWN
    except Exception as exc:
        print(f"FAIL healthcheck: unexpected {type(exc).__name__}: {exc}", flush=True)
        print(f"overall: DOWN (exit {EXIT_DOWN})", flush=True)
        return EXIT_DOWN
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    code = max((r.severity for r in results if not r.ok), default=EXIT_OK)
    failed = [r.name for r in results if not r.ok]
    print(f"overall: {STATUS_NAMES[code]} (exit {code})" + (f"; failed: {', '.join(failed)}" if failed else ""),
          flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
