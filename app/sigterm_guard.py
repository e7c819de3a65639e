"""Make a dramatiq worker process survive the *duplicate* SIGTERM of a cgroup-wide stop.

dramatiq 2.2.1 (``dramatiq/cli.py``, ``worker_process.termhandler``): the
first SIGTERM a worker process gets starts a graceful stop; a second one
calls ``sys.exit(1)`` at once, abandoning the running actor (its message
then stays un-acked until dead-worker recovery). The main process forwards
every SIGTERM it gets to its worker processes, so when systemd signals the
whole control group (``KillMode=control-group``, the default) each worker
process receives SIGTERM twice within milliseconds (verified: it logs
"Stopping worker process..." and "Killing worker process..." in the same ms).

:func:`install_duplicate_sigterm_guard` wraps dramatiq's handler so that a
repeat SIGTERM within :data:`DUPLICATE_WINDOW_SECONDS` of the first is
ignored; a later one still hard-stops the process as before. The unit
should nevertheless use ``KillMode=mixed`` (SIGTERM to the main process only).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

log = logging.getLogger(__name__)

#: Seconds after the first SIGTERM during which further SIGTERMs are ignored.
DUPLICATE_WINDOW_SECONDS = 2.0


def _is_dramatiq_worker_handler(handler: object) -> bool:
    return (
        callable(handler)
        and getattr(handler, "__module__", "") == "dramatiq.cli"
        and getattr(handler, "__qualname__", "").startswith("worker_process.")
    )


def install_duplicate_sigterm_guard(window_seconds: float = DUPLICATE_WINDOW_SECONDS) -> bool:
    """Wrap dramatiq's worker-process SIGTERM handler to drop near-simultaneous repeats.

    Args:
        window_seconds: repeats arriving within this many seconds of the first
            SIGTERM are ignored.

    Returns:
        True if installed; False (and nothing changed) when not called from the
        main thread of a dramatiq worker process (e.g. when the module is
        imported by tests or the API).
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    original = signal.getsignal(signal.SIGTERM)
    if not _is_dramatiq_worker_handler(original):
        return False
    handler = cast(Callable[[int, FrameType | None], Any], original)
    first_at: list[float] = []

    def guarded(signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if first_at and now - first_at[0] < window_seconds:
            log.warning("ignoring duplicate SIGTERM %.3f s after the first (graceful stop continues)",
                        now - first_at[0])
            return
        if not first_at:
            first_at.append(now)
        handler(signum, frame)

    signal.signal(signal.SIGTERM, guarded)
    return True
