"""Rules for the users and groups a spec names: none is the system's, each one the tree uses is
created, and every file and folder it hands over belongs to someone the spec says runs there.

Yields ``(spec path, message)`` like :mod:`generator.crossref`, which calls
:func:`account_problems`. The defaults and the sysusers.d declarations are
:mod:`generator.accounts`.
"""

from __future__ import annotations

from collections.abc import Iterator

from .accounts import SYSTEM_GROUPS, logs_owner, service_identity
from .models import Spec
from .reserved import is_reserved

__all__ = ["PRIVILEGED_ACCOUNTS", "account_problems"]

Found = tuple[tuple[str | int, ...], str]

PRIVILEGED_ACCOUNTS = frozenset(
    "adm admin disk docker kmem kvm libvirt lxd shadow ssl-cert sudo systemd-journal tty video wheel".split()
)
"""Groups that grant root or read every secret on a host (``docker`` through /run/docker.sock,
``disk`` through block devices, ``shadow``, ``sudo``/``wheel``/``admin``): never the service
group, whether or not the checking machine has them."""


def _account_problem(name: str) -> str | None:
    if is_reserved(name) or name in PRIVILEGED_ACCOUNTS or name.startswith("_"):
        return (
            f"'{name}' is an account of the base system or a package; the services need accounts of their own "
            "(sysusers.d creates them)"
        )
    return None


def _file_logging(spec: Spec) -> bool:
    return any(s.logs.target == "files" for s in spec.services.values())


def _identities(spec: Spec) -> Iterator[Found]:
    """One primary group per user; supplementary groups are groups of what the tree shares."""
    p = spec.project
    primary: dict[str, tuple[str, str]] = {}
    shared = {logs_owner(spec)[1], p.group, *(pol.group for pol in spec.log_policies.values())}
    shared |= {service_identity(spec, n).group for n in spec.services}
    for name, svc in spec.services.items():
        base = ("services", name)
        ident = service_identity(spec, name)
        first = primary.setdefault(ident.user, (name, ident.group))
        if first[1] != ident.group:
            yield (*base, "group" if svc.group else "user"), (
                f"user '{ident.user}' already has the primary group '{first[1]}' (services.{first[0]}); "
                f"one user has one primary group: list '{ident.group}' in supplementary_groups instead"
            )
        seen: set[str] = set()
        for i, g in enumerate(ident.supplementary):
            where = (*base, "supplementary_groups", i)
            if g == ident.group:
                yield where, f"'{g}' is already the service's primary group"
            elif g in seen:
                yield where, f"'{g}' is listed twice"
            elif g not in shared:
                yield where, (
                    f"'{g}' owns nothing this spec creates: a supplementary group is for sharing the logs folder "
                    "(project.logs_dir_group), a log policy's files or another service's group"
                )
            seen.add(g)


def _owners(spec: Spec) -> Iterator[Found]:
    """The logs folder and each log file belong to root or to a user a service runs as; a service's
    log files belong to root or to its own user."""
    p = spec.project
    users = {service_identity(spec, n).user for n in spec.services}
    listed = ", ".join(sorted(users))
    owners: list[tuple[tuple[str | int, ...], str]] = []
    if _file_logging(spec):
        owners.append((("project", "logs_dir_owner" if p.logs_dir_owner else "user"), logs_owner(spec)[0]))
    owners += [(("log_policies", n, "owner"), pol.owner) for n, pol in spec.log_policies.items()]
    for path, owner in owners:
        if owner != "root" and owner not in users:
            folder = " (the logs folder's owner unless logs_dir_owner says otherwise)" if path[-1] == "user" else ""
            yield path, (
                f"'{owner}'{folder} is neither root nor a user a service runs as ({listed}), so nothing creates "
                "it; name one of those, or give a service that `user:`"
            )
    for name, svc in spec.services.items():
        pol = spec.log_policies.get(svc.logs.policy or "")
        user = service_identity(spec, name).user
        if svc.logs.target == "files" and pol is not None and pol.owner not in ("root", user):
            yield ("services", name, "logs", "policy"), (
                f"log policy '{svc.logs.policy}' makes the files owned by '{pol.owner}', but the service runs as "
                f"'{user}': use a policy owned by '{user}' or root"
            )


def account_problems(spec: Spec) -> Iterator[Found]:
    """Every account rule the spec breaks (module doc), each at the place that wrote the name."""
    p = spec.project
    named: list[tuple[tuple[str | int, ...], str]] = [(("project", "user"), p.user), (("project", "group"), p.group)]
    for name, svc in spec.services.items():
        base = ("services", name)
        named += [((*base, f), v) for f in ("user", "group") if (v := getattr(svc, f)) is not None]
        named += [((*base, "supplementary_groups", i), g) for i, g in enumerate(svc.supplementary_groups)]
    if p.logs_dir_group is not None and p.logs_dir_group not in SYSTEM_GROUPS:
        named.append((("project", "logs_dir_group"), p.logs_dir_group))
    named += [(("log_policies", n, "group"), pol.group) for n, pol in spec.log_policies.items()
              if pol.group not in SYSTEM_GROUPS]  # fmt: skip
    for path, name in named:
        if (problem := _account_problem(name)) is not None:
            yield path, problem
    yield from _identities(spec)
    yield from _owners(spec)
