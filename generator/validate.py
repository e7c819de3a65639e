"""`zachot-gen validate`: the rendered tree through the real tools, in scratch folders.

Builds the spec in memory (spec and lint errors raise as for ``render``), then runs
``systemd-analyze verify``, ``systemd-analyze security --offline=true``, and
``logrotate -d`` plus a sandboxed rotation of every service's logs (:mod:`generator.rotation`),
and ``systemd-sysusers``/``systemd-tmpfiles --create`` on a scratch root holding a base Debian
system (:mod:`generator.syscheck`). Nothing under build/ or on the host's /etc is touched; the
scratch folders are in memory (/dev/shm) when there is room, else in the temporary folder
(:mod:`generator.scratch`).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from .environment import TEMPLATES_DIR
from .pipeline import Build, build_tree
from .realtools import ToolFinding, security_check, verify_units
from .rotation import (
    RotationRun,
    Sandbox,
    may_share_a_run,
    rotate_service,
    rotate_services,
    rotation_findings,
    sandbox,
)
from .scratch import scratch_parent
from .syscheck import check_system_files
from .views import ServiceView

__all__ = ["Validation", "validate"]


@dataclass
class Validation:
    """What the real tools said: exposure per unit, what was checked, findings."""

    exposure: dict[str, float] = field(default_factory=dict)
    findings: list[ToolFinding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)


def validate(spec_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> Validation:
    """Run every real-tool check on the tree ``spec_dir`` renders to (every environment's).

    Output: a :class:`Validation`; it passed when ``findings`` is empty. With environments or
    hosts, each checked line, exposure and finding names its tree (``production/api1: ...``). Raises
    :class:`generator.SpecError`/:class:`generator.TemplateError` like ``render``,
    :class:`generator.realtools.ToolMissing` when a tool is not installed,
    :class:`generator.scratch.ScratchError` when no folder can hold the scratch, and ``OSError``
    when the scratch fills its filesystem (the scratch folder is removed either way).
    """
    tree = build_tree(spec_dir, templates_dir)
    out = Validation()
    size = sum(len(text) for result in tree.builds.values() for text in result.files.values())
    with tempfile.TemporaryDirectory(prefix="zachot-validate-", dir=scratch_parent(size, len(tree.builds))) as tmp:
        for env, result in tree.builds.items():
            scratch = Path(tmp) / (env or "tree")
            scratch.mkdir(parents=True)
            one = _validate_one(result, scratch, templates_dir)
            shutil.rmtree(scratch)  # one tree's scratch at a time, however many hosts
            label = f"{env}: " if env else ""
            out.checked += [label + line for line in one.checked]
            out.exposure |= {label + unit: score for unit, score in one.exposure.items()}
            out.findings += [replace(f, artifact=f"{env}/{f.artifact}") if env else f for f in one.findings]
    return out


def _rotations(box: Sandbox, services: list[ServiceView], scratch: Path) -> dict[str, RotationRun]:
    """Each service's rotation on ``rotate + 2`` simulated days. Services with as many days
    rotate together (:func:`rotate_services`: one logrotate call per day for all of them);
    a group whose logrotate printed an error, or whose logs could be mixed up, rotates one
    service at a time, so every error names its own file."""
    days: dict[int, list[str]] = {}
    for sv in services:
        days.setdefault(sv.policy.rotate + 2, []).append(sv.name)  # type: ignore[union-attr]
    out: dict[str, RotationRun] = {}
    for n, names in days.items():
        together = len(names) > 1 and may_share_a_run(box, names)
        if together:
            (work := scratch / "rotate-all" / str(n)).mkdir(parents=True)
            found = rotate_services(box, names, work, n)
            together = not any(run.errors for run in found.values())
        if not together:
            found = {}
            for name in names:
                (work := scratch / "rotate-one" / name).mkdir(parents=True)
                found[name] = rotate_service(box, name, work, n)
        out |= found
    return out


def _validate_one(result: Build, scratch: Path, templates_dir: Path) -> Validation:
    out = Validation()
    (scratch / "systemd").mkdir()  # one unit root for verify and security
    out.findings += verify_units(result.plan, result.files, scratch / "systemd")
    units = [p.removeprefix("root/etc/systemd/system/") for p in result.files if p.startswith("root/etc/systemd/")]
    out.checked.append("systemd-analyze verify: " + ", ".join(units))
    out.exposure, found = security_check(result.plan, result.files, scratch / "systemd")
    out.findings += found
    rotated = [sv for sv in result.plan.services if sv.policy is not None]  # the journal: no logrotate file
    runs = _rotations(sandbox(result.plan.spec, scratch / "rotate-root", templates_dir), rotated, scratch) \
        if rotated else {}
    for sv in rotated:
        out.findings += rotation_findings(runs[sv.name], f"root{sv.logrotate_path}")
        out.checked.append(f"logrotate -d, then -f on {len(runs[sv.name].days)} days: {sv.logrotate_path}")
    if not result.plan.services:
        return out  # a host running only a configured Redis: no account, folders or logs of ours
    (scratch / "system").mkdir()
    checked, found = check_system_files(result.plan, result.files, scratch / "system")
    out.checked += checked
    out.findings += found
    return out
