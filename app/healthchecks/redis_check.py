#!/usr/bin/env python3
"""Redis precheck for the worker unit's ``ExecCondition=``.

Run by path: ``<venv>/bin/python <repo>/app/healthchecks/redis_check.py [--wait SECONDS]``.
Reads ``ZACHOT_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``), sends one
PING, prints one line (its time first, ISO 8601) and exits with (systemd.service(5), ExecCondition=):

* :data:`EXIT_OK` (0): Redis answered PING -- the start proceeds.
* :data:`EXIT_SKIP` (1): Redis unreachable (refused, timeout, DNS, loading),
  or refusing writes because it cannot save (``MISCONF``: disk full, fork
  failing) -- systemd skips the start without marking the unit failed and without
  triggering ``Restart=``.
* :data:`EXIT_BROKEN` (255): the check itself is broken (unparsable
  ``ZACHOT_REDIS_URL``, wrong credentials, ``redis`` not importable, any
  unexpected exception) -- systemd marks the unit failed.

``--wait SECONDS`` (zachot-gen passes the healthcheck's ``wait_sec``): while the answer is
"skip" (Redis not up yet -- e.g. its host still booting), PING again every
:data:`RETRY_EVERY_SECONDS` until SECONDS have passed, then give that answer. It prints one
line when it starts waiting and one with the final answer. A broken check (255) never waits.

Imports only the standard library at module level (``redis`` is imported
inside :func:`check`), so a broken environment still yields 255, not the
interpreter's default exit status 1.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

EXIT_OK = 0
EXIT_SKIP = 1
EXIT_BROKEN = 255

#: TCP connect timeout and socket read timeout of the PING, seconds.
CONNECT_TIMEOUT_SECONDS = 2.0
READ_TIMEOUT_SECONDS = 2.0
#: Hard limit on the whole check (seconds); exceeding it counts as unreachable.
TOTAL_TIMEOUT_SECONDS = 5.0

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
#: Pause between two PINGs while ``--wait`` lasts, seconds.
RETRY_EVERY_SECONDS = 2.0


class _Deadline(BaseException):
    """Raised by the SIGALRM handler when :data:`TOTAL_TIMEOUT_SECONDS` elapse (not an Exception,
    so no ``except Exception`` on the way can swallow it)."""


def redact_url(url: str) -> str:
    """Return ``url`` (str) with any password replaced by ``***``; unparsable URLs are cut to 80 chars."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = parts.username or ""
        return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
    except ValueError:
        return url[:80]


def check(url: str) -> tuple[int, str]:
    """PING Redis at ``url`` once.

    Args:
        url: Redis URL (``redis://``, ``rediss://`` or ``unix://``).

    Returns:
        ``(exit_code, line)`` with exit_code one of EXIT_OK / EXIT_SKIP /
        EXIT_BROKEN. Never raises for Redis or configuration errors.
    """
    shown = redact_url(url)
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.exceptions import (
            AuthenticationError,
            AuthorizationError,
            InvalidResponse,
            ResponseError,
        )
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError
        from redis.retry import Retry
    except Exception as exc:  # ImportError, or a broken install
        return EXIT_BROKEN, f"BROKEN redis: cannot import the redis module: {type(exc).__name__}: {exc}"
    try:
        client = redis.Redis.from_url(
            url,
            socket_connect_timeout=CONNECT_TIMEOUT_SECONDS,
            socket_timeout=READ_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),
        )
    except (ValueError, TypeError) as exc:
        return EXIT_BROKEN, f"BROKEN redis: bad ZACHOT_REDIS_URL {shown!r}: {exc}"
    started = time.monotonic()
    try:
        client.ping()
    except (AuthenticationError, AuthorizationError) as exc:
        return EXIT_BROKEN, (f"BROKEN redis: {shown} rejected the connection "
                             f"(check password/db in ZACHOT_REDIS_URL): {exc}")
    except ResponseError as exc:
        if str(exc).startswith("MISCONF"):  # Redis refuses PING with writes while it cannot persist
            return EXIT_SKIP, (f"SKIP redis: {shown} cannot save its RDB snapshot or AOF and refuses writes "
                               "(MISCONF): the disk is full or not writable, or fork() fails "
                               "(vm.overcommit_memory=0); see the Redis log")
        return EXIT_BROKEN, (f"BROKEN redis: {shown} rejected the connection "
                             f"(check password/db in ZACHOT_REDIS_URL): {exc}")
    except InvalidResponse as exc:
        return EXIT_BROKEN, f"BROKEN redis: {shown} does not speak the Redis protocol: {exc}"
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        return EXIT_SKIP, f"SKIP redis: {shown} unreachable: {type(exc).__name__}: {exc}"
    finally:
        client.close()
    return EXIT_OK, f"OK redis: {shown} PING {(time.monotonic() - started) * 1000:.1f} ms"


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise _Deadline()


def _stamp(line: str) -> None:
    # The line lands in the service's log file (systemd's append:, no journald time): it carries its own.
    print(time.strftime("%Y-%m-%dT%H:%M:%S%z"), line, flush=True)


def check_once(url: str) -> tuple[int, str]:
    """:func:`check` under a hard deadline of :data:`TOTAL_TIMEOUT_SECONDS` (SIGALRM); a deadline
    passed counts as unreachable (EXIT_SKIP). Returns ``(exit_code, line)``; never raises."""
    try:
        signal.signal(signal.SIGALRM, _on_alarm)
        signal.setitimer(signal.ITIMER_REAL, TOTAL_TIMEOUT_SECONDS)
        try:
            return check(url)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return EXIT_SKIP, f"SKIP redis: {redact_url(url)} no answer within {TOTAL_TIMEOUT_SECONDS:g} s"
    except BaseException as exc:  # noqa: BLE001 - anything else means the check is broken
        return EXIT_BROKEN, f"BROKEN redis_check: unexpected {type(exc).__name__}: {exc}"


def _wait_seconds(argv: list[str]) -> float | None:
    """The ``--wait SECONDS`` of ``argv`` (0 without it), or None when ``argv`` is malformed."""
    if not argv:
        return 0.0
    if len(argv) != 2 or argv[0] != "--wait":
        return None
    try:
        wait = float(argv[1])
    except ValueError:
        return None
    return wait if 0 <= wait <= 3600 else None


def main(argv: list[str] | None = None) -> int:
    """Run the check (retrying a "skip" for up to ``--wait`` seconds), print its lines, return the
    exit code (int). ``argv``: the arguments after the script (default ``sys.argv[1:]``)."""
    url = os.environ.get("ZACHOT_REDIS_URL", "").strip() or DEFAULT_REDIS_URL
    wait = _wait_seconds(sys.argv[1:] if argv is None else argv)
    if wait is None:
        _stamp("BROKEN redis_check: usage: redis_check.py [--wait SECONDS] (0..3600)")
        return EXIT_BROKEN
    started = time.monotonic()
    deadline = started + wait
    code, line = check_once(url)
    tries = 1
    if code == EXIT_SKIP and wait > 0:
        _stamp(f"WAIT redis: up to {wait:g} s, PING every {RETRY_EVERY_SECONDS:g} s; first answer: {line}")
    while code == EXIT_SKIP and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(RETRY_EVERY_SECONDS, left))  # the last try falls on the deadline
        code, line = check_once(url)
        tries += 1
    if tries > 1:
        line += f" (after {tries} tries in {time.monotonic() - started:.0f} s)"
    _stamp(line)
    return code


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:  # e.g. stdout closed: still report "broken", not 1
        os._exit(EXIT_BROKEN)
