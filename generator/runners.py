"""Runner kinds: what a service's ``ExecStart=`` runs and how that program stops.

The one place that knows each server's command line and shutdown semantics, so the unit,
the stop-timeout lint and the docs read the same facts:

- ``uvicorn``: uvicorn's CLI (``--workers``, ``--timeout-graceful-shutdown``); SIGTERM and
  SIGINT start its graceful shutdown (uvicorn docs, "Deployment" / server ``handle_exit``).
- ``gunicorn``: gunicorn's CLI (``--bind``, ``--workers``, ``--worker-class``,
  ``--graceful-timeout``); only SIGTERM is a graceful stop, SIGINT and SIGQUIT are a quick
  shutdown that drops requests in flight (gunicorn docs, "Signal Handling").
- ``dramatiq``: dramatiq's CLI (``--processes``, ``--threads``, ``--worker-shutdown-timeout``
  in ms); SIGTERM and SIGINT stop gracefully, SIGHUP only restarts the workers (dramatiq docs,
  "Signals" / ``dramatiq.cli``).
- ``command``: any program as an argv list, each word passed literally (quoted for systemd,
  ``$`` and ``%`` escaped); its stop semantics are what the spec says (``shutdown_timeout_sec``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from .spectypes import SpecModel, clean_path, unit_text

__all__ = [
    "CommandRunner",
    "DramatiqRunner",
    "GunicornRunner",
    "Runner",
    "StopWait",
    "UvicornRunner",
    "exec_start",
    "takes_log_config",
    "graceful_signals",
    "program_first",
    "python_module",
    "readiness_url",
    "stop_wait",
]

AppRef = Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", max_length=255)]
"""A Python object as `module:attribute` (the form uvicorn and gunicorn take)."""
def _bind_address(value: str) -> str:
    if value != "localhost":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IPv4 or IPv6 address (e.g. 127.0.0.1, 0.0.0.0, ::1) or localhost") from None
    return value


Host = Annotated[str, Field(pattern=r"^[0-9a-fA-F.:]+$|^localhost$", max_length=64), AfterValidator(_bind_address)]
"""An IP address (v4 or v6, as Python's ipaddress reads it) or `localhost`."""
Port = Annotated[int, Field(ge=1, le=65535)]
ReadyPath = Annotated[str | None, Field(pattern=r"^/[A-Za-z0-9._~/-]*$", max_length=255)]
"""An absolute URL path of plain characters (no query, no `{`): it is put into a URL verbatim."""


class UvicornRunner(SpecModel):
    """An ASGI app served by uvicorn (`uvicorn app --host --port [--workers]`)."""

    kind: Literal["uvicorn"]
    app: AppRef
    """ASGI app as `module:attribute`."""
    host: Host
    """Address to bind (--host)."""
    port: Port
    """TCP port (--port)."""
    workers: Annotated[int, Field(ge=1, le=256)] = 1
    """--workers: worker processes; above 1 uvicorn runs a supervisor that forwards SIGTERM to
    each (in-memory state, e.g. SSE streams, is per process)."""
    graceful_shutdown_sec: Annotated[int, Field(ge=1, le=3600)]
    """--timeout-graceful-shutdown: seconds uvicorn waits for open connections (SSE streams) after SIGTERM."""
    limit_concurrency: Annotated[int, Field(ge=1, le=500000)] | None = None
    """--limit-concurrency: connections (SSE streams included) one process serves at once; above
    it uvicorn answers 503. It sets the derived LimitNOFILE= (generator/limits.py). Null: no bound."""
    readiness_path: ReadyPath = None
    """An HTTP path that answers 200 once the service can serve (e.g. `/readyz`); a delivery's
    health gate waits for it on each host before going on to the next (build/<env>/ansible/)."""


class GunicornRunner(SpecModel):
    """A WSGI or ASGI app served by gunicorn (`gunicorn --bind host:port --workers N app`)."""

    kind: Literal["gunicorn"]
    app: AppRef
    """The app as `module:attribute`."""
    host: Host
    """Address of --bind."""
    port: Port
    """Port of --bind."""
    workers: Annotated[int, Field(ge=1, le=256)]
    """--workers: worker processes."""
    worker_class: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$", max_length=255)] = "sync"
    """--worker-class: `sync`, `gthread`, or a class path such as `uvicorn.workers.UvicornWorker`."""
    threads: Annotated[int, Field(ge=1, le=256)] = 1
    """--threads per worker (used by `gthread`)."""
    graceful_timeout_sec: Annotated[int, Field(ge=1, le=3600)] = 30
    """--graceful-timeout: after SIGTERM, seconds workers get to finish their requests before
    gunicorn kills them (gunicorn's default is 30)."""
    timeout_sec: Annotated[int, Field(ge=0, le=86400)] = 30
    """--timeout: a worker silent this long is killed and restarted (0: never)."""
    readiness_path: ReadyPath = None
    """An HTTP path that answers 200 once the service can serve (e.g. `/readyz`); a delivery's
    health gate waits for it on each host before going on to the next (build/<env>/ansible/)."""


class DramatiqRunner(SpecModel):
    """A dramatiq worker consuming queues (`dramatiq module --processes --threads --queues`)."""

    kind: Literal["dramatiq"]
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$", max_length=255)]
    """Module that declares the broker and the actors."""
    queues: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]], Field(min_length=1)]
    """--queues: the queues this worker consumes."""
    processes: Annotated[int, Field(ge=1, le=64)]
    """--processes."""
    threads: Annotated[int, Field(ge=1, le=256)]
    """--threads (per process)."""
    shutdown_timeout_sec: Annotated[int, Field(ge=1, le=86400)]
    """--worker-shutdown-timeout (given in seconds here, passed in milliseconds): how long
    dramatiq waits for running actors after SIGTERM."""


_BARE = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]{0,254}")


def program_first(argv: list[str]) -> list[str]:
    """Validate argv[0] of a spec'd command: an absolute clean path, or a plain program name
    (from project.venv's bin/). Returns argv; raises ValueError with the rule otherwise."""
    program = argv[0]
    if program.startswith("/"):
        try:
            clean_path(program)
        except ValueError as exc:
            raise ValueError(f"argv[0] (the program): {exc}") from None
    elif not _BARE.fullmatch(program):
        raise ValueError(
            "argv[0] (the program) is an absolute path (/usr/bin/node) or the plain name of a program in "
            "project.venv's bin/ (celery, python): letters, digits, '.', '_', '+', '-'"
        )
    return argv


Word = Annotated[str, Field(min_length=1, max_length=4096), AfterValidator(unit_text)]
"""One argument: one line of at most 4096 characters, anything else allowed (quoted for systemd)."""


class CommandRunner(SpecModel):
    """Any program: the general case (a scheduler, a plain script, a non-Python binary)."""

    kind: Literal["command"]
    argv: Annotated[list[Word], Field(min_length=1, max_length=256), AfterValidator(program_first)]
    """The program and its arguments, one word per item, each passed literally (no shell, no
    `$VAR` expansion: zachot-gen quotes every word by systemd.service(5)'s rules). The program
    is an absolute path, or a plain name run from project.venv's bin/ (`celery` means
    `<venv>/bin/celery`)."""
    shutdown_timeout_sec: Annotated[int, Field(ge=0, le=86400)] | None = None
    """Seconds the program takes to finish after its stop signal (stop.signal); the stop-timeout
    lint checks TimeoutStopSec= against it. Null: not known (not checked)."""


Runner = Annotated[UvicornRunner | GunicornRunner | DramatiqRunner | CommandRunner, Field(discriminator="kind")]
"""What ExecStart= runs, chosen by `kind`."""
RunnerModel = UvicornRunner | GunicornRunner | DramatiqRunner | CommandRunner


def takes_log_config(runner: RunnerModel) -> bool:
    """Whether the tree writes a logging config for ``runner`` (uvicorn: generator/logconfig.py)."""
    return isinstance(runner, UvicornRunner)


def exec_start(runner: RunnerModel, venv: str, log_config: str | None = None) -> list[str]:
    """The words of ``ExecStart=`` for ``runner``, programs taken from ``venv``/bin.

    Input: a validated runner, project.venv (an absolute path) and, for uvicorn, the server path of
    its logging config (``--log-config``). Output: argv, unquoted (the unit template quotes each
    word with ``systemd_command``). Raises nothing.
    """
    bin_dir = f"{venv}/bin"
    if isinstance(runner, UvicornRunner):
        workers = ["--workers", str(runner.workers)] if runner.workers > 1 else []
        limit = [] if runner.limit_concurrency is None else ["--limit-concurrency", str(runner.limit_concurrency)]
        return [f"{bin_dir}/uvicorn", runner.app, "--host", runner.host, "--port", str(runner.port), *workers,
                *limit, "--timeout-graceful-shutdown", str(runner.graceful_shutdown_sec),
                *(["--log-config", log_config] if log_config else [])]
    if isinstance(runner, GunicornRunner):
        host = f"[{runner.host}]" if ":" in runner.host else runner.host
        threads = ["--threads", str(runner.threads)] if runner.threads > 1 else []
        return [f"{bin_dir}/gunicorn", "--bind", f"{host}:{runner.port}", "--workers", str(runner.workers),
                "--worker-class", runner.worker_class, *threads, "--graceful-timeout",
                str(runner.graceful_timeout_sec), "--timeout", str(runner.timeout_sec), runner.app]
    if isinstance(runner, DramatiqRunner):
        return [f"{bin_dir}/dramatiq", runner.module, "--processes", str(runner.processes), "--threads",
                str(runner.threads), "--worker-shutdown-timeout", str(runner.shutdown_timeout_sec * 1000),
                "--queues", *runner.queues]
    program = runner.argv[0] if runner.argv[0].startswith("/") else f"{bin_dir}/{runner.argv[0]}"
    return [program, *runner.argv[1:]]


@dataclass(frozen=True)
class StopWait:
    """How long a runner keeps working after its stop signal: ``seconds``, set by ``option``
    (the CLI option or spec field, for messages and docs), in ``field`` of the runner."""

    seconds: int
    option: str
    field: str


def stop_wait(runner: RunnerModel) -> StopWait | None:
    """The runner's own shutdown wait, which TimeoutStopSec= must exceed; None when unknown
    (a command without ``shutdown_timeout_sec``)."""
    if isinstance(runner, UvicornRunner):
        return StopWait(runner.graceful_shutdown_sec, "uvicorn --timeout-graceful-shutdown", "graceful_shutdown_sec")
    if isinstance(runner, GunicornRunner):
        return StopWait(runner.graceful_timeout_sec, "gunicorn --graceful-timeout", "graceful_timeout_sec")
    if isinstance(runner, DramatiqRunner):
        return StopWait(runner.shutdown_timeout_sec, "dramatiq --worker-shutdown-timeout", "shutdown_timeout_sec")
    if runner.shutdown_timeout_sec is None:
        return None
    return StopWait(runner.shutdown_timeout_sec, "the command's shutdown_timeout_sec", "shutdown_timeout_sec")


GRACEFUL_SIGNALS: dict[str, frozenset[str]] = {
    "uvicorn": frozenset({"SIGTERM", "SIGINT"}),
    "gunicorn": frozenset({"SIGTERM"}),
    "dramatiq": frozenset({"SIGTERM", "SIGINT"}),
}
"""Signals each server answers with a graceful shutdown (see the module docstring's sources)."""


def graceful_signals(runner: RunnerModel) -> frozenset[str] | None:
    """Stop signals that make ``runner`` shut down gracefully; None for a command (the spec's
    ``stop.signal`` is taken as the program's own)."""
    return GRACEFUL_SIGNALS.get(runner.kind)


def readiness_url(runner: RunnerModel) -> str | None:
    """The URL that says the service is ready, asked on its own host: the bound address, or loopback
    of the same family for a wildcard bind (0.0.0.0, ::); None without ``readiness_path``."""
    path = getattr(runner, "readiness_path", None)
    if path is None or not isinstance(runner, UvicornRunner | GunicornRunner):
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(runner.host, runner.host)
    if ":" in host:
        host = f"[{ipaddress.ip_address(host)}]"
    return f"http://{host}:{runner.port}{path}"


def python_module(runner: RunnerModel) -> tuple[str, str] | None:
    """(runner field, module) of the Python module the runner imports, for the lint that it
    exists in the checkout; None for a command."""
    if isinstance(runner, UvicornRunner | GunicornRunner):
        return "app", runner.app.split(":")[0]
    if isinstance(runner, DramatiqRunner):
        return "module", runner.module
    return None
