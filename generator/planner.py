"""Models -> the list of artifacts to produce: where each goes, which template renders it,
and the derived facts (command lines, unit names, auto-actions) its template needs.

Everything a template shows that is not literally in the spec is computed here, once,
so units and docs read the same value (house style: data flows one way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import layout
from .accounts import SysUsers, rotation_identity, service_identity, sysusers
from .alerts import report_template
from .facts import condition_argv, condition_start_timeout, enable_units, healthcheck_argv, healthcheck_run
from .hardening import hardening_for
from .limits import limits_for
from .matrixplan import matrix_rows, unit_facts
from .models import (
    Service,
    Spec,
)
from .redisconf import CREDENTIAL
from .redisplan import RedisView, redis_views
from .runners import exec_start, takes_log_config
from .semantics import crash_loop_seconds
from .target import systemd_version
from .views import HealthcheckView, MatrixView, ScenarioView, ServiceView, UnitFacts

__all__ = ["Artifact", "HealthcheckView", "Plan", "ScenarioView", "ServiceView", "UnitFacts", "plan"]


@dataclass(frozen=True)
class Artifact:
    """One file of build/: its path there, the template, its context, and install metadata.

    ``path`` is relative to build/; for server files it starts with ``root/`` and
    ``owner``/``group``/``mode`` are what the file must have on the server.
    """

    path: str
    template: str
    context: dict[str, Any]
    purpose: str
    """Catalog key under ``purpose.`` describing the file in the docs."""
    purpose_params: Mapping[str, object] = field(default_factory=dict)
    owner: str = "root"
    group: str = "root"
    mode: str = "0644"

    @property
    def server_path(self) -> str | None:
        """Absolute path on the server, or None for files that are not installed (docs)."""
        prefix = layout.ROOT_DIR + "/"
        return "/" + self.path[len(prefix) :] if self.path.startswith(prefix) else None


@dataclass
class Plan:
    """The artifacts to render, in a stable order, and the views shared by their templates."""

    spec: Spec
    services: list[ServiceView]
    healthchecks: list[HealthcheckView]
    units: dict[str, UnitFacts]
    scenarios: dict[str, list[ScenarioView]]
    matrix: MatrixView
    artifacts: list[Artifact] = field(default_factory=list)
    enable_units: list[str] = field(default_factory=list)
    """Units to `systemctl enable --now` after install: the services and the healthcheck timers."""
    backup_paths: dict[str, list[str]] = field(default_factory=dict)
    backup_derived: dict[str, list[str]] = field(default_factory=dict)
    """What the tree itself says must be kept, by ``covers`` kind: the env file, the units, the logs."""
    accounts: SysUsers = SysUsers((), (), ())
    """The users, groups and memberships sysusers.d declares."""
    state_dirs: list[tuple[str, str, str]] = field(default_factory=list)
    """``(path, user, group)`` of every ``hardening.writable_paths`` folder: tmpfiles.d creates it 0750
    for the user that writes it, so ``ReadWritePaths=`` never names a missing path."""
    rotate_as: tuple[str, str] = ("root", "root")
    """logrotate's ``su`` user and group (:func:`generator.accounts.rotation_identity`)."""
    redis: list[RedisView] = field(default_factory=list)
    """Every Redis the tree configures (config file and drop-in)."""


def _unit_file(spec: Spec, name: str) -> str:
    item = spec.services.get(name) or spec.external_units[name]
    return f"{item.unit}.service"


def _healthcheck_view(spec: Spec, name: str) -> HealthcheckView:
    hc = spec.healthchecks[name]
    timer = layout.healthcheck_unit(spec.project.name, name) if hc.every_sec else None
    return HealthcheckView(
        name,
        hc,
        healthcheck_argv(spec, name),
        healthcheck_run(spec, name),
        f"{spec.project.repo}/{hc.script}",
        timer,
        hardening_for(hc.hardening, hc.hardening.writable_paths, systemd_version(spec)),
    )


def _service_view(spec: Spec, name: str, svc: Service) -> ServiceView:
    logs, to = spec.project.logs_dir, svc.logs
    files = to.target == "files" and logs is not None and to.stdout is not None and to.policy is not None
    cond = condition_argv(spec, svc.exec_condition) if svc.exec_condition else None
    online = ["network-online.target"] if svc.network_online else []
    log_config = layout.log_config_path(svc.unit) if takes_log_config(svc.runner) else None
    return ServiceView(
        name=name,
        svc=svc,
        unit_file=f"{svc.unit}.service",
        identity=service_identity(spec, name),
        exec_start=exec_start(svc.runner, spec.project.venv, log_config),
        exec_condition=cond,
        start_timeout=condition_start_timeout(spec, svc.exec_condition) if svc.exec_condition else None,
        after=[*online, *(_unit_file(spec, d) for d in svc.after)],
        wants=[*online, *(_unit_file(spec, d) for d in svc.wants)],
        requires=[_unit_file(spec, d) for d in svc.requires],
        log_target=("files" if to.stderr else "file") if files else "journal",
        stdout_path=f"{logs}/{to.stdout}" if files else None,
        stderr_path=f"{logs}/{to.stderr}" if files and to.stderr else None,
        policy=spec.log_policies[to.policy] if files and to.policy else None,
        logrotate_path=layout.logrotate_path(svc.unit) if files else None,
        gives_up_after=crash_loop_seconds(svc.restart),
        hardening=hardening_for(
            svc.hardening, [*([logs] if files and logs else []), *svc.hardening.writable_paths], systemd_version(spec)
        ),
        limits=limits_for(svc.limits, svc.runner),
        log_config=log_config,
    )


def _artifacts(p: Plan) -> list[Artifact]:
    spec = p.spec
    name = spec.project.name
    root = layout.ROOT_DIR
    arts: list[Artifact] = []
    for sv in p.services:
        arts.append(
            Artifact(
                f"{root}{layout.unit_path(sv.svc.unit)}",
                "systemd/service.j2",
                {"s": sv},
                "unit",
                {"title": sv.svc.title},
            )
        )
        if sv.log_config:
            arts.append(Artifact(f"{root}{sv.log_config}", "logging/uvicorn.json.j2", {"s": sv}, "log_config",
                                 {"title": sv.svc.title}))
        if sv.logrotate_path:
            arts.append(
                Artifact(
                    f"{root}{sv.logrotate_path}",
                    "logrotate/logrotate.j2",
                    {"s": sv},
                    "logrotate",
                    {"files": ", ".join(sv.log_files)},
                )
            )
    by_name = {sv.name: sv for sv in p.services}
    for hv in p.healthchecks:
        if hv.timer_unit:
            ctx = {"h": hv, "service": by_name[hv.hc.service]}
            params = {"title": hv.hc.title, "every": hv.hc.every_sec}
            arts.append(
                Artifact(
                    f"{root}{layout.unit_path(hv.timer_unit)}",
                    "systemd/healthcheck.service.j2",
                    ctx,
                    "healthcheck_service",
                    params,
                )
            )
            arts.append(
                Artifact(
                    f"{root}{layout.unit_path(hv.timer_unit, 'timer')}",
                    "systemd/healthcheck.timer.j2",
                    ctx,
                    "healthcheck_timer",
                    params,
                )
            )
    for rv in p.redis:
        ctx = {"v": rv, "credential_name": CREDENTIAL}
        unit = {"unit": rv.unit_file}
        arts.append(Artifact(f"{root}{rv.conf_path}", "redis/redis.conf.j2", ctx, "redis_conf", unit))
        arts.append(Artifact(f"{root}{rv.dropin_path}", "systemd/redis-dropin.conf.j2", ctx, "redis_dropin", unit))
    if p.redis:
        arts.append(Artifact(f"{root}{layout.sysctl_path(name)}", "sysctl/redis.conf.j2", {}, "sysctl"))
    if p.services or p.redis:  # every generated unit names it in OnFailure=
        arts.append(Artifact(f"{root}{layout.unit_path(report_template(name).removesuffix('.service'))}",
                             "systemd/on-failure.service.j2", {}, "on_failure"))
    if p.services:  # a host that runs only a configured Redis has no account, logs or env file of the project
        purpose = "tmpfiles" if any(sv.log_files for sv in p.services) else "tmpfiles_env"
        arts.append(Artifact(f"{root}{layout.tmpfiles_path(name)}", "tmpfiles/tmpfiles.conf.j2", {}, purpose))
        arts.append(
            Artifact(
                f"{root}{layout.sysusers_path(name)}",
                "sysusers/sysusers.conf.j2",
                {},
                "sysusers",
                {"user": ", ".join(a.name for a in p.accounts.users)},
            )
        )
        arts.append(Artifact(layout.env_example(spec.project.env_file), "env/env.example.j2", {}, "env_example"))
    for doc in ("README.md", "failure_matrix.md", "backup_recovery.md"):
        arts.append(Artifact(layout.docs_file(doc), f"docs/{doc}.j2", {}, "doc"))
    return arts


def _state_dirs(spec: Spec) -> list[tuple[str, str, str]]:
    out: dict[str, tuple[str, str]] = {}
    for name, svc in spec.services.items():
        ident = service_identity(spec, name)
        out |= {path: (ident.user, ident.group) for path in svc.hardening.writable_paths if path not in out}
    for hc in spec.healthchecks.values():
        ident = service_identity(spec, hc.service)
        out |= {path: (ident.user, ident.group) for path in hc.hardening.writable_paths if path not in out}
    return [(path, user, group) for path, (user, group) in out.items()]


def _derived_backup(p: Plan) -> dict[str, list[str]]:
    """Server paths of each derivable ``covers`` kind."""
    return {
        "env_file": [p.spec.project.env_file],
        "units": [a.server_path for a in p.artifacts if a.server_path],
        "logs": [path for s in p.services for path in s.log_files],
        "state": [path for path, _, _ in p.state_dirs],
    }


def _backup_paths(p: Plan) -> dict[str, list[str]]:
    """Server paths each backup target covers, derived from the spec and the artifacts."""
    derived = p.backup_derived
    return {
        name: list(t.paths) if t.covers == "paths" else derived[t.covers]
        for name, t in (p.spec.backup.targets if p.spec.backup else {}).items()
    }


def plan(spec: Spec) -> Plan:
    """Turn a validated spec into the render plan.

    Input: :class:`Spec` (from :func:`generator.loader.load_spec`). Output: a
    :class:`Plan` whose ``artifacts`` list every file of build/ except the manifest,
    in a stable order. Raises nothing for a spec that passed validation.
    """
    services = [_service_view(spec, n, s) for n, s in spec.services.items()]
    hcs = {n: _healthcheck_view(spec, n) for n in spec.healthchecks}
    units = unit_facts(spec)
    matrix, scenarios = matrix_rows(spec, units, hcs, services)
    p = Plan(spec, services, list(hcs.values()), units, scenarios, matrix)
    p.accounts = sysusers(spec)
    p.state_dirs = _state_dirs(spec)
    p.rotate_as = rotation_identity(spec)
    p.redis = redis_views(spec)
    p.artifacts = _artifacts(p)
    p.backup_derived = _derived_backup(p)
    p.backup_paths = _backup_paths(p)
    p.enable_units = enable_units(spec)
    return p
