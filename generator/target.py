"""The systemd version the tree is installed on, and what each generated setting needs.

``project.target`` names a distribution (its packaged systemd) or a systemd version. The
sandboxing preset keeps only the directives that version knows (a unit file with an unknown
setting gets a warning from systemd and the setting is ignored, so leaving it out says the
same thing honestly in the docs); a setting the spec asks for that the version lacks
(``ExecCondition=`` for an ``exec_condition``, ``append:`` for log files) is a located error.

Versions are the first systemd release with the setting, from systemd's NEWS ("CHANGES WITH
NNN"); the packaged versions are the distributions' own (Debian: packages.debian.org,
Ubuntu: packages.ubuntu.com).
"""

from __future__ import annotations

from collections.abc import Iterator

from .models import Spec

__all__ = [
    "DISTRO_SYSTEMD",
    "MIN_SYSTEMD",
    "SINCE",
    "directive_known",
    "systemd_version",
    "target_label",
    "target_problems",
]

DISTRO_SYSTEMD = {
    "debian-10": 241,
    "debian-11": 247,
    "debian-12": 252,
    "debian-13": 257,
    "ubuntu-20.04": 245,
    "ubuntu-22.04": 249,
    "ubuntu-24.04": 255,
}
"""The systemd each distribution release ships."""

MIN_SYSTEMD = 240
"""The oldest systemd the tree supports: every unit is ``Type=exec`` (systemd 240)."""

SINCE = {
    "Type=exec": 240,
    "append:": 240,
    "ExecCondition": 243,
    "ProtectProc": 247,
    "ProcSubset": 247,
    "ProtectClock": 245,
    "ProtectKernelLogs": 244,
    "ProtectHostname": 242,
    "RestrictSUIDSGID": 242,
    "PrivateMounts": 239,
    "LockPersonality": 235,
    "RestrictNamespaces": 233,
    "ProtectSystem=strict": 232,
    "ProtectKernelTunables": 232,
    "ProtectKernelModules": 232,
    "ProtectControlGroups": 232,
    "RemoveIPC": 232,
    "PrivateUsers": 232,
    "MemoryDenyWriteExecute": 231,
    "RestrictRealtime": 231,
    "ReadWritePaths": 231,
    "StartLimitIntervalSec": 230,
    "AmbientCapabilities": 229,
    "sysusers -:group": 245,
}
"""First systemd release knowing each setting the tree writes (settings older than 229 are not listed).
Checked against NEWS; not announced there: ``@system-service`` (PR #8766, merged for 239) and the
``StartLimitIntervalSec=`` spelling (230, per systemd issue #4826), both below :data:`MIN_SYSTEMD`.
``sysusers -:group`` is a sysusers.d ``u`` line whose primary group is named differently (245)."""


def systemd_version(spec: Spec) -> int:
    """The target's systemd version: ``project.target.systemd``, else its distribution's."""
    target = spec.project.target
    return target.systemd if target.systemd is not None else DISTRO_SYSTEMD[target.distro]


def directive_known(name: str, version: int) -> bool:
    """Whether systemd ``version`` knows the directive ``name`` (a unit setting name)."""
    return SINCE.get(name, 0) <= version


def target_label(spec: Spec) -> str:
    """``debian-12 (systemd 252)``, or ``systemd 253`` for an explicit version."""
    t = spec.project.target
    return f"{t.distro} (systemd {systemd_version(spec)})" if t.systemd is None else f"systemd {t.systemd}"


def _named_groups(spec: Spec, where: str) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """sysusers.d ``u NAME -:GROUP`` with a group named unlike the user needs systemd 245."""
    p = spec.project
    given: list[tuple[tuple[str | int, ...], str, str]] = [(("project", "group"), p.user, p.group)]
    given += [(("services", n, "group" if s.group else "user"), s.user or p.user, s.group or p.group)
              for n, s in spec.services.items() if s.user or s.group]  # fmt: skip
    for path, user, group in given:
        if user != group:
            yield path, (
                f"a primary group named unlike its user ('{user}' in '{group}') needs systemd-sysusers 245; "
                f"the target is {where}: use the group '{user}' and list '{group}' in supplementary_groups"
            )
            return


def target_problems(spec: Spec) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Each spec setting the target's systemd cannot honour, as ``(spec path, message)``."""
    version = systemd_version(spec)
    where = target_label(spec)
    if version < MIN_SYSTEMD:
        yield ("project", "target", "systemd"), (
            f"the tree needs systemd {MIN_SYSTEMD} or later (Type=exec, StandardOutput=append:); {where} is older"
        )
        return
    if version < SINCE["sysusers -:group"]:
        yield from _named_groups(spec, where)
    for name, svc in spec.services.items():
        if svc.exec_condition is not None and version < SINCE["ExecCondition"]:
            yield ("services", name, "exec_condition"), (
                f"ExecCondition= needs systemd {SINCE['ExecCondition']}; the target is {where}: drop the "
                "precheck or raise project.target"
            )
        for directive in svc.hardening.exceptions:
            if not directive_known(directive, version):
                yield ("services", name, "hardening", "exceptions", directive), (
                    f"{directive}= needs systemd {SINCE[directive]}; the target is {where}, where the preset "
                    "leaves it out already: remove the exception"
                )
