"""Delivery with Ansible: ``build/<env>/ansible/``, which installs each host's tree on its host.

An environment with ``hosts`` gets an inventory (each host at its spec address, in groups by what
it runs), one ``host_vars/<host>.yml`` per host holding everything the playbook needs to know
about that host's tree (files with owner, group and mode from its manifest; the unit each file
restarts; the units to enable; the health gates), and a playbook (``site.yml``, with
``tasks/tree.yml`` and ``handlers.yml``) that is the same static text for every spec. Only data
goes through YAML (written by PyYAML, never by a template), and every string holding a ``{`` is
tagged ``!unsafe`` so Ansible never evaluates spec text as a template.

The playbook uses ``ansible.builtin`` modules only: ``copy`` with the manifest's owner and mode,
``command`` for ``systemd-sysusers``/``systemd-tmpfiles --create``, ``systemd_service`` for
``daemon_reload``, enabling and starting, a handler restarting exactly the units whose files
changed, and ``slurp`` of the previous release's record on the host
(:func:`layout.release_state`/``release.json``) to stop, disable and delete what this release no
longer has. Hosts are done one at a time (``serial: 1``), data hosts (a configured Redis) first; a
later failure still runs the restarts (``force_handlers``); and every host must pass its gates
(each unit active and not restarted :data:`SETTLE_SEC` later, the runner's ``readiness_path``, the
monitor healthchecks) before the next one starts. A host that leaves ``hosts`` leaves the
inventory too: nothing here touches it again.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from . import layout
from .models import Spec
from .planner import Artifact, Plan
from .renderer import apt_packages
from .runners import readiness_url

__all__ = ["ansible_files", "host_vars", "inventory", "restarts"]

ANSIBLE_DIR = layout.ANSIBLE_DIR
STATIC = ("site.yml", "tasks/tree.yml", "handlers.yml", "ansible.cfg")
"""The playbook files, copied from templates/ansible/ as they are (no spec value in them)."""
SETTLE_SEC = layout.SETTLE_SEC
_OWN_DIRS = (".service.d", ".timer.d")
"""Folders the tree makes and, when a release no longer has files in them, removes (if empty): the
drop-in folders, and (:func:`host_vars`) each uvicorn service's /etc/<unit>/ (layout.log_config_path)."""


def restarts(a: Artifact, p: Plan) -> list[str]:
    """The units to restart when artifact ``a`` of plan ``p`` changed on a host: a service's unit
    file restarts that service, a timer file its timer, a Redis config or drop-in that Redis. A
    logrotate file, a healthcheck's oneshot (it runs anew each time), tmpfiles.d and sysusers.d
    files restart nothing (the playbook applies the last two itself); a sysctl.d file restarts
    systemd-sysctl.service, which applies every sysctl.d file (systemd-sysctl.service(8))."""
    if a.purpose == "unit":
        return [a.context["s"].unit_file]
    if a.purpose == "healthcheck_timer":
        return [PurePosixPath(a.server_path or "").name]
    if a.purpose in ("redis_conf", "redis_dropin"):
        return [a.context["v"].unit_file]
    if a.purpose == "sysctl":
        return [layout.SYSCTL_UNIT]
    return []


def host_vars(p: Plan, tree: str) -> dict[str, Any]:
    """Everything the playbook knows about one host's tree (``p``, found at ``tree`` relative to the
    playbook's folder), as the data of ``host_vars/<host>.yml``."""
    spec = p.spec
    installed = [a for a in p.artifacts if a.server_path]
    files = [
        {"src": a.path, "dest": a.server_path, "owner": a.owner, "group": a.group, "mode": a.mode,
         "restart": restarts(a, p)}
        for a in installed
    ]  # fmt: skip
    dirs = sorted({str(PurePosixPath(a.server_path or "/").parent) for a in installed})
    by_name = {sv.name: sv for sv in p.services}
    own_config_dirs = {str(PurePosixPath(sv.log_config).parent) for sv in p.services if sv.log_config}
    return {
        "tree_dir": tree,
        "tree_manifest": layout.MANIFEST,
        "tree_state": layout.release_state(spec.project.name),
        "tree_apt": apt_packages(p),  # the runbook's own list
        "tree_env_file": spec.project.env_file if p.services else None,
        "tree_env_example": layout.env_example(spec.project.env_file) if p.services else None,
        "tree_env_group": spec.project.group,
        "tree_env_mode": spec.project.env_file_mode,
        "tree_dirs": dirs,
        "tree_own_dirs": [d for d in dirs if d.endswith(_OWN_DIRS) or d in own_config_dirs],
        "tree_files": files,
        "tree_secrets": [{"path": rv.r.auth_file, "script": rv.auth_script} for rv in p.redis if rv.auth_script],
        "tree_sysusers": layout.sysusers_path(spec.project.name) if p.services else None,
        "tree_tmpfiles": layout.tmpfiles_path(spec.project.name) if p.services else None,
        "tree_mask": ["redis-server.service"] if p.redis else [],
        "tree_units": list(p.enable_units),
        "tree_settle_sec": SETTLE_SEC,
        "tree_http_gates": [
            {"unit": sv.unit_file, "url": url}
            for sv in p.services if (url := readiness_url(sv.svc.runner)) is not None
        ],  # fmt: skip
        "tree_check_gates": [
            f"{hv.timer_unit}.service" for hv in p.healthchecks
            if hv.timer_unit and hv.hc.service in by_name
        ],  # fmt: skip
    }


def _group(name: str) -> str:
    return layout.ANSIBLE_RUNS_PREFIX + name.replace("-", "_")


def inventory(spec: Spec, env: str, plans: Mapping[str, Plan]) -> dict[str, Any]:
    """The inventory of environment ``env``: every host with a tree (``plans``: host -> its plan)
    at its spec address (a loopback address is no way to reach a host: then Ansible connects to
    the host's name, which the operator's ssh config or DNS resolves), in group ``data`` when its
    tree configures a Redis (those hosts go first: the others' gates need it) or else
    ``services``, and in one ``runs_<name>`` group per service or external unit it runs (``-`` in
    a name becomes ``_``; a name that would clash with another gets no such group)."""
    hosts = list(plans)
    data = [h for h in hosts if plans[h].redis]
    groups: dict[str, list[str]] = {}
    clash: set[str] = set()
    names = [*spec.services, *spec.external_units]
    for name in names:
        g = _group(name)
        if g in groups or any(_group(o) == g for o in names if o != name):
            clash.add(g)
        groups[g] = [h for h in hosts if name in spec.hosts[h].runs]
    children: dict[str, Any] = {
        "data": {"hosts": {h: None for h in data}},
        "services": {"hosts": {h: None for h in hosts if h not in data}},
    }
    children |= {
        g: {"hosts": {h: None for h in members}} for g, members in groups.items() if g not in clash and members
    }
    return {
        "all": {
            "vars": {"deploy_env": env},
            "hosts": {h: _connection(spec.hosts[h].address) for h in hosts},
            "children": children,
        }
    }


def _connection(address: str) -> dict[str, str] | None:
    return None if ipaddress.ip_address(address).is_loopback else {"ansible_host": address}


class _Dumper(yaml.SafeDumper):
    """Block-style YAML, lists indented under their key (yamllint's default, as ansible-lint checks);
    a string with ``{`` is written ``!unsafe`` (Ansible's tag for text it must not template), so no
    spec value can run as an Ansible expression."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if "{" in value:
        return dumper.represent_scalar("!unsafe", value, style="'")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _str)


def _yaml(data: Mapping[str, Any], header: str) -> str:
    body = yaml.dump(
        dict(data), Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1000
    )
    return header + "---\n" + body


def ansible_files(
    spec: Spec, env: str | None, plans: Mapping[str, Plan], templates_dir: Path
) -> dict[str, str]:
    """The files of ``build/<env>/ansible/`` (module doc), by path below build/.

    Input: the environment's whole spec, its name (None: a spec without environments, whose
    ``hosts`` trees lie at the top of build/), the plan of each host that has a tree (host -> plan;
    its tree is ``build/<env>/<host>/``), the templates folder (for the static playbook).
    Output: ``{path: text}``. Raises OSError when a static playbook file cannot be read.
    """
    base = f"{env}/{ANSIBLE_DIR}" if env else ANSIBLE_DIR
    name = env or spec.project.name
    note = f"# Generated by zachot-gen from spec/ ({name}): do not edit, render again.\n"
    out = {f"{base}/{f}": (templates_dir / ANSIBLE_DIR / f).read_text(encoding="utf-8") for f in STATIC}
    out[f"{base}/inventory.yml"] = _yaml(inventory(spec, name, plans), note)
    for host, p in plans.items():
        out[f"{base}/host_vars/{host}.yml"] = _yaml(host_vars(p, f"../{host}"), note)
    return out
