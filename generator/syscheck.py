"""What systemd-sysusers and systemd-tmpfiles DID with the rendered files, held against the spec.

:func:`check_system_files` runs both tools on a scratch root holding a base Debian system
(:mod:`generator.sysroot`) the way the install runbook runs them on a server, then compares:

1. sysusers.d (sysusers.d(5)): ``systemd-sysusers --root=`` on each rendered
   ``etc/sysusers.d/*.conf``. /etc/passwd and /etc/group before and after must differ by
   exactly the users and groups :func:`generator.accounts.sysusers` declares (a ``u`` line
   also creates the group of the user's name unless one is given as ``-:group``), and each
   ``m`` membership must be in /etc/group. Every created user must have the shell
   /usr/sbin/nologin or /bin/false (sysusers.d(5)'s default for system users), the home
   ``project.root``, a uid that is not 0 nor another's, and its declared primary group.
   Another new user or group, or a changed existing entry (an ``m`` line adding a user to
   ``sudo``), is a finding naming the file.
2. tmpfiles.d (tmpfiles.d(5)): ``systemd-tmpfiles --create --root=`` on the rendered
   ``etc/tmpfiles.d/*.conf``, names resolved from the scratch root's accounts after step 1.
   Every path created or changed must be one the plan expects, with the spec's owner, group
   and mode: the logs folder (:func:`generator.accounts.logs_owner`, ``project.logs_dir_mode``),
   each service's stdout/stderr file (its ``log_policies`` owner:group mode), the env file's
   folder (root:``project.group`` 0750), each ``hardening.writable_paths`` folder (its unit's
   user and group, 0750). Missing parents are created root:root 0755
   (tmpfiles.d(5), ``d``), which is accepted for ancestors of those paths only. Any folder
   the run left owned by, or writable for, a non-root user or group must pass
   :func:`generator.pathpolicy.project_dir_problem` (``d /etc 0750 zachot zachot`` fails).
   ``z`` adjusts an existing path only: on a missing env file tmpfiles does nothing and prints
   nothing. So the env file is then created root:root 0600, as an admin writing it would,
   and a second run must give it root:``project.group`` ``project.env_file_mode`` and change
   nothing else.
3. Every owner and group named in tmpfiles.d (the User and Group columns) or by logrotate's
   ``su``/``create`` (logrotate.conf(5)) in the rendered etc/logrotate.d files must exist
   after step 1: created by sysusers.d or on the base system.

Any line a tool prints is a finding, as for ``systemd-analyze verify``. Output: the lines
for ``Validation.checked`` and :class:`generator.realtools.ToolFinding` items; errors as
:mod:`generator.sysroot` (``SysrootError``, ``ToolMissing``, ``ValueError``).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from . import layout
from .accounts import logs_owner
from .pathpolicy import project_dir_problem
from .planner import Plan
from .realtools import ToolFinding
from .sysroot import (
    BASE_PASSWD,
    HOST_SYSUSERS,
    Accounts,
    Node,
    lay_base,
    place,
    run_tool,
    said,
    scratch_root,
    snapshot,
)

__all__ = ["NO_LOGIN", "check_system_files", "name_findings", "sysusers_findings", "tmpfiles_findings"]

NO_LOGIN = ("/usr/sbin/nologin", "/bin/false")
"""The shells a service user may have."""

ENV_DIR_RULE = "fixed for the env file's folder"
"""The env file's folder is root:``project.group`` 0750 whatever the spec: the group reads, nobody else."""

STATE_DIR_RULE = "fixed for hardening.writable_paths"
"""A state folder is 0750 for the user of the unit that writes it: its group reads, nobody else."""

Checked = tuple[list[str], list[ToolFinding]]


def check_system_files(
    p: Plan, files: dict[str, str], workdir: Path, base_passwd: Path = BASE_PASSWD, host_sysusers: Path = HOST_SYSUSERS
) -> Checked:
    """Steps 1-3 of the module doc on ``files`` (a rendered tree, possibly tampered) for plan ``p``.

    Inputs: the plan, ``{path in build/: text}``, an empty folder below the temporary folder,
    and the base system's sources (parameters for tests). Output: (checked lines, findings).
    """
    root = scratch_root(workdir)
    base = lay_base(root, base_passwd, host_sysusers)
    checked, found = sysusers_findings(p, files, root)
    checked = [f"{checked[0]}; base system: {base}"]
    acc = Accounts(root)  # read before tmpfiles runs: a tampered line could replace /etc/passwd
    for step in (tmpfiles_findings(p, files, root, acc), name_findings(files, acc)):
        checked += step[0]
        found += step[1]
    return checked, list(dict.fromkeys(found))  # a warning of both tmpfiles runs once


def _rendered(files: dict[str, str], folder: str) -> dict[str, str]:
    prefix = f"{layout.ROOT_DIR}{folder}/"
    return {rel: text for rel, text in sorted(files.items()) if rel.startswith(prefix)}


def _show(fields: list[str]) -> str:
    return ":".join(fields)


def sysusers_findings(p: Plan, files: dict[str, str], root: Path) -> Checked:
    """Step 1 of the module doc on a root from :func:`generator.sysroot.lay_base`."""
    pr = p.spec.project
    want_file = f"{layout.ROOT_DIR}{layout.sysusers_path(pr.name)}"
    rendered = _rendered(files, "/etc/sysusers.d")
    out = [] if want_file in rendered else [ToolFinding(want_file, "sysusers result", "not in the rendered tree")]
    base = Accounts(root)
    made: dict[str, dict[str, str]] = {"user": {}, "group": {}}  # name -> the file that made it
    for rel, text in rendered.items():
        before = Accounts(root)
        proc = run_tool("systemd-sysusers", root, str(place(root, rel, text)))
        out += [ToolFinding(rel, "systemd-sysusers", line) for line in said(proc, root)]
        after = Accounts(root)
        for kind, old, new in (("user", before.users, after.users), ("group", before.groups, after.groups)):
            made[kind] |= dict.fromkeys(new.keys() - old.keys(), rel)
            for name in sorted(old.keys() & new.keys()):
                if old[name] != new[name]:
                    msg = f"changes the existing {kind} {_show(old[name])} to {_show(new[name])}"
                    out.append(ToolFinding(rel, "sysusers result", msg))
    acc = Accounts(root)
    declared = p.accounts
    for kind, want in (("user", declared.created_users), ("group", declared.created_groups)):
        table, had = (acc.users, base.users) if kind == "user" else (acc.groups, base.groups)
        for name in sorted(made[kind].keys() - want):
            msg = f"creates {kind} {_show(table[name])}; the spec's {kind}s are {', '.join(sorted(want))}"
            out.append(ToolFinding(made[kind][name], "sysusers result", msg))
        for name in sorted(want - made[kind].keys()):
            why = f"a base Debian system already has {_show(had[name])}" if name in had else "no line creates it"
            out.append(ToolFinding(want_file, "sysusers result", f"the spec's {kind} '{name}' not created: {why}"))
    for user, group in declared.members:
        if user not in acc.groups.get(group, ["", "", "", ""])[3].split(","):
            out.append(ToolFinding(want_file, "sysusers result", f"user '{user}' is not a member of group '{group}'"))
    for name, rel in sorted(made["user"].items()):
        out += [ToolFinding(rel, "sysusers result", msg) for msg in _user_problems(acc, name, p)]
    for name, rel in sorted(made["group"].items()):
        gid = acc.groups[name][2]
        if gid == "0" or [g[2] for g in acc.groups.values()].count(gid) > 1:
            out.append(ToolFinding(rel, "sysusers result", f"group '{name}' has gid {gid}: root's or shared"))
    users = [f"user {n} (uid {acc.users[n][2]}, home {acc.users[n][5]}, {acc.users[n][6]})" for n in made["user"]]
    groups = [f"group {n} (gid {acc.groups[n][2]})" for n in made["group"]]
    names = ", ".join(r.removeprefix(layout.ROOT_DIR) for r in rendered)
    return [f"systemd-sysusers --root=<scratch>: {names} created {', '.join(users + groups) or 'nothing'}"], out


def _user_problems(acc: Accounts, name: str, p: Plan) -> list[str]:
    pr = p.spec.project
    fields = acc.users[name]
    problems = []
    if fields[6] not in NO_LOGIN:
        problems.append(f"user '{name}' gets the login shell {fields[6]}; a service user has {' or '.join(NO_LOGIN)}")
    if fields[5] != pr.root:
        problems.append(f"user '{name}' gets the home {fields[5]}, not project.root {pr.root}")
    if fields[2] == "0" or [u[2] for u in acc.users.values()].count(fields[2]) > 1:
        problems.append(f"user '{name}' gets uid {fields[2]}: root's or shared with another user")
    primary = {a.name: a.group for a in p.accounts.users}
    if name in primary and fields[3] != str(acc.gid(primary[name])):
        problems.append(f"user '{name}' gets primary gid {fields[3]}, not its group '{primary[name]}'")
    return problems


@dataclass(frozen=True)
class Expect:
    """A path the plan expects after a tmpfiles run: kind, owner, group, mode, and their sources."""

    path: str
    kind: str
    owner: str
    group: str
    mode: str
    sources: tuple[str, str, str]
    """The spec fields (or fixed rule) owner, group and mode come from, for messages."""


def _expected(p: Plan) -> dict[str, Expect]:
    pr = p.spec.project
    sources = ("project.logs_dir_owner", "project.logs_dir_group", "project.logs_dir_mode")
    logged = pr.logs_dir is not None and any(sv.log_files for sv in p.services)
    out = [Expect(pr.logs_dir, "d", *logs_owner(p.spec), pr.logs_dir_mode, sources)] if logged and pr.logs_dir else []
    for sv in p.services:
        pol = f"log_policies.{sv.svc.logs.policy}"
        if sv.policy is None:
            continue
        for path in sv.log_files:
            out.append(
                Expect(
                    path,
                    "f",
                    sv.policy.owner,
                    sv.policy.group,
                    sv.policy.mode,
                    (f"{pol}.owner", f"{pol}.group", f"{pol}.mode"),
                )
            )
    for path, user, group in p.state_dirs:
        out.append(Expect(path, "d", user, group, "0750", ("the service's user", "its group", STATE_DIR_RULE)))
    env_dir = str(PurePosixPath(pr.env_file).parent)
    out.append(Expect(env_dir, "d", "root", pr.group, "0750", (ENV_DIR_RULE, "project.group", ENV_DIR_RULE)))
    return {e.path: e for e in out}


def _mismatch(e: Expect, node: Node | None, acc: Accounts) -> list[str]:
    if node is None:
        return [f"{e.path} was not created ({e.kind} {e.owner}:{e.group} {e.mode} expected)"]
    got = (node.kind, acc.user_of(node.uid), acc.group_of(node.gid), f"{node.mode:04o}")
    want = (e.kind, e.owner, e.group, f"{int(e.mode, 8):04o}")
    labels = ("type", "owner", "group", "mode")
    sources = ("", *e.sources)
    wrong = [
        f"{e.path}: {label} is {g}, the spec says {w}" + (f" ({src})" if src else "")
        for label, g, w, src in zip(labels, got, want, sources, strict=True)
        if g != w
    ]
    return wrong[:1] if got[0] != want[0] else wrong


def _diff(before: dict[str, Node], after: dict[str, Node]) -> dict[str, Node | None]:
    """Paths a run created, changed (owner, group, mode, type) or removed (None)."""
    changed: dict[str, Node | None] = {k: n for k, n in after.items() if before.get(k) != n}
    return changed | dict.fromkeys(before.keys() - after.keys())


def _run_tmpfiles(root: Path, paths: list[str], rendered: list[str], fallback: str) -> list[ToolFinding]:
    out = []
    for line in said(run_tool("systemd-tmpfiles", root, "--create", *paths), root):
        rel = next((r for r in rendered if line.startswith(r.removeprefix(layout.ROOT_DIR) + ":")), fallback)
        out.append(ToolFinding(rel, "systemd-tmpfiles", line))
    return out


def _touched(path: str, node: Node | None, was: Node | None, expect: dict[str, Expect], acc: Accounts) -> list[str]:
    """Why a path the run created, changed or removed is not one the plan expects (empty when it is).

    Accepted besides the expected paths: missing parents of them, created root:root and
    writable by root alone (tmpfiles.d(5): ``d`` creates parent folders).
    """
    if path in expect:
        return []
    if node is None:
        return [f"removes {path} ({was.show(acc) if was else '?'})"]
    parent = was is None and (node.kind, node.uid, node.gid) == ("d", 0, 0) and not node.mode & 0o022
    if parent and any(e.startswith(path.rstrip("/") + "/") for e in expect):
        return []
    what = f"changes {path} from {was.show(acc)} to" if was else f"creates {path} as"
    return [f"{what} {node.show(acc)}; the plan expects no such path"]


def _handover(path: str, node: Node | None, p: Plan, acc: Accounts) -> list[str]:
    """The path policy's word on a folder the run left owned by, or writable for, a non-root account."""
    if node is None or node.kind != "d":
        return []
    if node.uid == 0 and not (node.gid != 0 and node.mode & 0o020) and not node.mode & 0o002:
        return []
    problem = project_dir_problem(path, p.spec.project)
    return [f"hands {path} to {node.show(acc)}: {problem}"] if problem else []


def _real_folder(root: Path, server: str) -> bool:
    """``server`` is a folder in ``root`` and no part of its path is a symlink (that could lead out)."""
    path = root
    for part in PurePosixPath(server).parts[1:]:
        path = path / part
        if path.is_symlink() or not path.is_dir():
            return False
    return True


def tmpfiles_findings(p: Plan, files: dict[str, str], root: Path, acc: Accounts) -> Checked:
    """Step 2 of the module doc, after :func:`sysusers_findings` on the same root."""
    pr = p.spec.project
    art = f"{layout.ROOT_DIR}{layout.tmpfiles_path(pr.name)}"
    rendered = _rendered(files, "/etc/tmpfiles.d")
    out = [] if art in rendered else [ToolFinding(art, "tmpfiles result", "not in the rendered tree")]
    paths = [str(place(root, rel, text)) for rel, text in rendered.items()]
    expect = _expected(p)
    before = snapshot(root)
    out += _run_tmpfiles(root, paths, list(rendered), art)
    after = snapshot(root)
    for e in expect.values():
        out += [ToolFinding(art, "tmpfiles result", msg) for msg in _mismatch(e, after.get(e.path), acc)]
    for path, node in sorted(_diff(before, after).items()):
        msgs = _touched(path, node, before.get(path), expect, acc) + _handover(path, node, p, acc)
        out += [ToolFinding(art, "tmpfiles result", msg) for msg in msgs]
    env_dir = str(PurePosixPath(pr.env_file).parent)
    if pr.env_file in after:
        env_note = "the env file was made by the first run, z not tried"
    elif not _real_folder(root, env_dir):
        env_note = f"{env_dir} is not a folder, z not tried"
    else:
        env_note, found = _env_file_run(p, root, paths, list(rendered), acc, art)
        out += found
    made = sorted(k for k, n in _diff(before, after).items() if n is not None)
    return [
        f"systemd-tmpfiles --create --root=<scratch>: {', '.join(r.removeprefix(layout.ROOT_DIR) for r in rendered)}"
        f" created {', '.join(made) or 'nothing'}; {env_note}"
    ], out


def _env_file_run(
    p: Plan, root: Path, paths: list[str], rendered: list[str], acc: Accounts, art: str
) -> tuple[str, list[ToolFinding]]:
    """The second run: the env file written root:root 0600, then the ``z`` line must adjust it and only it."""
    pr = p.spec.project
    host = root / pr.env_file.lstrip("/")
    fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    os.write(fd, b"# written by validate\n")
    os.close(fd)
    os.chmod(host, 0o600, follow_symlinks=False)
    before = snapshot(root)
    out = _run_tmpfiles(root, paths, rendered, art)
    after = snapshot(root)
    want = Expect(
        pr.env_file, "f", "root", pr.group, pr.env_file_mode, ("root", "project.group", "project.env_file_mode")
    )
    out += [ToolFinding(art, "tmpfiles result", f"second run: {m}") for m in _mismatch(want, after.get(want.path), acc)]
    for path, node in sorted(_diff(before, after).items()):
        if path != pr.env_file:
            now = node.show(acc) if node else "removed"
            out.append(ToolFinding(art, "tmpfiles result", f"second run changes {path} ({now})"))
    got = after.get(pr.env_file)
    return f"second run with the env file (root:root 0600): {got.show(acc) if got else 'gone'}", out


def _words(line: str) -> list[str]:
    try:
        return shlex.split(line, comments=True)
    except ValueError:
        return line.split()


def name_findings(files: dict[str, str], acc: Accounts) -> Checked:
    """Step 3 of the module doc: names in tmpfiles.d and logrotate ``su``/``create`` lines exist in ``acc``."""
    named: list[tuple[str, int, str, str]] = []  # (file, line number, user|group, name)
    for rel, text in _rendered(files, "/etc/tmpfiles.d").items():
        for n, line in enumerate(text.splitlines(), 1):
            words = _words(line)
            named += [(rel, n, kind, w) for kind, w in zip(("user", "group"), words[3:5], strict=False)]
    for rel, text in _rendered(files, "/etc/logrotate.d").items():
        for n, line in enumerate(text.splitlines(), 1):
            words = _words(line)
            if words[:1] == ["su"]:
                named += [(rel, n, kind, w) for kind, w in zip(("user", "group"), words[1:3], strict=False)]
            elif words[:1] == ["create"]:
                named += [(rel, n, kind, w) for kind, w in zip(("user", "group"), words[2:4], strict=False)]
    out = []
    seen = set()
    for rel, n, kind, name in named:
        name = name.lstrip(":")
        if name in ("", "-") or name.isdigit():
            continue
        seen.add(f"{kind} {name}")
        if name not in (acc.users if kind == "user" else acc.groups):
            msg = f"line {n}: {kind} '{name}' is neither created by sysusers.d nor on a base Debian system"
            out.append(ToolFinding(rel, "user names", msg))
    return [f"owners in tmpfiles.d, logrotate su/create exist: {', '.join(sorted(seen)) or 'none named'}"], out
