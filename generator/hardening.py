"""The sandboxing preset every generated unit gets, and the spec's recorded exceptions.

One place: the units' template renders :func:`hardening_for`, the docs list the same
result, and the server tests boot the rendered units, so what is proven on a booted
systemd is exactly this list. Directives and their meaning: systemd.exec(5) "Sandboxing",
"Security", "System Call Filtering"; systemd.resource-control(5) for DevicePolicy=.
Left out on purpose: ``PrivateNetwork=`` (the services talk TCP to Redis and clients),
``IPAddressDeny=`` (the Redis URL comes from the env file and may name another host).
"""

from __future__ import annotations

from dataclasses import dataclass

from .models import Hardening
from .target import directive_known

__all__ = ["PRESET", "Directive", "hardening_for", "left_out"]


@dataclass(frozen=True)
class Directive:
    """One unit setting of the preset: ``name=value``, and what it protects (for the docs)."""

    name: str
    value: str


PRESET: tuple[Directive, ...] = (
    Directive("NoNewPrivileges", "yes"),
    Directive("CapabilityBoundingSet", ""),
    Directive("AmbientCapabilities", ""),
    Directive("ProtectSystem", "strict"),
    Directive("ProtectHome", "yes"),
    Directive("PrivateTmp", "yes"),
    Directive("PrivateDevices", "yes"),
    Directive("PrivateUsers", "yes"),
    Directive("PrivateMounts", "yes"),
    Directive("DevicePolicy", "closed"),
    Directive("ProtectKernelTunables", "yes"),
    Directive("ProtectKernelModules", "yes"),
    Directive("ProtectKernelLogs", "yes"),
    Directive("ProtectControlGroups", "yes"),
    Directive("ProtectClock", "yes"),
    Directive("ProtectHostname", "yes"),
    Directive("ProtectProc", "invisible"),
    Directive("ProcSubset", "pid"),
    Directive("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
    Directive("RestrictNamespaces", "yes"),
    Directive("RestrictRealtime", "yes"),
    Directive("RestrictSUIDSGID", "yes"),
    Directive("LockPersonality", "yes"),
    Directive("MemoryDenyWriteExecute", "yes"),
    Directive("RemoveIPC", "yes"),
    Directive("SystemCallArchitectures", "native"),
    Directive("SystemCallFilter", "@system-service"),
    Directive("SystemCallFilter", "~@privileged @resources"),
    Directive("SystemCallErrorNumber", "EPERM"),
)
"""The preset, in the order it is written into ``[Service]``."""

PRESET_NAMES = frozenset(d.name for d in PRESET)
"""Directive names an exception may relax."""


def left_out(systemd: int) -> list[str]:
    """Names of the preset directives systemd ``systemd`` does not know, in preset order."""
    return list(dict.fromkeys(d.name for d in PRESET if not directive_known(d.name, systemd)))


def hardening_for(spec: Hardening, writable_paths: list[str], systemd: int = 999) -> list[Directive]:
    """The sandboxing lines of one unit: the preset with the spec's exceptions applied.

    Inputs: the unit's :class:`Hardening` spec (exceptions by directive name), and the
    paths it must write (``ReadWritePaths=``, needed under ``ProtectSystem=strict``).
    ``systemd``: the target's version; preset directives it does not know are left out
    (:func:`generator.target.directive_known`). Output: directives in preset order; an excepted
    directive is replaced by the exception's value, or left out when that value is empty. Raises
    nothing: exception
    names are checked against :data:`PRESET_NAMES` when the spec is loaded.
    """
    out: list[Directive] = []
    for d in PRESET:
        if not directive_known(d.name, systemd):
            continue
        exc = spec.exceptions.get(d.name)
        if exc is None:
            out.append(d)
        elif exc.value and (not out or out[-1] != Directive(d.name, exc.value)):
            out.append(Directive(d.name, exc.value))
    out.extend(Directive("ReadWritePaths", p) for p in writable_paths)
    return out
