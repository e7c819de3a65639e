"""A real rotation run of services' logrotate files in a sandbox (one service's, or several
services' together: one logrotate call per simulated day takes all their files).

The spec is rendered with its root moved into a scratch folder; the log files are
created as tmpfiles.d would (owner, mode) and held open with ``O_WRONLY|O_APPEND``, the
way systemd opens ``StandardOutput=append:`` files; ``logrotate -d`` (with its own state
file) checks the file first, then ``logrotate -f`` runs once per
simulated day under libfaketime (Debian's faketime) with the spec's users resolved by
nss_wrapper. Lines are written before every run and once more after the last one.

:func:`rotation_findings` turns the observed tree into findings against the log
policy (logrotate.conf(5): ``dateext``/``dateformat`` names, ``compress`` with
``delaycompress``, ``rotate`` retention, ``copytruncate`` keeping the writer's file).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
import shutil
import subprocess
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

from .environment import TEMPLATES_DIR
from .models import LogPolicy, Spec
from .planner import Plan, plan
from .realtools import ToolFinding, find_library, need_tool, nss_env
from .renderer import render

__all__ = [
    "RotationRun",
    "Sandbox",
    "kept_days",
    "may_share_a_run",
    "rotate_in_sandbox",
    "rotate_service",
    "rotate_services",
    "rotation_findings",
    "sandbox",
]

FIRST_DAY = dt.date(2026, 1, 1)
"""The first simulated day; any fixed date keeps runs reproducible."""


@dataclass
class RotationRun:
    """What a sandboxed rotation produced for one service.

    ``written[log]`` are the batches of lines written to each live log (one per run plus a
    final one); ``files`` the names left in the logs folder with their mode;
    ``lines[log]`` the lines found in the rotated files (oldest first) and then the live
    file; ``live[log]`` the live file's lines; ``days`` the simulated dates.
    """

    policy: LogPolicy
    logs: list[Path]
    days: list[dt.date]
    written: dict[str, list[list[str]]] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    lines: dict[str, list[str]] = field(default_factory=dict)
    live: dict[str, list[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _moved(spec: Spec, root: Path) -> Spec:
    p = spec.project
    moved = {k: f"{root}{v}" for k in ("root", "venv", "env_file", "repo", "logs_dir") if (v := getattr(p, k))}
    return spec.model_copy(update={"project": p.model_copy(update=moved)})


def _is_rotated(name: str, log: str) -> bool:
    """``api.log-2026-01-03[.gz]`` (dateext) or ``api.log.1[.gz]`` (numbered) for ``api.log``."""
    return name.startswith(log + "-") or name.startswith(log + ".")


def _archive_of(name: str, logs: AbstractSet[str]) -> list[str]:
    """The logs among ``logs`` that file ``name`` is an archive of (:func:`_is_rotated`),
    found by its own prefixes: no scan of every log for every file."""
    return [name[:k] for k, ch in enumerate(name) if ch in "-." and name[:k] in logs]


def _age_key(path: Path, dated: bool) -> tuple[int, str]:
    """Oldest first. ``dated`` (``dateext``) names sort as text, as logrotate sorts them
    (logrotate.conf(5): a ``dateformat`` must be lexically sortable), whatever dots the format
    holds (``-%Y.%m.%d``); numbered names (``api.log.3``) by descending number."""
    stem = path.name.removesuffix(".gz")
    if dated:
        return 0, stem
    number = stem.rsplit(".", 1)[-1]
    return (-int(number), "") if number.isdigit() else (0, stem)


def _read(path: Path) -> list[str]:
    data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    return data.decode().splitlines()


@dataclass(frozen=True)
class Sandbox:
    """A spec planned once with its root moved under ``root`` (a scratch folder), and its
    logrotate files rendered (``files``: {path in the tree: text}):
    every service's rotation reuses it, one after another, each in a fresh logs folder."""

    plan: Plan
    files: dict[str, str]


def sandbox(spec: Spec, root: Path, templates_dir: Path = TEMPLATES_DIR) -> Sandbox:
    """Plan ``spec`` with its paths moved under ``root`` (an empty scratch folder) and render its
    logrotate files, the only ones a rotation reads."""
    p = plan(_moved(spec, root))
    logrotate_files = {f"root{sv.logrotate_path}" for sv in p.services if sv.logrotate_path}
    return Sandbox(p, render(p, templates_dir, only=logrotate_files))


def rotate_in_sandbox(
    spec: Spec, service: str, workdir: Path, runs: int, templates_dir: Path = TEMPLATES_DIR, same_day: bool = False
) -> RotationRun:
    """Rotate ``service``'s logs ``runs`` times on successive simulated days; observe the result.

    Inputs: a validated spec, a service name, an empty scratch folder, the number of
    runs, the templates folder the logrotate file is rendered with (``validate --templates``);
    ``same_day``: every run on the first day instead, one second apart (an operator repeating
    ``logrotate -f``).
    Output: a :class:`RotationRun`. Raises :class:`ToolMissing` when logrotate,
    faketime or nss_wrapper is missing.
    """
    return rotate_service(sandbox(spec, workdir / "root", templates_dir), service, workdir, runs, same_day)


def rotate_service(box: Sandbox, service: str, workdir: Path, runs: int, same_day: bool = False) -> RotationRun:
    """:func:`rotate_in_sandbox` on a :class:`Sandbox` already planned and rendered: one
    service alone (:func:`rotate_services` with one name)."""
    return rotate_services(box, [service], workdir, runs, same_day)[service]


def may_share_a_run(box: Sandbox, services: list[str]) -> bool:
    """Whether ``services`` can rotate in one logrotate run and still be told apart: all log
    to files, and no log file name is another's with ``-…`` or ``.…`` after it (so no
    archive of one, :func:`_is_rotated`, could be taken for another's)."""
    views = {s.name: s for s in box.plan.services}
    if any(views[name].policy is None for name in services):
        return False
    names = [Path(f).name for name in services for f in views[name].log_files]
    seen = set(names)
    return len(seen) == len(names) and not any(_archive_of(name, seen) for name in names)


def rotate_services(
    box: Sandbox, services: list[str], workdir: Path, runs: int, same_day: bool = False
) -> dict[str, RotationRun]:
    """Rotate the logs of ``services`` together, ``runs`` times on successive simulated days:
    every ``logrotate`` call is given all their logrotate files (logrotate(8) takes several
    config files), so 100 services cost 10 tool runs, not 1000.

    ``workdir`` (an empty scratch folder) holds the logrotate files, state and nss_wrapper
    files; the sandbox's logs folder is emptied first. Each service gets its own
    :class:`RotationRun` with its own logs, files and lines; logrotate's messages cannot be
    told apart by service, so each run's ``errors`` holds all of them: rotate a service alone
    (:func:`rotate_service`) to see whose they are. Raises ``ValueError`` for a service that
    logs to the journal, or services whose logs :func:`may_share_a_run` refuses;
    :class:`ToolMissing` when logrotate, faketime or nss_wrapper is missing.
    """
    tool = need_tool("logrotate")
    faketime = find_library("faketime/libfaketime.so.1", "faketime")
    p = box.plan
    views = {s.name: s for s in p.services}
    for name in services:
        sv = views[name]
        if sv.policy is None or sv.logrotate_path is None or p.spec.project.logs_dir is None:
            raise ValueError(f"service {name} logs to the journal: there is nothing to rotate")
    if len(services) > 1 and not may_share_a_run(box, services):
        raise ValueError(f"the logs of {', '.join(services)} cannot be told apart in one logrotate run")
    confs = []
    for name in services:
        sv = views[name]
        confs.append(workdir / sv.svc.unit)
        confs[-1].write_text(box.files[f"root{sv.logrotate_path}"])
    logs_dir = Path(p.spec.project.logs_dir)  # type: ignore[arg-type]
    shutil.rmtree(logs_dir, ignore_errors=True)
    logs_dir.mkdir(parents=True)
    os.chmod(logs_dir, int(p.spec.project.logs_dir_mode, 8))
    out = {name: RotationRun(views[name].policy, [Path(f) for f in views[name].log_files], [])  # type: ignore[arg-type]
           for name in services}
    logs = [(log, run) for run in out.values() for log in run.logs]
    errors: list[str] = []
    su_user, su_group = p.rotate_as
    env = {**os.environ, **nss_env([su_user, *(r.policy.owner for r in out.values())],
                                   [su_group, *(r.policy.group for r in out.values())], workdir)}
    env["LD_PRELOAD"] = f"{env['LD_PRELOAD']} {faketime}"
    env["NO_FAKE_STAT"] = "1"  # libfaketime would shift file times too; maxage must see the stamps below
    fds = {}
    for log, run in logs:
        fds[log.name] = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, int(run.policy.mode, 8))
        os.chmod(log, int(run.policy.mode, 8))
        run.written[log.name] = []
    state = str(workdir / "state")
    debug = subprocess.run([tool, "-d", "-s", state, *map(str, confs)], capture_output=True, text=True, timeout=60,
                           env=env)
    errors += [f"logrotate -d: {ln}" for ln in (debug.stdout + debug.stderr).splitlines() if ln.startswith("error:")]
    if debug.returncode != 0 and not errors:
        errors.append(f"logrotate -d: exit code {debug.returncode}")
    stamps: dict[str, float] = {}
    days: list[dt.date] = []
    try:
        for i in range(runs + 1):
            for log, run in logs:
                batch = [f"{log.name} batch {i} line {j}" for j in range(3)]
                os.write(fds[log.name], ("\n".join(batch) + "\n").encode())
                run.written[log.name].append(batch)
            if i == runs:
                break
            day = FIRST_DAY if same_day else FIRST_DAY + dt.timedelta(days=i)
            clock = f"12:00:{i % 60:02d}" if same_day else "12:00:00"
            days.append(day)
            proc = subprocess.run(
                [tool, "-f", "-s", state, *map(str, confs)],
                capture_output=True,
                text=True,
                timeout=60 + len(confs),
                env={**env, "FAKETIME": f"{day.isoformat()} {clock}", "TZ": "UTC"},  # noon UTC, as the mtimes
            )
            if proc.returncode != 0 or "error:" in proc.stdout + proc.stderr:
                errors.append(f"{day}: exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()}")
            _stamp_new_archives(logs_dir, [log for log, _ in logs], stamps, day)
    finally:
        for fd in fds.values():
            os.close(fd)
    present = {f.name: f.stat().st_mode & 0o777 for f in sorted(logs_dir.iterdir())}
    archives: dict[str, list[str]] = {log.name: [] for log, _ in logs}
    for f in present:
        for log_name in _archive_of(f, archives.keys()):
            archives[log_name].append(f)
    for run in out.values():
        run.days, run.errors = list(days), list(errors)
        for log in run.logs:
            rotated = sorted((logs_dir / f for f in archives[log.name]), key=lambda f: _age_key(f, run.policy.dateext))
            run.files |= {f: present[f] for f in [log.name, *archives[log.name]] if f in present}
            run.live[log.name] = _read(log)
            run.lines[log.name] = [ln for f in rotated for ln in _read(f)] + run.live[log.name]
    return out


def _stamp_new_archives(logs_dir: Path, logs: list[Path], stamps: dict[str, float], day: dt.date) -> None:
    """Give each archive a run created the simulated day as its mtime (a .gz its source's), so
    ``maxage``, which logrotate checks against file mtimes, sees the simulated ages: the kernel
    stamps files with the real time, which libfaketime does not change."""
    noon = dt.datetime.combine(day, dt.time(12), tzinfo=dt.UTC).timestamp()
    names = {log.name for log in logs}
    for name in sorted(os.listdir(logs_dir)):  # names, not Paths: Path.__lt__ is 100k calls at 100 services
        if name in stamps or not _archive_of(name, names):
            continue
        stamps[name] = stamps.get(name.removesuffix(".gz"), noon)
        os.utime(logs_dir / name, (stamps[name], stamps[name]))


def kept_days(run: RotationRun) -> list[dt.date]:
    """The simulated days whose archive should remain: the last ``rotate`` ones, and of those,
    with ``maxage``, only the ones at most that many days older than the last run
    (logrotate.conf(5); logrotate removes an archive whose age in whole days exceeds it)."""
    kept = run.days[-run.policy.rotate :]
    if run.policy.maxage is not None and run.days:
        kept = [d for d in kept if (run.days[-1] - d).days <= run.policy.maxage]
    return kept


def _expected_suffixes(run: RotationRun) -> list[str]:
    """Patterns (re) of what follows a log's name in the archives it should have, oldest first
    (``-20260103\\.gz``): the same for every log of ``run``, so each compiles once, not once
    per archive."""
    pol = run.policy
    kept = kept_days(run)
    names = []
    if not pol.dateext:
        return []  # numbered names: checked by count only
    for n, day in enumerate(kept):
        # the day's date; a time of day in the format (%H %M %S %s) is whatever logrotate's clock said
        stamp = re.escape(day.strftime(re.sub(r"%([HMSs])", r"@\1@", pol.dateformat)))
        stamp = re.sub(r"@s@", r"\\d+", re.sub(r"@[HMS]@", r"\\d\\d", stamp))
        newest = n == len(kept) - 1
        names.append(stamp + (r"\.gz" if pol.compress and not (pol.delaycompress and newest) else ""))
    return names


def _named_as(rotated: list[str], log: str, suffixes: list[str]) -> bool:
    """Whether ``rotated`` (sorted) are ``log`` followed by each of ``suffixes`` in turn."""
    if len(rotated) != len(suffixes):
        return False
    pairs = zip(suffixes, rotated, strict=True)
    return all(name.startswith(log) and re.fullmatch(suffix, name[len(log) :]) for suffix, name in pairs)


def rotation_findings(run: RotationRun, artifact: str) -> list[ToolFinding]:
    """Compare a :class:`RotationRun` with its log policy; empty when rotation behaved.

    Checks: logrotate reported no error; the rotated names are the dated (and gzip'd,
    except the newest with delaycompress) names of the last ``rotate`` days and nothing
    else; every file keeps the policy's mode; the final batch landed in the live file;
    the kept files plus the live file hold exactly the last ``rotate`` batches and the
    final one, in order (no line lost, none twice).
    """
    out = [ToolFinding(artifact, "logrotate -f", e) for e in run.errors]
    pol = run.policy
    suffixes = _expected_suffixes(run)
    for log_path in run.logs:
        log = log_path.name
        rotated = sorted(f for f in run.files if _is_rotated(f, log))
        if suffixes and not _named_as(rotated, log, suffixes):
            want = sorted(re.escape(log) + suffix for suffix in suffixes)
            out.append(ToolFinding(artifact, "rotation", f"{log}: rotated files {rotated}, expected {want}"))
        if len(rotated) != len(kept_days(run)):
            limits = f"rotate is {pol.rotate}" + (f", maxage {pol.maxage}" if pol.maxage else "")
            out.append(ToolFinding(artifact, "rotation", f"{log}: {len(rotated)} rotated files kept, {limits}"))
        for name in [log, *rotated]:
            if run.files.get(name) != int(pol.mode, 8):
                out.append(
                    ToolFinding(artifact, "rotation", f"{name}: mode {oct(run.files.get(name, 0))}, policy {pol.mode}")
                )
        batches = run.written[log]
        if run.live[log] != batches[-1]:
            out.append(
                ToolFinding(
                    artifact,
                    "rotation",
                    f"{log}: the live file does not hold exactly the lines written after the last rotation",
                )
            )
        kept = [ln for b in batches[-(len(kept_days(run)) + 1) :] for ln in b]
        if run.lines[log] != kept:
            out.append(
                ToolFinding(
                    artifact,
                    "rotation",
                    f"{log}: lines lost or duplicated across rotations "
                    f"({len(run.lines[log])} found, {len(kept)} expected)",
                )
            )
    return out
