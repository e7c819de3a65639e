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
   :data:`ROOM_FACTOR` times the tree plus :data:`HEADROOM` bytes;
3. otherwise Python's default temporary folder (``/tmp``).

:func:`scratch_bases` are the folders a scratch root may lie below
(:func:`generator.sysroot.scratch_root` refuses any other: ``systemd-tmpfiles --root=``
must never point at the host).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["HEADROOM", "ROOM_FACTOR", "SHM", "scratch_bases", "scratch_parent"]

SHM = Path("/dev/shm")
"""The shared-memory tmpfs (shm_overview(7))."""

ROOM_FACTOR = 4
"""Free bytes wanted per byte of the rendered tree: the units copied into the unit root, the
logrotate files, the sysusers/tmpfiles files in the base root, with room to spare."""

HEADROOM = 64 << 20
"""Bytes wanted on top (64 MiB): the base Debian root, simulated logs and their archives."""


def scratch_parent(tree_bytes: int) -> Path | None:
    """The folder ``validate``'s TemporaryDirectory goes in, for a rendered tree of
    ``tree_bytes`` bytes (text length is close enough: UTF-8 of ASCII-heavy files). ``None``
    means Python's choice (``tempfile.gettempdir()``): when the user set ``TMPDIR``, ``TEMP``
    or ``TMP``, or ``/dev/shm`` is absent, read-only, ``noexec``, not writable by this user or
    short of ``ROOM_FACTOR * tree_bytes + HEADROOM`` free bytes (statvfs(3))."""
    if any(os.environ.get(name) for name in ("TMPDIR", "TEMP", "TMP")):
        return None
    try:
        st = os.statvfs(SHM)
    except OSError:
        return None
    if st.f_flag & (os.ST_RDONLY | os.ST_NOEXEC) or not os.access(SHM, os.W_OK | os.X_OK):
        return None
    if st.f_bavail * st.f_frsize < ROOM_FACTOR * tree_bytes + HEADROOM:
        return None
    return SHM


def scratch_bases() -> list[Path]:
    """Resolved folders a scratch folder may lie strictly below: Python's temporary folder
    and :data:`SHM`."""
    return [Path(tempfile.gettempdir()).resolve(), SHM.resolve()]
