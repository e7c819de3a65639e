"""The path policy: which folders the tree may create, hand to a service user, or install into.

Every path of the spec that ends up in tmpfiles.d (``d``/``f``/``z`` lines), in a unit's
``ReadWritePaths=``/``StandardOutput=append:``, in a logrotate stanza, or as the target of
an install command in the docs (``git clone``, ``python3 -m venv``) must name a folder
that belongs to this project, never a system tree. The rules, in order:

1. Never a system tree, nor an ancestor of one: ``/``, ``/etc``, ``/usr``, ``/var``,
   ``/var/log``, ``/var/lib``, ``/run``, ``/home``, ``/opt``, ... (:data:`SYSTEM_TREES`).
   ``d /var/log 0750 zachot zachot`` would hand every package's logs to the service user.
2. Never below a tree the OS packages own whole (:data:`SEALED_TREES`: ``/usr``, ``/boot``,
   ``/proc``, ``/root``, ``/tmp``, ...): the Filesystem Hierarchy Standard 3.0 gives them to
   the distribution, the kernel, or root alone.
3. Below ``project.root`` (itself checked by 1 and 2): the project's own.
4. Elsewhere, the first folder below the shared containers (:data:`CONTAINERS`: ``/etc``,
   ``/opt``, ``/srv``, ``/var/log``, ``/var/lib``, ``/run``, ..., or any other top-level folder
   such as ``/data``) must be named after the project (``zachot``, ``zachot-api``,
   ``zachot.d``): ``/var/log/zachot``, ``/etc/zachot/zachot.env``, ``/data/zachot``. A folder
   inside another package's folder is that package's, even when named after the project:
   ``/etc/systemd/system/zachot-api.service.d`` owned by the service user would let it write
   a drop-in that runs as root; ``d /var/log/nginx`` would take nginx's logs.

``project.root`` itself must follow rules 1, 2 and 4, so "below the root" stays the project's own.

Folders the service user may write (logs, ``hardening.writable_paths``) must also not hold
the code or the secrets it runs with (venv, repo checkout, env file): a service that can
rewrite its own venv turns any file-write bug into code execution at the next restart.

:func:`path_problems` applies this to a validated :class:`generator.models.Spec`;
:func:`project_dir_problem` is the single-path rule, also used by ``validate`` on what
``systemd-tmpfiles`` really created.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import PurePosixPath

from .models import Project, Spec
from .reserved import is_reserved

__all__ = ["CONTAINERS", "SEALED_TREES", "SYSTEM_TREES", "path_problems", "project_dir_problem", "root_problem"]

SYSTEM_TREES = frozenset(
    {
        "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64", "/libx32",
        "/lost+found", "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/snap",
        "/srv", "/sys", "/tmp", "/usr", "/usr/local", "/var", "/var/backups", "/var/cache",
        "/var/lib", "/var/local", "/var/lock", "/var/log", "/var/mail", "/var/opt", "/var/run",
        "/var/spool", "/var/tmp", "/etc/systemd", "/etc/default", "/etc/logrotate.d",
        "/etc/tmpfiles.d", "/etc/sysusers.d", "/var/log/journal", "/run/systemd", "/var/lib/systemd",
    }
)  # fmt: skip
"""Folders never created, owned, made writable, or installed into by the tree (FHS 3.0)."""

SEALED_TREES = ("/bin", "/boot", "/dev", "/lib", "/lib32", "/lib64", "/libx32", "/lost+found",
                "/proc", "/root", "/sbin", "/sys", "/tmp", "/usr", "/var/tmp", "/snap")  # fmt: skip
"""Trees nothing of a project's may lie below: the distribution's, the kernel's, root's home,
and the shared temporary folders (where another user can plant a path first)."""

CONTAINERS = frozenset(
    {"/", "/etc", "/media", "/mnt", "/opt", "/run", "/srv", "/var", "/var/cache", "/var/lib",
     "/var/local", "/var/log", "/var/opt", "/var/spool", "/var/www"}
)  # fmt: skip
"""Folders shared by every package, in which a project keeps a folder of its own."""

Found = tuple[tuple[str | int, ...], str]


def _below(path: str, tree: str) -> bool:
    return path == tree or path.startswith(tree.rstrip("/") + "/")


def _named_after(path: str, name: str) -> bool:
    """Whether the first folder of ``path`` below the shared containers is named after the
    project; a top-level folder that is not a system tree (``/data``) is a container too,
    unless it is itself named after the project (``/zachot``)."""

    def named(part: str) -> bool:
        return (part == name or part.startswith((f"{name}-", f"{name}_"))) and not is_reserved(part)

    parts = PurePosixPath(path).parts
    for depth in range(2, len(parts) + 1):
        prefix = str(PurePosixPath(*parts[:depth]))
        if prefix in CONTAINERS:
            continue
        if named(parts[depth - 1]):
            return True
        if depth > 2 or prefix in SYSTEM_TREES:
            return False
    return False


def _system_problem(path: str) -> str | None:
    if path in SYSTEM_TREES or any(_below(t, path) for t in SYSTEM_TREES if t != "/" and path != "/"):
        return f"{path} is a system folder (or holds one)"
    for tree in SEALED_TREES:
        if _below(path, tree):
            return f"{path} lies in {tree}, which belongs to the operating system"
    return None


def root_problem(root: str, name: str) -> str | None:
    """Why ``project.root`` cannot be the project's root folder, or None.

    Input: an absolute, normalised path and the project's name. Output: a message, or None
    when ``root`` follows rules 1, 2 and 4 of this module.
    """
    problem = _system_problem(root)
    if problem is None and not _named_after(root, name):
        problem = f"{root} is not a folder named after the project '{name}' (rule 4)"
    return f"{problem}; the project root must be a folder of its own, e.g. /opt/{name}" if problem else None


def project_dir_problem(path: str, project: Project, example: str | None = None) -> str | None:
    """Why the tree may not create, own or write ``path`` as a folder of ``project``, or None.

    Input: an absolute, normalised folder path and the spec's :class:`Project` (its ``name``
    and ``root``). Output: a one-line message that says what to write instead, or None when
    the folder is the project's own by the rules of this module's docstring. ``example`` is
    the path the message suggests instead (default: ``<root>/...`` or ``/var/log/<name>``).
    """
    problem = _system_problem(path)
    if problem is None and any(part.startswith(".") for part in PurePosixPath(path).parts):
        problem = f"{path} has a hidden folder on the way (.ssh, .config: a user's, not a project's)"
    hint = f"use a folder of the project's own, e.g. {example or f'{project.root}/... or /var/log/{project.name}'}"
    if problem:
        return f"{problem}; {hint}"
    if root_problem(project.root, project.name) is None and _below(path, project.root):
        return None
    if _named_after(path, project.name):
        return None
    return (
        f"{path} is neither below project.root nor in a folder named after the project '{project.name}' "
        f"directly in a shared folder such as /etc, /var/log, /var/lib, /srv; {hint}"
    )


def _writable_holds_code(path: str, project: Project) -> str | None:
    env_dir = str(PurePosixPath(project.env_file).parent)
    for what, held in (("project.venv", project.venv), ("project.repo", project.repo),
                       ("the env file's folder", env_dir)):  # fmt: skip
        if _below(held, path) or _below(path, held):
            relation = "holds" if _below(held, path) else "lies inside"
            return (f"the service user may write {path}, which {relation} {what} ({held}): it could rewrite "
                    "its own code or secrets; give the logs/state a folder beside them")  # fmt: skip
    return None


def _auth_file_problem(path: str, spec: Spec) -> str | None:
    """Why a Redis password file may not be at ``path``: root writes it and Redis ``include``s it,
    so no service user may write its folder (it could swap the file, or plant a link that root's
    write follows), and it may not be a file the project already has (the install step would keep
    that file and Redis would read it as its config)."""
    p = spec.project
    writable = [*([p.logs_dir] if p.logs_dir else []),
                *(w for s in spec.services.values() for w in s.hardening.writable_paths),
                *(w for h in spec.healthchecks.values() for w in h.hardening.writable_paths)]  # fmt: skip
    for folder in writable:
        if _below(path, folder):
            return f"{path} lies in {folder}, which a service user can write; keep the password in a root-only folder"
    for what, held in (("project.venv", p.venv), ("project.repo", p.repo)):
        if _below(path, held):
            return f"{path} lies in {what} ({held}); keep the password apart from the code"
    if path == p.env_file:
        return f"{path} is the env file; the password file is Redis's own, e.g. /etc/{p.name}/redis-auth.conf"
    return None


def path_problems(spec: Spec) -> Iterator[Found]:
    """Every path of ``spec`` that breaks the policy, as ``(spec path, message)`` pairs.

    Checks ``project.root``; the folders the tree creates or hands over (``logs_dir``, the
    env file's folder, each service's and healthcheck's ``hardening.writable_paths``, the folder of
    a configured Redis's ``auth_file``); the install targets of the docs (``venv``, ``repo``).
    Raises nothing.
    """
    p = spec.project
    base = ("project",)
    problem = root_problem(p.root, p.name)
    if problem:
        yield (*base, "root"), problem
        return
    env = PurePosixPath(p.env_file)
    state = f"/var/lib/{p.name}"
    dirs: list[tuple[tuple[str | int, ...], str, bool, str]] = [
        *([((*base, "logs_dir"), p.logs_dir, True, f"/var/log/{p.name}")] if p.logs_dir else []),
        ((*base, "env_file"), str(env.parent), False, f"/etc/{p.name}/{env.name}"),
        ((*base, "venv"), p.venv, False, f"{p.root}/venv"),
        ((*base, "repo"), p.repo, False, f"{p.root}/repo"),
    ]
    for name, svc in spec.services.items():
        for i, w in enumerate(svc.hardening.writable_paths):
            dirs.append((("services", name, "hardening", "writable_paths", i), w, True, state))
    for name, hc in spec.healthchecks.items():
        for i, w in enumerate(hc.hardening.writable_paths):
            dirs.append((("healthchecks", name, "hardening", "writable_paths", i), w, True, state))
    for name, ext in spec.external_units.items():
        if ext.redis is not None and ext.redis.auth_file is not None:  # the runbook creates its folder
            auth = PurePosixPath(ext.redis.auth_file)
            at: tuple[str | int, ...] = ("external_units", name, "redis", "auth_file")
            dirs.append((at, str(auth.parent), False, f"/etc/{p.name}/{auth.name}"))
            problem = _auth_file_problem(ext.redis.auth_file, spec)
            if problem:
                yield at, problem
    for where, path, writable, example in dirs:
        problem = project_dir_problem(path, p, example) or (_writable_holds_code(path, p) if writable else None)
        if problem:
            yield where, problem
