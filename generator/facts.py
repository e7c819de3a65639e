"""Facts derived from the spec that prose in the spec may quote as ``${name}``.

Spec prose (a disaster step, a manual action) often names a path or a command. Writing
``${env_file}`` instead of the literal path makes the docs follow the spec: one edit of
``project.env_file`` changes the unit and every sentence that mentions it. Substitution
uses :class:`string.Template` (``$$`` is a literal dollar); an unknown name is a spec error.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import PurePosixPath

from . import layout
from .accounts import service_identity
from .filters import seconds
from .hosts import across_hosts, placement
from .models import Spec
from .redisplan import DEFAULT_PORT, redis_views
from .runners import stop_wait

__all__ = ["DEFAULT_START_TIMEOUT_SEC", "FactTemplate", "condition_argv", "condition_start_timeout", "enable_units",
           "facts_of", "healthcheck_argv", "healthcheck_run", "placeholders"]

DEFAULT_START_TIMEOUT_SEC = 90
"""systemd's DefaultTimeoutStartSec= (systemd-system.conf(5)), seconds: what a unit without
TimeoutStartSec= gets for its whole start."""


class FactTemplate(string.Template):
    """``${api.unit}``-style placeholders: dotted names, braces required."""

    delimiter = "$"
    idpattern = r"(?!)"  # bare $name is not a placeholder: only ${name}
    braceidpattern = r"[a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*"


def placeholders(text: str) -> list[str]:
    """Names of the ``${...}`` placeholders in ``text``; raises ValueError on a lone ``$``."""
    names: list[str] = []
    for match in FactTemplate.pattern.finditer(text):
        if match.group("invalid") is not None:
            raise ValueError("a '$' must start a ${name} placeholder; write '$$' for a literal '$'")
        if match.group("braced"):
            names.append(match.group("braced"))
    return names


def healthcheck_argv(spec: Spec, name: str) -> list[str]:
    """The words of the command that runs healthcheck ``name``: the venv's python and the script."""
    return [f"{spec.project.venv}/bin/python", f"{spec.project.repo}/{spec.healthchecks[name].script}"]


def condition_argv(spec: Spec, name: str) -> list[str]:
    """The ExecCondition= words of exec_condition healthcheck ``name``: :func:`healthcheck_argv`,
    plus ``--wait <wait_sec>`` when it waits (generator/models.py, ``Healthcheck.wait_sec``)."""
    wait = spec.healthchecks[name].wait_sec
    return [*healthcheck_argv(spec, name), *(["--wait", str(wait)] if wait else [])]


def condition_start_timeout(spec: Spec, name: str) -> int | None:
    """TimeoutStartSec= (seconds) for a service whose ExecCondition= is healthcheck ``name``: the
    wait, one more run of the check and systemd's own default start budget after it
    (DefaultTimeoutStartSec=90s, systemd-system.conf(5)); None when the check does not wait."""
    hc = spec.healthchecks[name]
    return hc.wait_sec + hc.timeout_sec + DEFAULT_START_TIMEOUT_SEC if hc.wait_sec else None


def healthcheck_run(spec: Spec, name: str) -> list[str]:
    """The words of a command that runs healthcheck ``name`` as the service would: as the
    service user, with the env file loaded, and returns its exit code (systemd-run(1)
    ``--wait --pipe``). Run as root."""
    p = spec.project
    ident = service_identity(spec, spec.healthchecks[name].service)
    props = [f"User={ident.user}", f"Group={ident.group}"]
    props += [f"SupplementaryGroups={' '.join(ident.supplementary)}"] if ident.supplementary else []
    props.append(f"EnvironmentFile={p.env_file}")
    return [
        "systemd-run",
        "--quiet",
        "--wait",
        "--pipe",
        *(w for prop in props for w in ("-p", prop)),
        *healthcheck_argv(spec, name),
    ]


def enable_units(spec: Spec) -> list[str]:
    """Units to ``systemctl enable --now`` after install: each Redis the tree configures (first: the
    services order after it), the services, then the healthcheck timers."""
    timers = [
        f"{layout.healthcheck_unit(spec.project.name, n)}.timer" for n, h in spec.healthchecks.items() if h.every_sec
    ]
    redis = [f"{e.unit}.service" for e in spec.external_units.values() if e.redis is not None]
    return redis + [f"{s.unit}.service" for s in spec.services.values()] + timers


def facts_of(spec: Spec) -> Mapping[str, str]:
    """Every ``${name}`` a spec may quote, with its value.

    Input: a validated spec. Output: a name -> text mapping: project paths (``env_file``,
    ``venv``, ``python``, ``repo``, ``logs_dir``, ...), per service ``<name>.unit``,
    ``<name>.unit_path``, ``<name>.stdout``, ``<name>.stderr``, ``<name>.logrotate``,
    ``<name>.rotate``, ``<name>.restart_policy`` (the Restart= value), ``<name>.stop_timeout``
    (TimeoutStopSec=, e.g. `90s`), ``<name>.kill_mode`` (KillMode=), ``<name>.shutdown_timeout`` (the
    runner's own shutdown wait, :func:`generator.runners.stop_wait`, e.g. `60s`; absent for a command
    that does not declare one); per external unit
    ``<name>.unit``, ``<name>.restart_policy`` and, if declared, ``<name>.stop_timeout``; per Redis the
    tree configures ``<name>.conf`` (its config file), ``<name>.rdb`` (its RDB file), ``<name>.aof``
    (its AOF base name), ``<name>.port`` and ``<name>.cli`` (redis-cli on that host, with
    ``--askpass`` when it requires a password); for both,
    ``<name>.address``, the private address of the (first) host in ``hosts`` that runs it, in
    brackets when it is IPv6 so it fits a URL (127.0.0.1 without ``hosts`` or with one host), e.g.
    ``redis://${redis.address}:6379/0``
    (`infinity` or e.g. `90s`, in TimeoutStopSec='s notation); per healthcheck
    ``<name>.command`` (the bare command) and ``<name>.run`` (as the service user with the
    env file, via systemd-run), and for an ``exec_condition`` one ``<name>.wait`` (its ``wait_sec``,
    seconds, e.g. `90`); ``enable_units``, ``env_dir``.
    """
    p = spec.project
    out: dict[str, str] = {
        "project": p.name,
        "user": p.user,
        "group": p.group,
        "root": p.root,
        "venv": p.venv,
        "python": f"{p.venv}/bin/python",
        "env_file": p.env_file,
        "repo": p.repo,
        "repo_url": p.repo_url,
        **({"logs_dir": p.logs_dir} if p.logs_dir else {}),
        "tmpfiles": layout.tmpfiles_path(p.name),
        "sysusers": layout.sysusers_path(p.name),
        "enable_units": " ".join(enable_units(spec)),
        "env_dir": str(PurePosixPath(p.env_file).parent),
    }
    for name, svc in spec.services.items():
        out[f"{name}.unit"] = f"{svc.unit}.service"
        out[f"{name}.restart_policy"] = svc.restart.policy
        out[f"{name}.stop_timeout"] = f"{seconds(svc.stop.timeout_sec)}s"
        out[f"{name}.kill_mode"] = svc.stop.kill_mode
        wait = stop_wait(svc.runner)
        if wait is not None:
            out[f"{name}.shutdown_timeout"] = f"{wait.seconds}s"
        out[f"{name}.unit_path"] = layout.unit_path(svc.unit)
        if svc.logs.target == "files" and p.logs_dir and svc.logs.stdout:
            out[f"{name}.stdout"] = f"{p.logs_dir}/{svc.logs.stdout}"
            out[f"{name}.stderr"] = f"{p.logs_dir}/{svc.logs.stderr or svc.logs.stdout}"
            out[f"{name}.logrotate"] = layout.logrotate_path(svc.unit)
            if svc.logs.policy in spec.log_policies:
                out[f"{name}.rotate"] = str(spec.log_policies[svc.logs.policy].rotate)
    for name, hosts in placement(spec).items() if across_hosts(spec) else ():  # one host: loopback
        address = spec.hosts[hosts[0]].address
        out[f"{name}.address"] = f"[{address}]" if ":" in address else address
    for name in (*spec.services, *spec.external_units):
        out.setdefault(f"{name}.address", "127.0.0.1")
    for rv in redis_views(spec):
        out[f"{rv.name}.conf"] = rv.conf_path
        out[f"{rv.name}.rdb"] = rv.rdb_path
        out[f"{rv.name}.aof"] = rv.aof_name
        out[f"{rv.name}.port"] = str(rv.r.port)
        port = f" -p {rv.r.port}" if rv.r.port != DEFAULT_PORT else ""
        out[f"{rv.name}.cli"] = f"redis-cli{port}" + (" --askpass" if rv.credential else "")
    for name, ext in spec.external_units.items():
        out[f"{name}.unit"] = f"{ext.unit}.service"
        out[f"{name}.restart_policy"] = ext.restart.policy
        if ext.stop_timeout_sec is not None:
            out[f"{name}.stop_timeout"] = (
                "infinity" if ext.stop_timeout_sec == "infinity" else f"{seconds(ext.stop_timeout_sec)}s"
            )
    for name, hc in spec.healthchecks.items():
        out[f"{name}.command"] = " ".join(healthcheck_argv(spec, name))
        out[f"{name}.run"] = " ".join(healthcheck_run(spec, name))
        if hc.role == "exec_condition":
            out[f"{name}.wait"] = str(hc.wait_sec)
    return out


def optional_fact_field(spec: Spec, name: str) -> str | None:
    """The spec field that defines fact ``name`` when it is an optional fact left unset there
    (``<unit>.stop_timeout`` <- ``external_units.<unit>.stop_timeout_sec``), else None."""
    unit, _, attr = name.partition(".")
    if attr == "stop_timeout" and unit in spec.external_units:
        return f"external_units.{unit}.stop_timeout_sec"
    return None
