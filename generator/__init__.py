"""zachot-gen: render the zachot deploy tree (systemd units, logrotate files, healthcheck
wiring, ops docs) from the YAML spec, and check that a committed tree still matches it.

Data flows one way: ``load_spec`` (YAML -> :class:`Spec`) -> ``plan`` (artifacts) ->
``render`` (``{path: text}``) -> ``write`` (build/) or ``diff`` (drift).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .environment import TEMPLATES_DIR
from .environments import environment_names
from .errors import GeneratorError, OutputError, Problem, SpecError, TemplateError
from .layout import MANIFEST
from .lint import lint
from .loader import load, load_spec
from .models import Spec
from .output import Drift, diff, write
from .planner import Plan, plan
from .renderer import combined_manifest, render
from .treesize import tree_size_problem

__all__ = [
    "Build",
    "Drift",
    "GeneratorError",
    "OutputError",
    "Plan",
    "Spec",
    "SpecError",
    "TemplateError",
    "Tree",
    "build",
    "build_files",
    "build_tree",
    "check",
    "diff",
    "load_spec",
    "plan",
    "render",
    "render_to",
    "write",
]


@dataclass
class Build:
    """The rendered tree of a spec (``{path in build/: text}``), its plan, and lint warnings."""

    files: dict[str, str]
    plan: Plan
    warnings: list[Problem] = field(default_factory=list)


def build(spec_dir: Path, templates_dir: Path = TEMPLATES_DIR, env: str | None = None) -> Build:
    """Load, plan, render and lint ``spec_dir`` (environment ``env``'s spec when given); touches
    no file but reads. The files are the tree of that one spec, paths relative to its folder.

    Raises :class:`SpecError` for spec mistakes and lint errors (located in the spec),
    :class:`TemplateError` for template problems. Lint warnings come back in ``warnings``.
    """
    loaded = load(spec_dir, env)
    p = plan(loaded.spec)
    files = render(p, templates_dir, f"build/{env}" if env else "build")
    source = (spec_dir / loaded.spec.project.source).resolve() if loaded.spec.project.source else None
    too_big = tree_size_problem(loaded, files, sum(f.stat().st_size for f in loaded.files))
    if too_big is not None:
        raise SpecError([too_big])
    findings = lint(p, files, source)
    where = f" (environment {env})" if env else ""
    errors = [loaded.problem(f.path, f.message + where) for f in findings if f.severity == "error"]
    if errors:
        raise SpecError(errors)
    warnings = [loaded.problem(f.path, f"warning: {f.message}{where}") for f in findings if f.severity == "warning"]
    return Build(files, p, warnings)


@dataclass
class Tree:
    """All of build/: one :class:`Build` for a spec without environments (key None), else one per
    environment under ``build/<env>/`` with a manifest at the top listing every installed file."""

    files: dict[str, str]
    builds: dict[str | None, Build]
    warnings: list[Problem] = field(default_factory=list)

    @property
    def plan(self) -> Plan:
        """The plan of a spec without environments. Raises ValueError for one with them."""
        if None not in self.builds:
            raise ValueError("a spec with environments has one plan per environment: use builds[env].plan")
        return self.builds[None].plan


def build_tree(spec_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> Tree:
    """Everything build/ holds for ``spec_dir``: the spec's tree, or one per environment
    (``env/<name>.yaml``, :mod:`generator.environments`) plus the top manifest.

    Raises :class:`SpecError` with the problems of every environment that has any, like :func:`build`.
    """
    envs = environment_names(spec_dir)
    if not envs:
        single = build(spec_dir, templates_dir)
        return Tree(single.files, {None: single}, single.warnings)
    builds: dict[str | None, Build] = {}
    problems: list[Problem] = []
    for env in envs:
        try:
            builds[env] = build(spec_dir, templates_dir, env)
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))
    files = {f"{env}/{path}": text for env, b in builds.items() for path, text in b.files.items()}
    files[MANIFEST] = combined_manifest({str(env): b.plan for env, b in builds.items()})
    warnings = list(dict.fromkeys(w for b in builds.values() for w in b.warnings))
    return Tree(files, builds, warnings)


def build_files(spec_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """The full content of build/ for ``spec_dir`` as ``{path: text}`` (see :func:`build_tree`)."""
    return build_tree(spec_dir, templates_dir).files


def render_to(spec_dir: Path, build_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> Tree:
    """Build ``spec_dir`` and replace ``build_dir`` with the result, atomically.

    Input: the spec folder, the build folder (absent, empty, or a tree zachot-gen wrote:
    its manifest.tsv starts with the generator's header line and matches its sha256), the
    templates folder. Output: the :class:`Tree` written; every file gets mode 0644.
    Raises :class:`GeneratorError` subclasses (:class:`OutputError` for a foreign folder,
    saying why and what to do); on any error ``build_dir`` is left as it was.
    """
    result = build_tree(spec_dir, templates_dir)
    write(build_dir, result.files, marker=MANIFEST)
    return result


def check(spec_dir: Path, build_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> Drift:
    """Build ``spec_dir`` in memory and compare with ``build_dir``; returns the :class:`Drift`.

    The drift names changed, missing and stale files, folders holding no rendered file,
    files whose mode is not 0644 (nor ``0o666 & ~umask``, a clone's), and a manifest whose
    header line does not match its digest. Falsy when ``build_dir`` is up to date. Raises
    :class:`SpecError` or :class:`TemplateError` for the spec, :class:`OutputError` when
    ``build_dir`` is not a plain folder; writes nothing.
    """
    return diff(build_dir, build_files(spec_dir, templates_dir), marker=MANIFEST)
