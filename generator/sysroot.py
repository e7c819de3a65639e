"""A scratch root holding a base Debian system, for running systemd-sysusers/-tmpfiles on it.

:func:`scratch_root` makes the folder and refuses one that is not strictly below the
temporary folder, /var/tmp or /dev/shm (where ``validate`` keeps its TemporaryDirectory,
:mod:`generator.scratch`); :func:`run_tool` runs a tool with ``--root=`` always set to such a
folder, so nothing here touches the host's /etc.

:func:`lay_base` lays out what every Debian 12 server has before the tree is installed:

* the FHS folders (/etc, /usr, /var/log, /opt, /srv, ...), root:root 0755, /tmp 1777;
* /etc/passwd and /etc/group from base-passwd's ``passwd.master``/``group.master``
  (base-passwd is Essential on Debian, so every server has them; ``x`` in the password
  field, as after ``shadowconfig on``), else a minimal root/daemon/bin/sys/adm/nogroup set;
  /etc/shadow and /etc/gshadow with a locked entry for each;
* then the host's /usr/lib/sysusers.d applied with ``systemd-sysusers --root=``, as
  ``systemd-sysusers.service`` applies it at a server's first boot. Decided so because the
  server has those users: the uid/gid the project's user gets is the one the server would
  pick, a ``project.user`` that clashes with a packaged one (``messagebus``) is caught
  because sysusers then creates nothing, names like ``systemd-journal`` resolve, and the
  before/after diff of the project's file holds only what that file adds. The packaged set
  is the checking host's (Debian 12 with systemd: basic.conf, systemd-journal,
  systemd-network, systemd-timesync, plus dbus/polkitd when installed).

Tool behaviour this relies on (systemd 252, checked by tests/test_validate_sysroot.py):
``systemd-sysusers`` and ``systemd-tmpfiles`` read positional config files from the host's
filesystem, not below ``--root=`` (a root-relative path is "Failed to open ..., ignoring"),
so files are passed by their path inside the scratch root; ``systemd-tmpfiles --root=``
resolves user and group names from the root's /etc/passwd and /etc/group; with
``SYSTEMD_LOG_LEVEL=notice`` the info lines ("Creating group ...") are not printed while
warnings ("Duplicate line ...", "Conflict with earlier configuration ...") and errors are.

Errors: :class:`SysrootError` (a :class:`generator.realtools.ToolMissing`, so ``validate``
exits 2) when not root (tmpfiles must chown to the new users) or the host's sysusers.d does
not apply cleanly; :class:`ValueError` for a folder outside the temporary folder.
"""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .realtools import ToolMissing, need_tool
from .scratch import scratch_bases

__all__ = [
    "BASE_PASSWD",
    "HOST_SYSUSERS",
    "Accounts",
    "Node",
    "SysrootError",
    "lay_base",
    "place",
    "run_tool",
    "said",
    "scratch_root",
    "snapshot",
]

BASE_PASSWD = Path("/usr/share/base-passwd")
"""base-passwd's master files: the users and groups of every Debian system."""
HOST_SYSUSERS = Path("/usr/lib/sysusers.d")
"""The packaged sysusers.d files a server applies at first boot."""
MINIMAL_USERS = (
    "root:x:0:0:root:/root:/bin/bash",
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
    "bin:x:2:2:bin:/bin:/usr/sbin/nologin",
    "sys:x:3:3:sys:/dev:/usr/sbin/nologin",
)
MINIMAL_GROUPS = ("root:x:0:", "daemon:x:1:", "bin:x:2:", "sys:x:3:", "adm:x:4:", "nogroup:x:65534:")
BASE_DIRS = {
    **dict.fromkeys(("etc", "usr", "usr/bin", "usr/sbin", "usr/lib", "var", "var/lib", "var/log"), 0o755),
    **dict.fromkeys(("opt", "srv", "home", "run"), 0o755),
    **{"root": 0o700, "tmp": 0o1777, "var/tmp": 0o1777},
}
"""Folders of a base system (FHS 3.0) and their modes; owner root:root."""
_TIMEOUT = 60


class SysrootError(ToolMissing):
    """The scratch root cannot be set up on this machine (not root, host's sysusers.d broken)."""


def scratch_root(workdir: Path) -> Path:
    """Create and return ``workdir/sysroot``, empty, root:root 0755.

    Raises :class:`ValueError` when ``workdir`` is not strictly below the temporary folder
    (or /var/tmp or /dev/shm: :func:`generator.scratch.scratch_bases`),
    :class:`FileExistsError` when the folder exists, :class:`SysrootError` when not root.
    """
    _guard(workdir)
    if os.geteuid() != 0:
        raise SysrootError("checking sysusers.d/tmpfiles.d needs root (systemd-tmpfiles chowns to the new users)")
    root = workdir.resolve() / "sysroot"
    root.mkdir()
    os.chmod(root, 0o755)
    return root


def _guard(folder: Path) -> None:
    bases = scratch_bases()
    if not any(base in folder.resolve().parents for base in bases):
        below = " or ".join(map(str, bases))
        raise ValueError(f"a scratch root must lie below {below} (a TemporaryDirectory), not {folder}")


def run_tool(tool: str, root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``tool --root=<root> args`` with ``SYSTEMD_LOG_LEVEL=notice``; returns the finished process.

    ``root`` must be a scratch root (:class:`ValueError` otherwise); raises
    :class:`ToolMissing` when ``tool`` is not installed.
    """
    _guard(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYSTEMD_")} | {"SYSTEMD_LOG_LEVEL": "notice"}
    return subprocess.run(
        [need_tool(tool), f"--root={root}", *args], capture_output=True, text=True, timeout=_TIMEOUT, env=env
    )


def said(proc: subprocess.CompletedProcess[str], root: Path) -> list[str]:
    """What a tool printed, line by line with the scratch root's prefix removed; its exit code if silent."""
    lines = [ln.replace(str(root), "") for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]
    return lines or ([f"exit code {proc.returncode}"] if proc.returncode else [])


class Accounts:
    """The users and groups of a root, read from its /etc/passwd and /etc/group.

    ``users[name]`` is the passwd line split on ``:`` (name, x, uid, gid, gecos, home,
    shell); ``groups[name]`` the group line (name, x, gid, members).
    """

    def __init__(self, root: Path) -> None:
        self.users = _table(root / "etc/passwd")
        self.groups = _table(root / "etc/group")

    def uid(self, name: str) -> int | None:
        """The uid of user ``name``, or None when it does not exist."""
        return int(self.users[name][2]) if name in self.users else None

    def gid(self, name: str) -> int | None:
        """The gid of group ``name``, or None when it does not exist."""
        return int(self.groups[name][2]) if name in self.groups else None

    def user_of(self, uid: int) -> str:
        """The name of ``uid`` (the number as text when no user has it)."""
        return next((n for n, f in self.users.items() if f[2] == str(uid)), str(uid))

    def group_of(self, gid: int) -> str:
        """The name of ``gid`` (the number as text when no group has it)."""
        return next((n for n, f in self.groups.items() if f[2] == str(gid)), str(gid))


def _table(path: Path) -> dict[str, list[str]]:
    if path.is_symlink() or not path.is_file():
        raise SysrootError(f"{path} is not a regular file of the scratch root")
    return {ln.split(":")[0]: ln.split(":") for ln in path.read_text().splitlines() if ln.strip()}


def _locked(lines: list[str]) -> list[str]:
    """passwd/group lines with ``x`` in the password field (the hash lives in shadow/gshadow)."""
    return [":".join([f[0], "x", *f[2:]]) for f in (ln.split(":") for ln in lines if ln.strip())]


def lay_base(root: Path, base_passwd: Path = BASE_PASSWD, host_sysusers: Path = HOST_SYSUSERS) -> str:
    """Lay out the base Debian system of this module's doc in the empty scratch ``root``.

    Inputs: the root from :func:`scratch_root`, base-passwd's folder and the sysusers.d folder
    to apply (parameters so tests can take them away). Output: a phrase naming where the
    accounts came from. Raises :class:`SysrootError` when the host's sysusers.d prints
    anything or fails on the base system.
    """
    for rel, mode in BASE_DIRS.items():
        (root / rel).mkdir(parents=True, exist_ok=True)
        os.chmod(root / rel, mode)
    masters = (base_passwd / "passwd.master", base_passwd / "group.master")
    if all(m.is_file() for m in masters):
        users, groups = (_locked(m.read_text().splitlines()) for m in masters)
        where = f"{masters[0]} + group.master"
    else:
        users, groups, where = list(MINIMAL_USERS), list(MINIMAL_GROUPS), "a minimal root/daemon/bin/sys set"
    names = {
        "passwd": (users, 0o644),
        "group": (groups, 0o644),
        "shadow": ([f"{u.split(':')[0]}:*::0:99999:7:::" for u in users], 0o640),
        "gshadow": ([f"{g.split(':')[0]}:*::" for g in groups], 0o640),
    }
    for name, (lines, mode) in names.items():
        (root / "etc" / name).write_text("".join(ln + "\n" for ln in lines))
        os.chmod(root / "etc" / name, mode)
    confs = sorted(host_sysusers.glob("*.conf")) if host_sysusers.is_dir() else []
    if confs:
        (root / "usr/lib/sysusers.d").mkdir()
        for conf in confs:
            (root / "usr/lib/sysusers.d" / conf.name).write_text(conf.read_text())
        problems = said(run_tool("systemd-sysusers", root), root)
        if problems:
            raise SysrootError(f"the host's {host_sysusers} does not apply to a base system: " + "; ".join(problems))
        where += f" + {host_sysusers} ({len(confs)} files)"
    return where


def place(root: Path, rel: str, text: str) -> Path:
    """Write the rendered file ``rel`` (``root/etc/...`` in build/) into the scratch root; returns its path."""
    path = root / rel.removeprefix(layout.ROOT_DIR + "/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass(frozen=True)
class Node:
    """One path of the scratch root as ``lstat`` sees it: kind (d, f, l or ?), uid, gid, permission bits."""

    kind: str
    uid: int
    gid: int
    mode: int

    def show(self, acc: Accounts) -> str:
        """``d zachot:zachot 0750`` with names from ``acc``."""
        return f"{self.kind} {acc.user_of(self.uid)}:{acc.group_of(self.gid)} {self.mode:04o}"


def snapshot(root: Path) -> dict[str, Node]:
    """Every path below ``root`` as ``{server path: Node}``; symlinks are listed, never followed."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in [".", *dirs, *files]:
            path = Path(folder, name) if name != "." else Path(folder)
            st = path.lstat()
            kind = {stat.S_IFDIR: "d", stat.S_IFREG: "f", stat.S_IFLNK: "l"}.get(stat.S_IFMT(st.st_mode), "?")
            rel = path.relative_to(root).as_posix()
            server = "/" if rel == "." else "/" + rel
            out[server] = Node(kind, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))
    return out
