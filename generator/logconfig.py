"""The logging configuration a uvicorn service runs with: every line with a time, a level and its logger.

uvicorn's own defaults print ``INFO:     message`` without a time, and the app's loggers get no
handler at all (Python's last-resort handler prints only WARNING and up, bare). The unit's
``append:`` files bypass journald, which would have added the time, so the time must be in the
line itself. The tree therefore writes a ``logging.config.dictConfig`` file (Python docs,
"Configuration dictionary schema") and passes it to ``uvicorn --log-config`` (uvicorn docs,
"Settings", Logging). Only the standard library's classes are named, so it does not depend on
uvicorn's internals:

- ``uvicorn.access`` goes to stdout (the service's stdout file), as uvicorn's default does;
- ``uvicorn`` and ``uvicorn.error``, and the root logger with the app's own loggers at INFO, go
  to stderr (the service's stderr file).
"""

from __future__ import annotations

from typing import Any

__all__ = ["LINE_FORMAT", "TIME_FORMAT", "uvicorn_log_config"]

LINE_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s"
"""One log line: time, level, logger name, message (logging's LogRecord attributes)."""
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"
"""ISO 8601 time with the UTC offset, e.g. 2026-12-02T21:40:05+0000 (time.strftime)."""


def uvicorn_log_config(note: str) -> dict[str, Any]:
    """The dictConfig for ``uvicorn --log-config`` (module doc); ``note`` (the generated-file note)
    is kept under ``_generated``, a key dictConfig ignores. Raises nothing."""
    def handler(stream: str) -> dict[str, str]:
        return {"class": "logging.StreamHandler", "formatter": "timed", "stream": f"ext://sys.{stream}"}

    return {
        "_generated": note,
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"timed": {"format": LINE_FORMAT, "datefmt": TIME_FORMAT}},
        "handlers": {"stdout": handler("stdout"), "stderr": handler("stderr")},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["stdout"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "INFO"},
    }
