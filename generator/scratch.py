"""Where ``validate`` keeps its scratch folders: in memory when the machine offers it.

``validate`` writes a unit root (the host's unit folder linked in, every unit and ``Exec*=``
stub of the tree), simulated logs that ``logrotate`` rotates 16 times, and a base Debian root
for ``systemd-sysusers``/``systemd-tmpfiles``; all of it is removed at the end. On a disk,
creating and removing those files is most of ``validate``'s time (at 100 services: 9.5-11 s
on /tmp here, 5.7 s on /dev/shm, ``python -m bench``).

:func:`scratch_parent` picks, in order:

1. the folder the user chose with ``TMPDIR``/``TEMP``/``TMP`` (Python's ``tempfile`` rules);
2. ``/dev/shm``, the tmpfs every Linux system mounts for POSIX shared memory
   (shm_overview(7)), when it is writable, not mounted ``noexec`` (``verify`` needs the
   program stubs executable; Docker mounts it ``noexec`` by default) and has room for
   :data:`ROOM_FACTOR` times the tree, :data:`PER_TREE` per tree and :data:`HEADROOM`;
3. otherwise Python's default temporary folder (``/tmp``), or ``/var/tmp`` when that is
   ``noexec`` too (a common hardening); with neither, :class:`ScratchError` (exit 2).

:func:`scratch_bases` are the folders a scratch root may lie below
(:func:`generator.sysroot.scratch_root` refuses any other: ``systemd-tmpfiles --root=``
must never point at the host).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["HEADROOM", "PER_TREE", "ROOM_FACTOR", "SHM", "ScratchError", "scratch_bases", "scratch_parent"]

SHM = Path("/dev/shm")
"""The shared-memory tmpfs (shm_overview(7))."""

ROOM_FACTOR = 4
"""Free bytes wanted per byte of the rendered tree: the units copied into the unit root, the
logrotate files, the sysusers/tmpfiles files in the base root, with room to spare."""

HEADROOM = 64 << 20
"""Bytes wanted on top (64 MiB): simulated logs and their archives, the tools' own files."""

PER_TREE = 4 << 20
"""Bytes wanted per tree (4 MiB; a spec with hosts has one per host): its copy of the host's unit
folder (hard links do not cross into a tmpfs; ~1 MiB on Debian 12) and its base Debian root."""


class ScratchError(Exception):
    """No folder fit for validate's scratch: the message says which were tried and what to set."""


def _fit(folder: Path) -> str | None:
    """Why ``folder`` cannot hold the scratch (absent, read-only, ``noexec``, not writable by this
    user: statvfs(3), access(2)), or None when it can."""
    if folder.resolve() == Path("/"):
        return "the root folder (a scratch root must never be the host's /etc or /usr)"
    try:
        st = os.statvfs(folder)
    except OSError as exc:
        return exc.strerror or str(exc)
    if st.f_flag & os.ST_RDONLY:
        return "mounted read-only"
    if st.f_flag & os.ST_NOEXEC:
        return "mounted noexec (verify would find every program stub not executable)"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "not writable by this user"
    return None


def _room(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def scratch_parent(tree_bytes: int, trees: int = 1) -> Path:
    """The folder ``validate``'s TemporaryDirectory goes in, for ``trees`` rendered trees of
    ``tree_bytes`` bytes in all (text length is close enough: UTF-8 of ASCII-heavy files).

    In order: the folder ``TMPDIR``/``TEMP``/``TMP`` names (Python's ``tempfile`` rules), which
    must then be fit; else :data:`SHM` when fit and it has ``ROOM_FACTOR * tree_bytes +
    PER_TREE * trees + HEADROOM`` free bytes; else the first fit of Python's temporary folder
    and ``/var/tmp``. Fit: present, writable, not read-only, not ``noexec``. Raises
    :class:`ScratchError` naming each folder tried and why it was not fit.
    """
    if any(os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")):
        chosen = Path(tempfile.gettempdir())
        why = _fit(chosen)
        if why:
            raise ScratchError(f"the temporary folder {chosen} (TMPDIR) is {why}; set TMPDIR to a folder on an "
                               "exec, writable filesystem")
        return chosen
    if _fit(SHM) is None and _room(SHM) >= ROOM_FACTOR * tree_bytes + PER_TREE * trees + HEADROOM:
        return SHM
    tried = []
    for folder in dict.fromkeys([Path(tempfile.gettempdir()), Path("/var/tmp")]):
        why = _fit(folder)
        if why is None:
            return folder
        tried.append(f"{folder} is {why}")
    raise ScratchError("no folder fit for validate's scratch: " + "; ".join(tried)
                       + "; set TMPDIR to a folder on an exec, writable filesystem")


def scratch_bases() -> list[Path]:
    """Resolved folders a scratch folder may lie strictly below: Python's temporary folder
    (not when it is ``/``: ``TMPDIR=/``), ``/var/tmp`` and :data:`SHM`."""
    bases = [Path(tempfile.gettempdir()).resolve(), Path("/var/tmp").resolve(), SHM.resolve()]
    return [base for base in dict.fromkeys(bases) if base != Path("/")]
