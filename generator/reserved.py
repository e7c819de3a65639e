"""Names a Debian server already uses, which the tree must not claim.

``reserved_names.txt`` beside this module (made by ``scripts/reserved_names.py`` from a
Debian 12 server plus common server packages, reviewed like code) lists the names of
folders in /etc, /var/lib, /var/log, /var/cache, /run, of units, tmpfiles.d, sysusers.d and
logrotate.d files, and of accounts. A project, unit or folder named like one of them would
render files that mask or replace that package's (an /etc file masks the /usr/lib one of
the same name: tmpfiles.d(5), sysusers.d(5), systemd.unit(5) "Unit File Load Path"), or
take over its folder (``d /etc/pam.d 0750 pam pam`` for a project named ``pam``).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

__all__ = ["RESERVED_FILE", "is_reserved", "reserved_names", "stem"]

RESERVED_FILE = Path(__file__).resolve().parent / "reserved_names.txt"
"""One reserved name per line, sorted."""

_SUFFIXES = (".d", ".conf", ".service", ".socket", ".timer", ".target", ".path", ".mount", ".automount", ".slice",
             ".cfg", ".list", ".rules", ".sh", ".wants", ".log")  # fmt: skip


@cache
def reserved_names() -> frozenset[str]:
    """The names of :data:`RESERVED_FILE`. Raises ``OSError`` when the file is missing (a broken install)."""
    return frozenset(line.strip() for line in RESERVED_FILE.read_text(encoding="utf-8").splitlines() if line.strip())


def stem(name: str) -> str:
    """``name`` without a unit instance (``@...``) and without suffixes such as ``.d``,
    ``.conf``, ``.service``, repeatedly: ``pam.d`` -> ``pam``, ``ld.so.conf.d`` -> ``ld.so``."""
    name = name.split("@")[0]
    changed = True
    while changed:
        changed = False
        for suffix in _SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                name, changed = name[: -len(suffix)], True
    return name


def is_reserved(name: str) -> bool:
    """Whether ``name`` (a project, unit, account or folder name) is the system's: listed in
    :data:`RESERVED_FILE` as it is or as its :func:`stem`, or starting with ``systemd``."""
    names = reserved_names()
    lower = name.lower()  # accounts may hold capitals (Debian-exim); the list is lowercase
    return lower in names or stem(lower) in names or lower.startswith("systemd")
