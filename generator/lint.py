"""Consistency rules across artifacts that no single tool can see.

Runs on the plan and the rendered files, so it also catches a template that writes a
path the spec did not mean. Each finding names the spec field to change. Errors fail
``render``, ``check`` and ``validate`` (exit 2); warnings are printed and pass.
"""

from __future__ import annotations

import graphlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .envscan import env_reads, python_files
from .limits import limit_problems
from .planner import Plan, ServiceView
from .runners import graceful_signals, python_module, stop_wait
from .semantics import crash_loop_seconds

__all__ = ["Finding", "lint", "source_inputs"]

STOP_MARGIN_SEC = 5.0
"""A stop timeout closer than this to the app's own shutdown wait is a warning."""


@dataclass(frozen=True)
class Finding:
    """One lint result: the spec path to change, what is wrong, and whether it fails the run."""

    path: tuple[str | int, ...]
    message: str
    severity: Literal["error", "warning"] = "error"


def _unit_settings(text: str, section: str) -> dict[str, str]:
    """The settings of one section of a unit file, as systemd.syntax(7) reads them: ``[Section]``
    headers, ``Key=Value`` with blanks around ``=`` dropped, lines starting with ``#`` or ``;``
    ignored, a trailing backslash joining the next line; a key set twice keeps its last value
    (what systemd does for a single-valued setting such as ``StandardOutput=``)."""
    out: dict[str, str] = {}
    current, pending = None, ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
        elif current == section and "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def _logrotate_paths(text: str) -> list[str]:
    """Paths of every stanza of a logrotate.conf(5) file: the words before each '{'."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [w for head in re.findall(r"(?:^|})\s*([^{}]+?)\s*{", body) for w in head.split()]


def _logs(p: Plan, files: dict[str, str]) -> Iterator[Finding]:
    """Every append: file is rotated by exactly one stanza; every rotated path is written."""
    written: dict[str, ServiceView] = {}
    for sv in p.services:
        unit = _unit_settings(files[f"root/etc/systemd/system/{sv.unit_file}"], "Service")
        for key in ("StandardOutput", "StandardError"):
            value = unit.get(key, "")
            if value.startswith("append:"):
                written[value.removeprefix("append:")] = sv
    rotated: dict[str, list[str]] = {}
    for path, text in files.items():
        if path.startswith("root/etc/logrotate.d/"):
            for log in _logrotate_paths(text):
                rotated.setdefault(log, []).append(path.removeprefix("root"))
    for log, sv in written.items():
        stanzas = rotated.get(log, [])
        if len(stanzas) != 1:
            where = ", ".join(stanzas) or "no logrotate file"
            yield Finding(
                ("services", sv.name, "logs"),
                f"{log} is written by {sv.unit_file} (append:) "
                f"but rotated by {len(stanzas)} stanzas ({where}); it must be exactly one",
            )
    for sv in p.services:
        if sv.policy is not None and not sv.policy.copytruncate:
            yield Finding(
                ("log_policies", sv.svc.logs.policy or "", "copytruncate"),
                (
                    f"{sv.unit_file} writes its logs through StandardOutput=append:, so systemd holds the file "
                    "open and cannot be told to reopen it: without copytruncate every line after a rotation "
                    "goes into the rotated file"
                ),
            )
    for log, stanzas in rotated.items():
        if log not in written:
            yield Finding(("log_policies",), f"{stanzas[0]} rotates {log}, which no unit writes")


def _can(user: str, group: str, owner: str, owner_group: str, mode: int, need: int) -> bool:
    """Whether ``user``:``group`` (an effective uid/gid, no supplementary groups: logrotate's
    ``su`` switches with setegid/seteuid) has the ``need`` bits (0o7 scale) on a file of
    ``owner``:``owner_group`` ``mode``. Root always has (it bypasses file permissions)."""
    if user == "root":
        return True
    if user == owner:
        return (mode >> 6) & need == need
    if group == owner_group:
        return (mode >> 3) & need == need
    return mode & need == need


def _rotation_rights(p: Plan) -> Iterator[Finding]:
    """logrotate runs as ``su`` = the logs folder's owner and group: it must be able to rename
    in the folder and, with copytruncate, to read and truncate every file it rotates."""
    user, group = p.rotate_as
    su = f"logrotate rotates as `su {user} {group}` (the logs folder's owner and group)"
    pr = p.spec.project
    logged = [sv for sv in p.services if sv.policy is not None]
    if logged and not _can(user, group, user, group, int(pr.logs_dir_mode, 8), 0o3):
        yield Finding(("project", "logs_dir_mode"), f"{su}, but mode {pr.logs_dir_mode} does not let it write there")
    for sv in logged:
        pol = sv.policy
        if pol is not None and pol.copytruncate and not _can(user, group, pol.owner, pol.group, int(pol.mode, 8), 0o6):
            yield Finding(
                ("log_policies", sv.svc.logs.policy or "", "mode"),
                f"{su}, but cannot read and truncate {sv.stdout_path} ({pol.owner}:{pol.group} {pol.mode}) for "
                "copytruncate: make the files group-writable for that group, or own the logs folder as root",
            )


_PERIOD_DAYS = {"daily": 1, "weekly": 7, "monthly": 31}


def _retention(p: Plan) -> Iterator[Finding]:
    """`rotate` counts rotations, not days (logrotate.conf(5)): with `notifempty` an empty log is
    not rotated, so on a quiet service archives outlive rotate × frequency. `maxage` bounds their
    age whenever the log does rotate."""
    used = {sv.svc.logs.policy for sv in p.services if sv.policy is not None}
    for name, pol in p.spec.log_policies.items():
        period = _PERIOD_DAYS[pol.frequency]
        if name not in used:
            yield Finding(("log_policies", name), "no service writes files with this policy", "warning")
        elif pol.maxage is not None and pol.maxage < pol.rotate * period:
            yield Finding(
                ("log_policies", name, "maxage"),
                f"maxage {pol.maxage} removes archives before rotate {pol.rotate} is reached: about "
                f"{pol.maxage // period + 1} remain ({pol.frequency}); lower rotate to say so",
                "warning",
            )
        if name in used and pol.one_per_day:
            yield Finding(
                ("log_policies", name, "dateformat"),
                f"dateformat {pol.dateformat} names every rotation of a day alike: a second `logrotate -f` that day "
                "fails (\"destination ... already exists\") and leaves the log unrotated; add %s (seconds since "
                f"the epoch), e.g. {pol.dateformat}-%s",
                "warning",
            )
        if name in used and pol.notifempty and pol.maxage is None:
            days = pol.rotate * _PERIOD_DAYS[pol.frequency]
            yield Finding(
                ("log_policies", name),
                f"rotate {pol.rotate} keeps {pol.rotate} rotations, not {days} days: with notifempty a quiet log "
                f"is not rotated while empty, so its archives can be much older; set maxage: {days} to remove "
                "older ones whenever it rotates, or notifempty: false to rotate every period",
                "warning",
            )


def _start_limits(p: Plan) -> Iterator[Finding]:
    for sv in p.services:
        r = sv.svc.restart
        loop = crash_loop_seconds(r)
        base = ("services", sv.name, "restart")
        if r.ride_out_sec is not None and loop is not None and loop < r.ride_out_sec:
            yield Finding(
                base,
                (
                    f"a crash loop hits the start limit after ≈{loop:g} s ({r.start_limit_burst} starts "
                    f"{r.delay_sec:g} s apart within StartLimitIntervalSec={r.start_limit_interval_sec}), "
                    f"before ride_out_sec={r.ride_out_sec}: the unit would stay failed after an outage it must "
                    "survive; raise delay_sec or start_limit_burst (or lower ride_out_sec)"
                ),
            )
        if loop is None and r.policy != "no":
            yield Finding(base, "a crash loop never reaches the start limit: the unit restarts forever", "warning")


def _cycles(p: Plan) -> Iterator[Finding]:
    graph = {n: set(s.after) | set(s.requires) | set(s.wants) for n, s in p.spec.services.items()}
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        yield Finding(("services", cycle[0], "after"), "dependency cycle: " + " -> ".join(cycle))


def _stop_timeouts(p: Plan) -> Iterator[Finding]:
    """TimeoutStopSec= outlasts the runner's own shutdown wait; the stop signal is one the
    runner shuts down gracefully on (:mod:`generator.runners`)."""
    for sv in p.services:
        runner, stop = sv.svc.runner, sv.svc.stop
        graceful = graceful_signals(runner)
        if graceful is not None and stop.signal not in graceful:
            yield Finding(
                ("services", sv.name, "stop", "signal"),
                f"{runner.kind} does not shut down gracefully on {stop.signal} (it does on "
                f"{', '.join(sorted(graceful))}): requests or jobs in flight would be cut off",
            )
        wait = stop_wait(runner)
        if wait is None:
            continue
        base = ("services", sv.name, "stop", "timeout_sec")
        if stop.timeout_sec <= wait.seconds:
            yield Finding(
                base,
                f"TimeoutStopSec={stop.timeout_sec:g} is not longer than {wait.option} ({wait.seconds} s): systemd "
                "would SIGKILL the process before it finishes shutting down",
            )
        elif stop.timeout_sec - wait.seconds < STOP_MARGIN_SEC:
            yield Finding(
                base,
                f"TimeoutStopSec={stop.timeout_sec:g} leaves less than {STOP_MARGIN_SEC:g} s after "
                f"{wait.option} ({wait.seconds} s)",
                "warning",
            )


def _limits(p: Plan) -> Iterator[Finding]:
    """Spec'd resource limits hold what the runner's own settings start (:mod:`generator.limits`)."""
    for sv in p.services:
        for path, message in limit_problems(sv.svc.limits, sv.svc.runner):
            yield Finding(("services", sv.name, *path), message)


def _exec_conditions(p: Plan) -> Iterator[Finding]:
    fm = p.spec.failure_matrix
    events = {(fm.components[s.component].unit, s.event) for s in fm.scenarios} if fm else set()
    for sv in p.services:
        name = sv.svc.exec_condition
        if name is None:
            continue
        codes = set(p.spec.healthchecks[name].exit_codes)
        base = ("healthchecks", name, "exit_codes")
        if 0 not in codes:
            yield Finding(base, "an ExecCondition= check needs exit code 0 (the start goes on)")
        if not codes & set(range(1, 255)):
            yield Finding(base, "an ExecCondition= check needs a code in 1-254 for 'skip this start'")
        if 255 not in codes:
            yield Finding(
                base,
                "an ExecCondition= check needs 255 for 'the check itself is broken' "
                "(1-254 only skip the start and never trigger Restart=)",
            )
        for event in ("condition_skip", "condition_error"):
            if fm is not None and (sv.name, event) not in events:
                yield Finding(
                    ("failure_matrix", "scenarios"),
                    f"no scenario of {sv.svc.title} with event "
                    f"'{event}': the matrix must say what systemd does when {name} "
                    f"{'skips the start' if event == 'condition_skip' else 'itself fails (255)'} "
                    "(or leave failure_matrix out: the docs then derive every row)",
                )


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a name the OS refuses (too long, ENAMETOOLONG) instead of raising."""
    try:
        return path.is_file()
    except OSError:
        return False


def _module_exists(source: Path, module: str) -> bool:
    base = source.joinpath(*module.split("."))
    return _is_file(base.with_suffix(".py")) or _is_file(base / "__init__.py")


def _programs(p: Plan, source: Path) -> Iterator[Finding]:
    """The scripts and modules the units run exist in the checkout (renames are caught here)."""
    for name, hc in p.spec.healthchecks.items():
        if not _is_file(source / hc.script):
            yield Finding(("healthchecks", name, "script"), f"{hc.script} does not exist in {source}")
    for sv in p.services:
        found = python_module(sv.svc.runner)
        if found is None:
            continue
        field, module = found
        if not _module_exists(source, module):
            yield Finding(("services", sv.name, "runner", field), f"module {module} does not exist in {source}")


def _code_roots(p: Plan, source: Path) -> list[Path]:
    """The app's code the units run: each runner module's top-level package (or module) and
    every healthcheck script."""
    roots = [source / hc.script for hc in p.spec.healthchecks.values()]
    for sv in p.services:
        found = python_module(sv.svc.runner)
        if found is not None:
            top = found[1].split(".")[0]
            roots += [source / top, source / f"{top}.py"]
    return roots


def source_inputs(p: Plan, source: Path) -> list[Path]:
    """Every path under ``source`` whose presence or content lint reads: healthcheck scripts,
    each runner module's file or package, and the code roots scanned for variable reads (a
    folder stands for its Python files, :func:`generator.envscan.python_files`). A record of a
    clean check (:mod:`generator.checkcache`) is only as good as this list; keep it beside
    :func:`_programs` and :func:`_code_roots`, which read them."""
    paths = [source / hc.script for hc in p.spec.healthchecks.values()] + _code_roots(p, source)
    for sv in p.services:
        found = python_module(sv.svc.runner)
        if found is not None:
            base = source.joinpath(*found[1].split("."))
            paths += [base.with_suffix(".py"), base / "__init__.py"]
    return list(dict.fromkeys(paths))


def _env_vars(p: Plan, source: Path) -> Iterator[Finding]:
    """Every variable the app's code reads is declared (project.env_vars or a service's
    environment), so the docs and the env file list it."""
    declared = set(p.spec.project.env_vars) | {k for s in p.spec.services.values() for k in s.environment}
    files = python_files(_code_roots(p, source))
    for read in env_reads(files, p.spec.project.env_prefix):
        if read.name not in declared:
            where = read.path.relative_to(source) if read.path.is_relative_to(source) else read.path
            yield Finding(
                ("project", "env_vars"),
                f"{where}:{read.line} reads {read.name}, which project.env_vars does not declare: add it "
                "(description, example, required) so the docs and the install step list it",
            )


def lint(p: Plan, files: dict[str, str], source: Path | None = None) -> list[Finding]:
    """Run every rule on the plan and its rendered files; returns findings, errors first.

    ``source`` is the local checkout of the app (``project.source`` resolved); when given,
    the programs the units and healthchecks name must exist in it.
    """
    found = [*_logs(p, files), *_rotation_rights(p), *_start_limits(p), *_cycles(p), *_stop_timeouts(p)]
    found += [*_exec_conditions(p), *_retention(p), *_limits(p)]
    if source is not None:
        found += [*_programs(p, source), *_env_vars(p, source)]
    return sorted(found, key=lambda f: f.severity != "error")
