"""Render plan -> ``{path in build/: text}``. No I/O but reading templates.

Every artifact is rendered with the same shared context (the plan's views, the label
catalog, the layout's paths); the manifest is written from the artifacts' metadata with
the csv module (tab-separated), not by a template.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Set as AbstractSet
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from . import layout, treeid
from .accounts import logs_owner
from .alerts import alert_identifier, report_exec, report_unit
from .environment import TEMPLATES_DIR, make_environment
from .errors import TemplateError
from .hardening import PRESET, hardening_for, left_out
from .i18n import load_catalog
from .logconfig import uvicorn_log_config
from .models import Hardening, Spec
from .planner import Plan
from .runners import readiness_url
from .semantics import auto_action, condition_outcome
from .target import SINCE, systemd_version, target_label

__all__ = ["combined_manifest", "manifest_text", "render", "render_hosts"]


def manifest_text(p: Plan) -> str:
    """The manifest: the generator's header line, then one tab-separated row per installed file.

    Input: a :class:`Plan`. Output: the text of build/manifest.tsv. Its first line is the
    comment ``# zachot-gen tree; sha256 of the rows below: <hex>`` (:func:`treeid.stamp`;
    render and check recognise a tree zachot-gen wrote by it, readers skip it), then a
    column-name row and the rows. Columns: ``build_path`` (under build/), ``server_path``,
    ``owner``, ``group``, ``mode`` (octal text, the mode on the server). Rows are in
    artifact order. Raises nothing.
    """
    return combined_manifest({"": p})


def combined_manifest(plans: dict[str, Plan]) -> str:
    """One stamped manifest for several trees: each plan's rows with its build paths below the
    plan's folder (``staging/root/...``; ``""`` for a tree at the top). Same columns and header
    line as :func:`manifest_text`, which is this for one plan at the top."""
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["build_path", "server_path", "owner", "group", "mode"])
    for folder, p in plans.items():
        for a in p.artifacts:
            if a.server_path:
                writer.writerow([f"{folder}/{a.path}" if folder else a.path, a.server_path, a.owner, a.group, a.mode])
    return treeid.stamp(buf.getvalue())


def apt_packages(p: Plan) -> list[str]:
    """What the install step installs with apt-get on this tree's host: git and python3-venv for
    the code and the venv, the external units' packages, logrotate when logs go to files, curl
    when a service speaks HTTP (the docs check it with `curl`), and sudo, which every command of
    the docs is written with (a minimal Debian has neither)."""
    packages = ["git", "python3-venv"] if p.services else []
    packages += [e.package for e in p.spec.external_units.values() if e.package]
    packages += ["logrotate"] if any(sv.log_files for sv in p.services) else []
    packages += ["curl"] if any(getattr(sv.svc.runner, "port", None) for sv in p.services) else []
    return [*packages, "sudo"]


def _exceptions_text(hardening: Hardening) -> str:
    """``Directive=value — reason`` for each exception, joined with "; " (empty if none)."""
    return "; ".join(f"`{name}={exc.value}` — {exc.reason}" for name, exc in sorted(hardening.exceptions.items()))


def _shared_context(p: Plan, templates_dir: Path) -> dict[str, Any]:
    name = p.spec.project.name
    t = load_catalog(templates_dir, p.spec.project.language)
    line = t.get("alert.line")
    return {
        "spec": p.spec,
        "t": t,
        "on_failure_unit": report_unit(name),
        "alert_identifier": alert_identifier(name),
        "report_exec": report_exec(p.spec.project.on_failure, p.spec.project.venv, str(line)),
        "report_hardening": hardening_for(Hardening(), [], systemd_version(p.spec)),
        "services": p.services,
        "healthchecks": p.healthchecks,
        "units": p.units,
        "scenarios": p.scenarios,
        "artifacts": p.artifacts,
        "redis": p.redis,
        "enable_units": p.enable_units,
        "backup_paths": p.backup_paths,
        "backup_derived": p.backup_derived,
        "matrix": p.matrix,
        "accounts": p.accounts,
        "state_dirs": p.state_dirs,
        "rotate_as": p.rotate_as,
        "logs_owner": logs_owner(p.spec),
        "tmpfiles_path": layout.tmpfiles_path(name),
        "sysusers_path": layout.sysusers_path(name),
        "sysctl_unit": layout.SYSCTL_UNIT,
        "settle_sec": layout.SETTLE_SEC,
        "readiness_url": readiness_url,
        "uvicorn_log_config": uvicorn_log_config,
        "manifest_name": layout.MANIFEST,
        "env_example": layout.env_example(p.spec.project.env_file),
        "apt_packages": apt_packages(p),
        "env_dir": str(PurePosixPath(p.spec.project.env_file).parent),
        "condition_outcome": condition_outcome,
        "condition_action": lambda code, svc: auto_action(
            "condition_error" if condition_outcome(code) == "fail" else "condition_skip", svc.restart, svc.stop,
            p.spec.healthchecks[svc.exec_condition].wait_sec if svc.exec_condition else 0,
        ),
        "preset": PRESET,
        "target_label": target_label(p.spec),
        "left_out": [f"{name}= ({SINCE[name]})" for name in left_out(systemd_version(p.spec))],
        "exceptions_text": _exceptions_text,
    }


def render_hosts(
    spec: Spec, trees: dict[str, str], templates_dir: Path = TEMPLATES_DIR, env: str | None = None,
    ansible_dir: str | None = None, settle_sec: int = 0,
) -> str:
    """The overview of an environment with ``hosts`` (``build/<env>/hosts.md``): each host, its
    address, what it runs, and its tree (``trees[host]``; absent for a host with nothing of ours
    to install); with ``ansible_dir`` (``build/<env>/ansible``), how to deliver, preview and roll
    back with it (``settle_sec``: seconds a unit must stay up, generator.delivery.SETTLE_SEC).
    Raises :class:`TemplateError` like :func:`render`."""
    try:
        return make_environment(templates_dir).get_template("docs/hosts.md.j2").render(
            spec=spec, t=load_catalog(templates_dir, spec.project.language), trees=trees, env=env,
            ansible_dir=ansible_dir, settle_sec=settle_sec, state_dir=layout.release_state(spec.project.name),
            rollback_dir=f"../{spec.project.name}-rollback",
        )
    except (jinja2.TemplateError, ValueError) as exc:
        raise TemplateError(f"docs/hosts.md.j2: {exc}") from None


def render(
    p: Plan, templates_dir: Path = TEMPLATES_DIR, tree: str = "build", host: str | None = None,
    only: AbstractSet[str] | None = None,
) -> dict[str, str]:
    """Render every artifact of ``p`` and the manifest; with ``only``, just the artifacts at
    those paths, and no manifest (validate's rotation sandbox needs the logrotate files alone).

    Input: a :class:`Plan`, the templates folder, and where the docs say the tree lies
    relative to the repository (``build``, or ``build/<env>`` for an environment), and the host
    of ``spec.hosts`` the tree is for (its docs say so). Output: ``{relative path: text}``,
    deterministic (same bytes on every run and machine). Raises :class:`TemplateError`
    naming the artifact and template for a missing template, a syntax error, an
    undefined variable, or a value its filter refuses.
    """
    env = make_environment(templates_dir)
    shared = _shared_context(p, templates_dir) | {"tree": tree, "host": host}
    out: dict[str, str] = {}
    for a in p.artifacts if only is None else [a for a in p.artifacts if a.path in only]:
        try:
            out[a.path] = env.get_template(a.template).render({**shared, **a.context})
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{exc.filename or a.template}:{exc.lineno}: {exc.message}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{a.template} (rendering {a.path}): {exc}") from None
        except ValueError as exc:
            raise TemplateError(f"{a.template} (rendering {a.path}): {exc}") from None
    if only is None:
        out[layout.MANIFEST] = manifest_text(p)
    return out
