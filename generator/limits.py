"""Resource limits of a service: open files, tasks, memory, OOM score, from the spec or derived.

systemd's defaults fit no server: the soft ``LimitNOFILE=`` is 1024 (systemd.exec(5), "Process
Properties": "the soft limit defaults to 1024"), and an API holding one client socket and one
backend connection (Redis, a database) per open request or stream runs out of descriptors at
~500 streams ("Too many open files"; the unit stays active while new clients fail). So every
runner whose connections are known gets a derived limit with headroom, the spec may set its own,
and a spec value below what the runner's own settings need is refused at its line.

Directives (systemd.exec(5) "Process Properties", systemd.resource-control(5)):

- ``LimitNOFILE=`` (``limits.open_files``): per process. Need: 2 descriptors per connection (the
  client's socket and, for an app that opens one per request, a backend connection) plus
  :data:`RUNTIME_FILES`; derived: 2 per connection plus :data:`BASE_FILES`. Connections per
  process come from the runner: uvicorn's ``--limit-concurrency`` (above it uvicorn answers 503
  instead of failing on a descriptor), gunicorn's threads (sync, gthread) or
  ``--worker-connections`` (its default 1000, other worker classes), dramatiq's threads plus two
  consumers per queue. Without a bound (uvicorn with no ``limit_concurrency``) the derived limit
  is :data:`UNBOUNDED_FILES`.
- ``TasksMax=`` (``limits.tasks``): threads and processes of the whole unit. Need: counted from
  the runner (uvicorn and async gunicorn workers run sync endpoints in anyio's pool of
  :data:`THREAD_POOL` threads); derived: 4 × that, at least :data:`MIN_TASKS`, so a thread leak
  stops at the unit instead of the host's PID space.
- ``MemoryMax=`` (``limits.memory_max``) and ``OOMScoreAdjust=`` (``limits.oom_score_adjust``):
  only from the spec; not set means no cgroup memory cap and the kernel's own OOM choice.

A ``command`` runner's connections and threads are unknown: only what the spec sets is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from pydantic import Field

from .runners import DramatiqRunner, GunicornRunner, RunnerModel, UvicornRunner
from .spectypes import SpecModel

__all__ = ["Limit", "Limits", "connections", "limit_problems", "limits_for", "memory_bytes", "tasks_needed"]

BASE_FILES = 1024
"""Descriptors of a derived ``LimitNOFILE=`` beyond the connections: the interpreter, its
modules, log files and pools (systemd's own soft default)."""
RUNTIME_FILES = 64
"""Descriptors a spec'd ``LimitNOFILE=`` must leave beyond the connections (the lint's floor)."""
UNBOUNDED_FILES = 65536
"""The derived ``LimitNOFILE=`` when the runner's connections have no bound."""
THREAD_POOL = 40
"""anyio's default thread limiter: sync endpoints of FastAPI/Starlette run in up to 40 threads."""
MIN_TASKS = 256
"""The smallest derived ``TasksMax=``."""
PROCESS_MEMORY = 32 * 1024 * 1024
"""Bytes one Python process needs at least (the interpreter with its imports); the floor of
``MemoryMax=`` is this times the runner's processes."""
ASYNC_CONNECTIONS = 1000
"""gunicorn's ``--worker-connections`` default, the bound of an async worker class."""

_MEMORY = re.compile(r"^([1-9][0-9]{0,15})([KMGT]?)$")
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


class Limits(SpecModel):
    """A service's resource limits (spec ``services.<name>.limits``); each unset one is derived
    from the runner where it can be (module doc)."""

    open_files: Annotated[int, Field(ge=RUNTIME_FILES, le=1048576)] | None = None
    """``LimitNOFILE=``: open files per process (soft and hard)."""
    tasks: Annotated[int, Field(ge=16, le=4194304)] | None = None
    """``TasksMax=``: threads and processes of the unit together."""
    memory_max: Annotated[str, Field(pattern=_MEMORY.pattern)] | None = None
    """``MemoryMax=``: bytes with an optional K, M, G or T suffix (base 1024), e.g. `1G`; the
    unit's processes are killed by the kernel's OOM killer above it."""
    oom_score_adjust: Annotated[int, Field(ge=-1000, le=1000)] | None = None
    """``OOMScoreAdjust=``: -1000 (never chosen by the OOM killer) to 1000 (chosen first)."""


@dataclass(frozen=True)
class Limit:
    """One limit line of a unit: ``directive=value``, where it came from (``field`` of the spec,
    or ``derived``), and the count behind a derived value (for the docs)."""

    directive: str
    value: str
    field: str
    derived: bool
    basis: str = ""


def memory_bytes(value: str) -> int:
    """Bytes of a ``memory_max`` value (``512M`` -> 536870912). Raises ValueError for another form."""
    m = _MEMORY.match(value)
    if m is None:
        raise ValueError(f"not a size: {value!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def connections(runner: RunnerModel) -> tuple[int | None, str] | None:
    """Connections one process of ``runner`` holds at most, and the runner setting that bounds
    them: ``(None, why)`` when nothing bounds them, None when unknown (a command)."""
    if isinstance(runner, UvicornRunner):
        if runner.limit_concurrency is None:
            return None, "no limit_concurrency"
        return runner.limit_concurrency, f"limit_concurrency {runner.limit_concurrency}"
    if isinstance(runner, GunicornRunner):
        if runner.worker_class in ("sync", "gthread"):
            return runner.threads, f"threads {runner.threads}"
        return ASYNC_CONNECTIONS, f"--worker-connections {ASYNC_CONNECTIONS}"
    if isinstance(runner, DramatiqRunner):
        n = runner.threads + 2 * len(runner.queues)
        return n, f"threads {runner.threads} + 2 × queues {len(runner.queues)}"
    return None


def tasks_needed(runner: RunnerModel) -> tuple[int, str] | None:
    """Threads and processes ``runner`` starts at most, with the count written out; None for a command."""
    if isinstance(runner, UvicornRunner):
        sup = 1 if runner.workers > 1 else 0
        count = f"{'1 + ' if sup else ''}workers {runner.workers} × ({THREAD_POOL} + 4)"
        return sup + runner.workers * (THREAD_POOL + 4), count
    if isinstance(runner, GunicornRunner):
        pool = 0 if runner.worker_class in ("sync", "gthread") else THREAD_POOL
        each = runner.threads + pool + 2
        return 1 + runner.workers * each, f"1 + workers {runner.workers} × (threads {runner.threads} + {pool + 2})"
    if isinstance(runner, DramatiqRunner):
        each = runner.threads + 2 * len(runner.queues) + 4
        return 1 + runner.processes * each, (
            f"1 + processes {runner.processes} × (threads {runner.threads} + 2 × queues {len(runner.queues)} + 4)")
    return None


def _processes(runner: RunnerModel) -> int:
    if isinstance(runner, UvicornRunner | GunicornRunner):
        return runner.workers + (1 if runner.workers > 1 or isinstance(runner, GunicornRunner) else 0)
    if isinstance(runner, DramatiqRunner):
        return runner.processes + 1
    return 1


def limits_for(limits: Limits, runner: RunnerModel) -> list[Limit]:
    """The limit lines of a service unit, in a fixed order: the spec's values, else the derived ones.

    Inputs: the service's :class:`Limits` and its runner. Output: :class:`Limit` lines (a
    directive is left out when the spec does not set it and nothing derives it). Raises nothing.
    """
    out: list[Limit] = []
    conns = connections(runner)
    if limits.open_files is not None:
        out.append(Limit("LimitNOFILE", str(limits.open_files), "limits.open_files", False))
    elif conns is not None:
        n, why = conns
        if n is None:
            out.append(Limit("LimitNOFILE", str(UNBOUNDED_FILES), "limits.open_files", True, why))
        else:
            out.append(Limit("LimitNOFILE", str(2 * n + BASE_FILES), "limits.open_files", True,
                             f"2 × ({why}) + {BASE_FILES}"))
    need = tasks_needed(runner)
    if limits.tasks is not None:
        out.append(Limit("TasksMax", str(limits.tasks), "limits.tasks", False))
    elif need is not None:
        out.append(Limit("TasksMax", str(max(MIN_TASKS, 4 * need[0])), "limits.tasks", True,
                         f"4 × ({need[1]}), ≥ {MIN_TASKS}"))
    if limits.memory_max is not None:
        out.append(Limit("MemoryMax", limits.memory_max, "limits.memory_max", False))
    if limits.oom_score_adjust is not None:
        out.append(Limit("OOMScoreAdjust", str(limits.oom_score_adjust), "limits.oom_score_adjust", False))
    return out


def limit_problems(limits: Limits, runner: RunnerModel) -> Iterator[tuple[tuple[str, ...], str]]:
    """Every spec'd limit too small for the runner's own settings: ``(path under the service, message)``.

    Floors: open files 2 per connection + :data:`RUNTIME_FILES`; tasks the counted threads;
    memory :data:`PROCESS_MEMORY` per process (module doc). Raises nothing.
    """
    conns = connections(runner)
    if limits.open_files is not None and conns is not None:
        n, why = conns
        if n is None:
            yield ("limits", "open_files"), (
                f"LimitNOFILE={limits.open_files} with no bound on connections ({why}): set runner.limit_concurrency "
                "so that uvicorn answers 503 before the descriptors run out"
            )
        elif limits.open_files < 2 * n + RUNTIME_FILES:
            yield ("limits", "open_files"), (
                f"LimitNOFILE={limits.open_files} cannot hold {n} connections ({why}), each a client socket and a "
                f"backend connection: at least {2 * n + RUNTIME_FILES}"
            )
    need = tasks_needed(runner)
    if limits.tasks is not None and need is not None and limits.tasks < need[0]:
        yield ("limits", "tasks"), (
            f"TasksMax={limits.tasks} is below the {need[0]} threads and processes the runner starts ({need[1]})"
        )
    if limits.memory_max is not None:
        floor = PROCESS_MEMORY * _processes(runner)
        if memory_bytes(limits.memory_max) < floor:
            yield ("limits", "memory_max"), (
                f"MemoryMax={limits.memory_max} is below {floor // 1024**2}M, {PROCESS_MEMORY // 1024**2}M for each of "
                f"the runner's {_processes(runner)} processes: the OOM killer would stop the service at its start"
            )
