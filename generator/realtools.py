"""Run the real tools on a rendered tree, independent of the checking host.

* ``systemd-analyze verify`` in a throwaway root (``--root=``): the host's systemd unit
  folder is hard-linked in (copied where links are refused) for the standard targets,
  external units (Redis) get stub unit files, and every ``Exec*=`` program gets an empty
  executable stub, so the check needs neither the service's binaries nor its packages on
  this machine. ``verify`` exits 0 on warnings and on lines it ignores, so any line it prints
  is a failure.
* ``systemd-analyze security --offline=true`` in the same root: the overall exposure must
  equal the one the spec records and stay at or under :data:`EXPOSURE_LIMIT`.
* :func:`nss_env` for logrotate runs (:mod:`generator.rotation`): users and groups named
  by ``su`` are resolved through nss_wrapper (Debian's libnss-wrapper) from a passwd/group
  file made for the run, so they need not exist on this machine.

Raises :class:`ToolMissing` when a tool is not installed (``scripts/install-system-deps.sh``
installs them); the functions return findings instead of raising for what they check.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .planner import Plan

__all__ = [
    "EXPOSURE_LIMIT",
    "ToolFinding",
    "ToolMissing",
    "find_library",
    "need_tool",
    "nss_env",
    "security_check",
    "verify_units",
]

EXPOSURE_LIMIT = 2.0
"""Highest overall exposure accepted for a generated unit ("OK" in systemd-analyze's scale)."""

_TIMEOUT = 60


class ToolMissing(RuntimeError):
    """Raised when a real tool (systemd-analyze, logrotate, nss_wrapper, faketime) is not installed."""


@dataclass(frozen=True)
class ToolFinding:
    """A failure a real tool reported: the artifact (path in build/), the tool, its words."""

    artifact: str
    tool: str
    message: str

    def __str__(self) -> str:
        return f"{self.artifact}: {self.tool}: {self.message}"


BATCH = 500
"""Units per ``systemd-analyze`` call (one process for many units, a bounded command line)."""
_EXPOSURE = re.compile(r"Overall exposure level for (\S+): (\d+\.\d+)")


def need_tool(binary: str) -> str:
    """Absolute path of ``binary`` on PATH; raises :class:`ToolMissing` when absent."""
    path = shutil.which(binary)
    if path is None:
        raise ToolMissing(f"'{binary}' is not installed; run scripts/install-system-deps.sh")
    return path


def find_library(pattern: str, package: str) -> str:
    """Path of a shared library under /usr/lib matching ``pattern``; raises :class:`ToolMissing`."""
    found = sorted(glob.glob(f"/usr/lib/*/{pattern}") + glob.glob(f"/usr/lib/{pattern}"))
    if not found:
        raise ToolMissing(f"{pattern} ({package}) is not installed; run scripts/install-system-deps.sh")
    return found[0]


def _exec_programs(unit_text: str) -> set[str]:
    """Absolute programs of every Exec*= line (systemd.service(5) prefixes @-:+! dropped)."""
    programs = set()
    for line in unit_text.splitlines():
        m = re.match(r"^Exec\w+=\s*[@\-:+!]*(/\S+)", line)
        if m:
            programs.add(m.group(1))
    return programs


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link to ``src`` at ``dst``, or a copy where the kernel refuses one (another
    filesystem; ``fs.protected_hardlinks`` for a file this user does not own)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _put(root: Path, rel: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a new file at ``root/rel`` with ``mode``. Whatever was there is
    unlinked first: a hard link into the host's unit folder (:func:`_link_or_copy`) must never
    be written through, whatever path a spec's ``Exec*=`` names. Nothing is written where a
    linked symlink would lead out of ``root``, where a folder stands, or below a file (verify
    then says the program is missing)."""
    path = root / rel.lstrip("/")
    if not path.parent.resolve().is_relative_to(root.resolve()):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        return
    if path.is_dir() and not path.is_symlink():
        return
    if path.is_symlink() or path.exists():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)


def _unit_root(p: Plan, files: dict[str, str], root: Path) -> list[str]:
    """Lay out a root for systemd-analyze; returns the unit paths (inside the root) to check.
    The host's units are linked in, never written: every file of ours is a new one (:func:`_put`).
    Program stubs go first, so that a unit of the tree or an external unit's stub at the same
    path (an ``Exec*=`` naming a unit file) replaces the stub, not the other way round."""
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True,
                    copy_function=_link_or_copy)
    lib = root / "usr/lib/systemd/system"
    ours = {rel.removeprefix("root/"): text for rel, text in files.items()
            if rel.startswith("root/etc/systemd/system/")}
    programs = {"/usr/bin/true"}.union(*map(_exec_programs, ours.values()))
    stubbed = []
    for ext in p.spec.external_units.values():
        template = lib / f"{ext.unit.partition('@')[0]}@.service"
        if ext.redis is not None and template.exists():  # the packaged template, checked with our drop-in
            programs |= _exec_programs(template.read_text())
        else:
            stubbed.append(ext.unit)
    for program in sorted(programs):
        _put(root, program, "#!/bin/sh\nexit 0\n", 0o755)
    for unit in stubbed:
        dropins = lib / f"{unit}.service.d"  # the host's drop-ins must not change the stub
        if dropins.is_symlink():
            dropins.unlink()
        elif dropins.is_dir():
            shutil.rmtree(dropins)  # links and copies of ours: the host's files stay
        _put(lib, f"{unit}.service",
             f"[Unit]\nDescription=stub of {unit} for verification\n\n[Service]\nExecStart=/usr/bin/true\n")
    units = []
    for rel, text in ours.items():
        _put(root, rel, text)
        folder = Path(rel).parent.name
        units.append(folder.removesuffix(".d") if folder.endswith(".d") else "/" + rel)  # a drop-in: its unit
    return sorted(units)


def _shared_unit_root(p: Plan, files: dict[str, str], workdir: Path) -> tuple[Path, list[str]]:
    """The root :func:`_unit_root` lays out in ``workdir/unit-root``, laid out by the first
    call for ``workdir`` and reused by the next (verify, then security: laying out
    /usr/lib/systemd/system is most of their own time); the units to check are listed in
    ``workdir/units``."""
    root, listed = workdir / "unit-root", workdir / "units"
    if listed.is_file():
        return root, listed.read_text().splitlines()
    units = _unit_root(p, files, root)
    listed.write_text("".join(f"{u}\n" for u in units))
    return root, units


def verify_units(p: Plan, files: dict[str, str], workdir: Path) -> list[ToolFinding]:
    """``systemd-analyze verify`` every unit of ``files``; any printed line is a finding.

    Inputs: the plan, the rendered files, a scratch folder: empty, or one a
    :func:`security_check` of the same files used (its unit root is reused). Output: findings
    (empty when every unit passes). Raises :class:`ToolMissing` without systemd-analyze.
    """
    tool = need_tool("systemd-analyze")
    root, units = _shared_unit_root(p, files, workdir)
    findings = []
    for chunk in _chunks(units):
        findings += _verify(tool, root, chunk)
    return findings


def _chunks(units: list[str]) -> list[list[str]]:
    return [units[i : i + BATCH] for i in range(0, len(units), BATCH)]


def _verify(tool: str, root: Path, units: list[str]) -> list[ToolFinding]:
    """One ``verify`` of all ``units``; only when it says anything, one per unit, so that each
    line is told against the unit it is about."""
    argv = [tool, "verify", f"--root={root}", "--man=no", "--generators=no"]
    if len(units) > 1:
        proc = subprocess.run([*argv, *units], capture_output=True, text=True, timeout=_TIMEOUT)
        if proc.returncode == 0 and not (proc.stdout + proc.stderr).strip():
            return []
    findings = []
    for unit in units:
        proc = subprocess.run([*argv, unit], capture_output=True, text=True, timeout=_TIMEOUT)
        lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
        if proc.returncode != 0 and not lines:
            lines = [f"exit code {proc.returncode}"]
        where = unit if unit.startswith("/") else f"/etc/systemd/system/{unit}.d/"
        findings += [ToolFinding("root" + where, "systemd-analyze verify", ln.replace(str(root), "")) for ln in lines]
    return findings


def security_check(p: Plan, files: dict[str, str], workdir: Path) -> tuple[dict[str, float], list[ToolFinding]]:
    """Overall exposure of each unit with a recorded one, by ``systemd-analyze security --offline=true``.

    Inputs: the plan, the rendered files, a scratch folder (as for :func:`verify_units`, whose
    unit root it reuses). Output: ``{unit file: exposure}`` as printed by the tool, and findings
    where it differs from the spec's ``hardening.exposure`` or exceeds :data:`EXPOSURE_LIMIT`.
    Raises :class:`ToolMissing` without systemd-analyze.
    """
    tool = need_tool("systemd-analyze")
    root, _ = _shared_unit_root(p, files, workdir)
    recorded = {s.unit_file: s.svc.hardening.exposure for s in p.services}
    recorded |= {f"{h.timer_unit}.service": h.hc.hardening.exposure for h in p.healthchecks if h.timer_unit}
    scores: dict[str, float] = {}
    findings = []
    argv = [tool, "security", "--offline=true", f"--root={root}"]
    batch: dict[str, float] = {}
    for chunk in _chunks(sorted(recorded)):  # one call for many units; a unit it did not score runs alone
        proc = subprocess.run([*argv, *(f"/etc/systemd/system/{u}" for u in chunk)],
                              capture_output=True, text=True, timeout=_TIMEOUT)
        batch |= {m[1]: float(m[2]) for m in _EXPOSURE.finditer(proc.stdout) if m[1] in chunk}
    for unit, want in sorted(recorded.items()):
        artifact = f"root/etc/systemd/system/{unit}"
        if unit in batch:
            got = batch[unit]
        else:
            proc = subprocess.run([*argv, f"/etc/systemd/system/{unit}"], capture_output=True, text=True,
                                  timeout=_TIMEOUT)
            m = _EXPOSURE.search(proc.stdout)
            if m is None:
                findings.append(ToolFinding(artifact, "systemd-analyze security", (proc.stderr or proc.stdout).strip()))
                continue
            got = float(m[2])
        scores[unit] = got
        if got > EXPOSURE_LIMIT:
            findings.append(
                ToolFinding(artifact, "systemd-analyze security", f"exposure {got} is over {EXPOSURE_LIMIT}")
            )
        if want is not None and got != want:
            findings.append(
                ToolFinding(
                    artifact,
                    "systemd-analyze security",
                    f"exposure is {got}, the spec records {want} (hardening.exposure)",
                )
            )
    return scores, findings


def nss_env(users: Iterable[str], groups: Iterable[str], workdir: Path) -> dict[str, str]:
    """Environment that makes ``users`` and ``groups`` resolve to this process's uid/gid.

    Writes passwd/group files into ``workdir`` and preloads nss_wrapper (its
    NSS_WRAPPER_PASSWD/NSS_WRAPPER_GROUP interface). Raises :class:`ToolMissing` without it.
    """
    lib = find_library("libnss_wrapper.so", "libnss-wrapper")
    uid, gid = os.getuid(), os.getgid()
    passwd = workdir / "passwd"
    group = workdir / "group"
    passwd.write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        + "".join(f"{u}:x:{uid}:{gid}:{u}:/nonexistent:/usr/sbin/nologin\n" for u in sorted(set(users)) if u != "root")
    )
    group.write_text("root:x:0:\n" + "".join(f"{g}:x:{gid}:\n" for g in sorted(set(groups)) if g != "root"))
    return {"LD_PRELOAD": lib, "NSS_WRAPPER_PASSWD": str(passwd), "NSS_WRAPPER_GROUP": str(group)}
