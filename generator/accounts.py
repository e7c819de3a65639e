"""Who is who on the server: the user and groups each unit runs as, who owns the logs folder,
and the accounts sysusers.d must declare for all of them.

The defaults live here once: a service runs as ``project.user``:``project.group`` unless it
names its own ``user``/``group``; the logs folder belongs to ``project.user``:``project.group``
unless ``project.logs_dir_owner``/``logs_dir_group`` say otherwise. Units, tmpfiles.d,
sysusers.d, logrotate's ``su``, the docs and the validators all read these functions.

sysusers.d(5): a ``u NAME -`` line creates the user and a group of the same name; ``u NAME
-:GROUP`` uses an existing or declared group; ``g`` declares a group; ``m USER GROUP`` adds
a supplementary membership. Lines for accounts that already exist change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import Spec

__all__ = ["SYSTEM_GROUPS", "Identity", "SysUsers", "logs_owner", "rotation_identity", "service_identity", "sysusers"]

SYSTEM_GROUPS = frozenset({"root", "adm"})
"""Groups every Debian system has, which a log folder or policy may name and the tree never declares
(``adm``: "Group adm is used for system monitoring tasks", Debian base-passwd)."""


@dataclass(frozen=True)
class Identity:
    """The credentials of one service's processes: systemd.exec(5) User=, Group=, SupplementaryGroups=."""

    user: str
    group: str
    supplementary: tuple[str, ...] = ()


@dataclass(frozen=True)
class Account:
    """A ``u`` line: the user, its primary group, and the GECOS text."""

    name: str
    group: str
    gecos: str


@dataclass(frozen=True)
class SysUsers:
    """What the sysusers.d file declares, in the order it writes it: ``g``, then ``u``, then ``m`` lines."""

    groups: tuple[str, ...]
    users: tuple[Account, ...]
    members: tuple[tuple[str, str], ...]

    @property
    def created_groups(self) -> frozenset[str]:
        """Every group a run on a fresh system creates (``g`` lines and ``u NAME -`` groups)."""
        return frozenset(self.groups) | {a.group for a in self.users}

    @property
    def created_users(self) -> frozenset[str]:
        """Every user a run on a fresh system creates."""
        return frozenset(a.name for a in self.users)


def service_identity(spec: Spec, name: str) -> Identity:
    """Input: a validated spec and a service name. Output: the :class:`Identity` its unit uses."""
    svc = spec.services[name]
    p = spec.project
    return Identity(svc.user or p.user, svc.group or p.group, tuple(svc.supplementary_groups))


def logs_owner(spec: Spec) -> tuple[str, str]:
    """Owner and group of ``project.logs_dir`` (tmpfiles.d ``d`` line)."""
    p = spec.project
    return p.logs_dir_owner or p.user, p.logs_dir_group or p.group


def rotation_identity(spec: Spec) -> tuple[str, str]:
    """The user and group logrotate rotates the logs folder as (logrotate.conf(5) ``su``).

    Renaming and creating files needs write access to the folder, so ``su`` is the folder's
    owner and group: for a root-owned, group-writable folder that is ``su root <group>``,
    the case where logrotate refuses to run without ``su`` ("parent directory has insecure
    permissions"). :mod:`generator.lint` checks this identity can also read and truncate
    every file it rotates.
    """
    return logs_owner(spec)


def _gecos(spec: Spec, user: str, services: list[str]) -> str:
    if user == spec.project.user or len(services) != 1:
        return f"{spec.project.title} services"
    return f"{spec.project.title} {spec.services[services[0]].title}"


def sysusers(spec: Spec) -> SysUsers:
    """The accounts of the tree: every service user with its primary group, every other group
    the spec names (service and supplementary groups, the logs folder's and the log policies'
    groups) except :data:`SYSTEM_GROUPS`, and each supplementary membership.

    A user's primary group is the one its first service gives; :mod:`generator.crossref`
    refuses a spec where two services give one user different groups.
    """
    p = spec.project
    runs_as: dict[str, list[str]] = {}
    primary: dict[str, str] = {}
    members: dict[tuple[str, str], None] = {}
    named: dict[str, None] = {p.group: None}
    for name in spec.services:
        ident = service_identity(spec, name)
        runs_as.setdefault(ident.user, []).append(name)
        primary.setdefault(ident.user, ident.group)
        named[ident.group] = None
        for g in ident.supplementary:
            named[g] = None
            members[(ident.user, g)] = None
    named[logs_owner(spec)[1]] = None
    named |= dict.fromkeys(pol.group for pol in spec.log_policies.values())
    own = {u for u, g in primary.items() if u == g}  # made by `u NAME -`
    groups = tuple(g for g in named if g not in SYSTEM_GROUPS and g not in own)
    users = tuple(Account(u, primary[u], _gecos(spec, u, s)) for u, s in runs_as.items())
    return SysUsers(groups, users, tuple(members))
