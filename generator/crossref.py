"""Cross-references between spec sections, each reported where the name was written.

pydantic validates each section's shape; this module checks that the names one section
uses exist in another (a service's log policy, a scenario's component, a healthcheck's
exit code). It runs on a validated :class:`Spec` and yields ``(path, message)`` pairs;
:mod:`generator.loader` turns the paths into ``file:line:col``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from . import layout
from .accountrules import PRIVILEGED_ACCOUNTS, account_problems
from .docmodels import SERVER_EVENTS
from .hardening import PRESET_NAMES
from .hosts import host_problems
from .models import Hardening, Spec
from .redisrules import redis_problems
from .reserved import is_reserved
from .target import target_problems

__all__ = ["GRANTABLE_CAPABILITIES", "PRIVILEGED_ACCOUNTS", "check_references"]

Found = tuple[tuple[str | int, ...], str]


def _unknown(kind: str, name: str, known: object) -> str:
    names = ", ".join(sorted(known)) or "none"  # type: ignore[call-overload]
    return f"unknown {kind} '{name}' (known: {names})"


def _services(spec: Spec) -> Iterator[Found]:
    units = set(spec.services) | set(spec.external_units)
    seen_units: dict[str, str] = {}
    seen_logs: dict[str, str] = {}
    for name, svc in spec.services.items():
        base = ("services", name)
        for kind in ("after", "wants", "requires"):
            for i, dep in enumerate(getattr(svc, kind)):
                if dep == name:
                    yield (*base, kind, i), f"a unit cannot depend on itself ('{dep}')"
                elif dep not in units:
                    yield (*base, kind, i), _unknown("unit", dep, units)
        yield from _logs(spec, name, seen_logs)
        if svc.exec_condition is not None:
            hc = spec.healthchecks.get(svc.exec_condition)
            if hc is None:
                yield (*base, "exec_condition"), _unknown("healthcheck", svc.exec_condition, spec.healthchecks)
            elif hc.role != "exec_condition":
                yield (
                    (*base, "exec_condition"),
                    f"healthcheck '{svc.exec_condition}' has role '{hc.role}', not 'exec_condition'",
                )
    yield from _rotated_names(spec, seen_logs)
    for hc_name, hc in spec.healthchecks.items():
        if hc.every_sec:
            seen_units[layout.healthcheck_unit(spec.project.name, hc_name)] = f"the timer of healthchecks.{hc_name}"
    for section, table in (("services", spec.services), ("external_units", spec.external_units)):
        for name, item in table.items():
            if item.unit in seen_units:
                yield (section, name, "unit"), f"unit name '{item.unit}' is already used by {seen_units[item.unit]}"
            seen_units[item.unit] = f"{section}.{name}"


def _rotated_names(spec: Spec, seen: dict[str, str]) -> Iterator[Found]:
    """A log named like another's archive (``api.log-20260101``, ``api.log.1``, ``api.log.gz``)
    would be taken for one: logrotate compresses and deletes it as that file's old log."""
    for file, where in seen.items():  # each prefix ending before a '-' or '.': linear in the logs
        for other in (file[:i] for i, ch in enumerate(file) if ch in "-." and file[:i] in seen):
            path = tuple(int(x) if x.isdigit() else x for x in where.split("."))
            yield path, (
                f"'{file}' has the form of an archive of '{other}' ({other}-<date>, {other}.<n>): logrotate "
                f"would compress and delete it as one of {other}'s old logs; choose another name"
            )


def _logs(spec: Spec, name: str, seen: dict[str, str]) -> Iterator[Found]:
    logs = spec.services[name].logs
    base = ("services", name, "logs")
    if logs.target == "journal":
        for key in ("policy", "stdout", "stderr"):
            if getattr(logs, key) is not None:
                yield (*base, key), f"target: journal keeps the output in the journal (journald's limits); drop '{key}'"
        return
    if logs.policy is None:
        yield base, "target: files needs 'policy' (a log_policies entry), or say target: journal"
    elif logs.policy not in spec.log_policies:
        yield (*base, "policy"), _unknown("log policy", logs.policy, spec.log_policies)
    if logs.stdout is None:
        yield base, "target: files needs 'stdout' (a file name in project.logs_dir), or say target: journal"
    if spec.project.logs_dir is None:
        yield ("project",), f"services.{name}.logs writes files: set project.logs_dir (or say target: journal)"
    if logs.stderr is not None and logs.stderr == logs.stdout:
        yield (*base, "stderr"), (
            f"stderr names the stdout file '{logs.stdout}': leave 'stderr' out to send both streams to the "
            "stdout file (StandardError=inherit)"
        )
        return
    for stream in ("stdout", "stderr"):
        file = getattr(logs, stream)
        if file is None:
            continue
        if file in seen:
            yield (*base, stream), f"log file '{file}' is already written by {seen[file]}"
        seen[file] = f"services.{name}.logs.{stream}"


_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
_URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^/@\s]*:[^/@\s]+@", re.I)


def _secrets(spec: Spec) -> Iterator[Found]:
    """Secrets belong in the env file (0640 root:group), never in a unit any user may read, nor as an
    example the docs print and build/env/ installs."""
    hint = f"secrets go in the env file {spec.project.env_file} (EnvironmentFile=), not in the spec"
    for key, var in spec.project.env_vars.items():
        where = ("project", "env_vars", key)
        if not var.secret and _SECRET_NAME.search(key):
            yield (*where, "secret"), f"'{key}' looks like a secret: say secret: true (its example is never shown)"
        elif not var.secret and _URL_CREDENTIALS.match(var.example):
            yield (*where, "example"), (
                "the example URL carries credentials, and the docs and build/env/ show it: write a placeholder, or "
                "say secret: true"
            )
    for name, svc in spec.services.items():
        for key, value in svc.environment.items():
            if _SECRET_NAME.search(key):
                yield ("services", name, "environment", key), f"'{key}' looks like a secret: {hint}"
            elif _URL_CREDENTIALS.match(value):
                yield ("services", name, "environment", key), f"the URL in '{key}' carries credentials: {hint}"
    if _URL_CREDENTIALS.match(spec.project.repo_url):
        yield ("project", "repo_url"), "the URL carries credentials; use a deploy key or a credential helper"


def _hardening(spec: Spec) -> Iterator[Found]:
    units: list[tuple[tuple[str | int, ...], Hardening]] = [
        (("services", n, "hardening"), s.hardening) for n, s in spec.services.items()
    ]
    units += [(("healthchecks", n, "hardening"), h.hardening) for n, h in spec.healthchecks.items()]
    for base, hardening in units:
        for name, exc in hardening.exceptions.items():
            if name not in PRESET_NAMES:
                yield (*base, "exceptions", name), _unknown("preset directive", name, PRESET_NAMES)
            elif name in ("CapabilityBoundingSet", "AmbientCapabilities"):
                words = exc.value.split()
                granted = [w for w in words if w.upper() not in GRANTABLE_CAPABILITIES]
                if granted:
                    yield (*base, "exceptions", name, "value"), (
                        f"{name}= may only grant {', '.join(sorted(GRANTABLE_CAPABILITIES))}; "
                        f"{' '.join(granted)} would let the service user act as root (capabilities(7))"
                    )


def _healthchecks(spec: Spec) -> Iterator[Found]:
    for name, hc in spec.healthchecks.items():
        base = ("healthchecks", name)
        if hc.service not in spec.services:
            yield (*base, "service"), _unknown("service", hc.service, spec.services)
        for i, check in enumerate(hc.checks):
            for code in check.exits:
                if code not in hc.exit_codes:
                    yield (*base, "checks", i, "fails_as"), f"exit code {code} is not in exit_codes"
        if hc.every_sec is not None and hc.role != "monitor":
            yield (*base, "every_sec"), "only a 'monitor' healthcheck runs on a timer"
        if hc.wait_sec and hc.role != "exec_condition":
            yield (*base, "wait_sec"), "only an 'exec_condition' healthcheck waits (before a start)"


def _matrix(spec: Spec) -> Iterator[Found]:
    fm = spec.failure_matrix
    if fm is None:
        return
    units = set(spec.services) | set(spec.external_units)
    for name, comp in fm.components.items():
        if comp.unit is not None and comp.unit not in units:
            yield ("failure_matrix", "components", name, "unit"), _unknown("unit", comp.unit, units)
    for i, pr in enumerate(fm.principles):
        if pr.component not in fm.components:
            yield ("failure_matrix", "principles", i, "component"), _unknown("component", pr.component, fm.components)
    for i in range(len(fm.scenarios)):
        yield from _scenario(spec, i)


def _scenario(spec: Spec, i: int) -> Iterator[Found]:
    fm = spec.failure_matrix
    if fm is None:
        return
    sc = fm.scenarios[i]
    base = ("failure_matrix", "scenarios", i)
    comp = fm.components.get(sc.component)
    if comp is None:
        yield (*base, "component"), _unknown("component", sc.component, fm.components)
        return
    if comp.unit is None:
        if sc.event is not None and sc.event not in SERVER_EVENTS:
            yield (
                (*base, "event"),
                f"component '{sc.component}' has no unit, so no systemd event of a unit; write auto_action "
                f"instead (an event of the whole server, {' or '.join(sorted(SERVER_EVENTS))}, fits here)",
            )
        if sc.event in SERVER_EVENTS and sc.auto_action is not None:
            yield (
                (*base, "auto_action"),
                f"'{sc.event}' is an event of the server: the auto-action is derived from its units; drop auto_action",
            )
        if sc.event is None and sc.auto_action is None:
            yield (
                (*base, "auto_action"),
                f"component '{sc.component}' has no unit: say what happens by itself in auto_action",
            )
    elif sc.event in SERVER_EVENTS:
        yield (
            (*base, "event"),
            f"'{sc.event}' is an event of the whole server, not of '{comp.unit}': give it to a component "
            "without a unit (e.g. `server: {title: ...}`)",
        )
    else:
        if sc.auto_action is not None:
            yield (
                (*base, "auto_action"),
                (
                    f"component '{sc.component}' runs as a unit: the systemd auto-action is derived from its "
                    "settings; give 'event' instead of writing it by hand"
                ),
            )
        if sc.event is None:
            yield (*base, "event"), f"component '{sc.component}' runs as a unit: say which event systemd sees (event)"
        svc = spec.services.get(comp.unit)
        if sc.event in ("condition_skip", "condition_error") and (svc is None or svc.exec_condition is None):
            yield (*base, "event"), f"'{sc.event}' needs a service with exec_condition; '{comp.unit}' has none"
        if sc.event == "dependency_stopped" and (svc is None or not svc.requires):
            yield (*base, "event"), f"'dependency_stopped' needs a service with requires; '{comp.unit}' has none"
        if sc.event == "env_file_missing" and svc is None:
            yield (*base, "event"), f"'env_file_missing' needs a generated service; '{comp.unit}' is not one"
        ext = spec.external_units.get(comp.unit)
        if sc.event == "maxmemory" and (ext is None or ext.redis is None):
            yield (*base, "event"), f"'maxmemory' needs a Redis the tree configures (redis:); '{comp.unit}' is not one"
    if sc.healthcheck is not None:
        hc = spec.healthchecks.get(sc.healthcheck.check)
        if hc is None:
            yield (*base, "healthcheck", "check"), _unknown("healthcheck", sc.healthcheck.check, spec.healthchecks)
        elif sc.healthcheck.exit not in hc.exit_codes:
            yield (
                (*base, "healthcheck", "exit"),
                f"healthcheck '{sc.healthcheck.check}' has no exit code {sc.healthcheck.exit}",
            )





GRANTABLE_CAPABILITIES = frozenset(
    {"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_IPC_LOCK", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND"}
)
"""Capabilities a hardening exception may give a service: none of them reaches other users'
files, processes or the kernel. Everything else (CAP_SYS_ADMIN, CAP_DAC_OVERRIDE, CAP_CHOWN,
CAP_SETUID, an inverted ``~`` list, ...) is refused: with it a service user is root in all but
name (capabilities(7))."""


def _identities(spec: Spec) -> Iterator[Found]:
    """Names the tree claims on the host: its files' names, unit names, the service account."""
    p = spec.project
    if is_reserved(p.name):
        yield ("project", "name"), (
            f"'{p.name}' is a name the base system or a package uses (/etc/tmpfiles.d/{p.name}.conf would mask "
            f"theirs, /etc/{p.name} may be theirs; generator/reserved_names.txt); choose the project's own name"
        )
    for name, svc in spec.services.items():
        if svc.unit != p.name and not svc.unit.startswith(f"{p.name}-"):
            yield ("services", name, "unit"), (
                f"'{svc.unit}.service' and /etc/logrotate.d/{svc.unit} could replace the system's own; "
                f"generated unit names start with the project name, e.g. '{p.name}-{svc.unit}'"
            )
        elif is_reserved(svc.unit):
            yield ("services", name, "unit"), f"'{svc.unit}.service' is a unit name the base system or a package uses"


def _backup(spec: Spec) -> Iterator[Found]:
    for name, target in (spec.backup.targets if spec.backup else {}).items():
        if target.covers == "paths" and not target.paths:
            yield ("backup", "targets", name, "paths"), "covers: paths needs at least one path"
        if target.covers != "paths" and target.paths:
            yield (
                ("backup", "targets", name, "paths"),
                f"covers: {target.covers} derives its paths from the spec; remove 'paths'",
            )


def check_references(spec: Spec) -> list[Found]:
    """Every dangling or inconsistent reference in ``spec``, as ``(path, message)`` pairs.

    Input: a spec that passed model validation. Output: a possibly empty list; the
    paths index the spec data (``("services", "api", "logs", "policy")``). Never raises.
    """
    return [
        *_services(spec),
        *_identities(spec),
        *account_problems(spec),
        *target_problems(spec),
        *host_problems(spec),
        *redis_problems(spec),
        *_secrets(spec),
        *_hardening(spec),
        *_healthchecks(spec),
        *_matrix(spec),
        *_backup(spec),
    ]
