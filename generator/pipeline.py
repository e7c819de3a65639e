"""The pipeline of one run: load each environment's spec, plan, render and lint each tree (one
per environment, one per host of an environment with hosts), then write build/ or compare it.

Data flows one way: ``load`` (YAML -> :class:`Spec`) -> ``plan`` (artifacts) -> ``render``
(``{path: text}``) -> ``lint`` -> ``write`` (build/) or ``diff`` (drift). The package
(:mod:`generator`) re-exports the public names.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from .delivery import SETTLE_SEC, ansible_files
from .environment import TEMPLATES_DIR
from .environments import environment_names
from .errors import Problem, SpecError
from .hosts import host_spec
from .layout import ANSIBLE_DIR, MANIFEST
from .lint import lint, source_inputs
from .loader import Loaded, load
from .models import Spec
from .output import Drift, diff, write
from .planner import Plan, plan
from .renderer import combined_manifest, render, render_hosts
from .treesize import tree_size_problem

__all__ = ["Build", "Tree", "app_inputs", "build", "build_files", "build_tree", "check", "render_to"]


@dataclass
class Build:
    """The rendered tree of a spec (``{path in build/: text}``), its plan, and lint warnings."""

    files: dict[str, str]
    plan: Plan
    warnings: list[Problem] = field(default_factory=list)


def build(spec_dir: Path, templates_dir: Path = TEMPLATES_DIR, env: str | None = None) -> Build:
    """Load, plan, render and lint ``spec_dir`` (environment ``env``'s spec when given) as one
    tree; touches no file but reads. For a spec with ``hosts`` use :func:`build_tree`.

    Raises :class:`SpecError` for spec mistakes and lint errors (located in the spec),
    :class:`TemplateError` for template problems. Lint warnings come back in ``warnings``.
    """
    loaded = load(spec_dir, env)
    return _build_slice(spec_dir, loaded, loaded.spec, templates_dir, f"build/{env}" if env else "build")


def _build_slice(
    spec_dir: Path, loaded: Loaded, spec: Spec, templates_dir: Path, tree: str, host: str | None = None
) -> Build:
    """Plan, render and lint ``spec`` (all of ``loaded``'s, or host ``host``'s slice) as the tree at ``tree``."""
    p = plan(spec)
    files = render(p, templates_dir, tree, host)
    source = _source(spec_dir, loaded, spec)
    too_big = tree_size_problem(loaded, files, sum(f.stat().st_size for f in loaded.files))
    if too_big is not None:
        raise SpecError([too_big])
    findings = lint(p, files, source)
    where = f" ({tree.removeprefix('build/')})" if tree != "build" else ""
    errors = [loaded.problem(f.path, f.message + where) for f in findings if f.severity == "error"]
    if errors:
        raise SpecError(errors)
    warnings = [loaded.problem(f.path, f"warning: {f.message}{where}") for f in findings if f.severity == "warning"]
    return Build(files, p, warnings)


def _source(spec_dir: Path, loaded: Loaded, spec: Spec) -> Path | None:
    """``project.source`` resolved against ``spec_dir``; a symlink loop on the way is a spec
    error at the field (pathlib raises RuntimeError for it)."""
    if not spec.project.source:
        return None
    try:
        return (spec_dir / spec.project.source).resolve()
    except (RuntimeError, OSError) as exc:
        raise SpecError([loaded.problem(("project", "source"), f"cannot be followed: {exc}")]) from None


def _slices(spec_dir: Path, templates_dir: Path, env: str | None) -> tuple[dict[str, Build], dict[str, str]]:
    """The trees of one environment (or of a spec without any), by folder below build/, and, for
    an environment with hosts, its overview ``<env>/hosts.md`` (which host runs what, where its tree is)."""
    try:
        loaded = load(spec_dir, env)
    except SpecError as exc:  # say which environment's merge the mistake is in
        tag = f" (environment {env})" if env else ""
        raise SpecError([replace(p, message=p.message + tag) for p in exc.problems]) from None
    base = env or ""
    if not loaded.spec.hosts:
        return {base: _build_slice(spec_dir, loaded, loaded.spec, templates_dir, f"build/{base}".rstrip("/"))}, {}
    out = {}
    problems: list[Problem] = []
    for host in loaded.spec.hosts:
        sliced = host_spec(loaded.spec, host)
        if sliced.services or any(e.redis for e in sliced.external_units.values()):
            # a host running only external units the tree does not configure has nothing to install
            folder = f"{base}/{host}" if base else host
            try:
                out[folder] = _build_slice(spec_dir, loaded, sliced, templates_dir, f"build/{folder}", host)
            except SpecError as exc:
                problems += exc.problems
    if problems:
        raise SpecError(problems)
    folders = {host: f"{base}/{host}".lstrip("/") for host in loaded.spec.hosts}
    trees = {host: f"build/{folder}" for host, folder in folders.items() if folder in out}
    overview = f"{base}/hosts.md".lstrip("/")
    plans = {host: out[folders[host]].plan for host in trees}
    delivery = ansible_files(loaded.spec, env, plans, templates_dir)
    ansible_dir = f"build/{base}/{ANSIBLE_DIR}".replace("//", "/")
    text = render_hosts(loaded.spec, trees, templates_dir, env, ansible_dir, SETTLE_SEC)
    return out, {overview: text, **delivery}


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
    """Everything build/ holds for ``spec_dir``: the spec's tree; or one per environment
    (``env/<name>.yaml``, :mod:`generator.environments`) under ``build/<env>/``; and within an
    environment with ``hosts``, one per host under ``build/<env>/<host>/`` (:mod:`generator.hosts`).
    Several trees get one manifest on top listing every installed file.

    Raises :class:`SpecError` with the problems of every environment that has any, like :func:`build`.
    """
    envs: list[str | None] = [*environment_names(spec_dir)] or [None]
    builds: dict[str, Build] = {}
    extra: dict[str, str] = {}
    problems: list[Problem] = []
    for env in envs:
        try:
            trees, more = _slices(spec_dir, templates_dir, env)
            builds |= trees
            extra |= more
        except SpecError as exc:
            problems += exc.problems
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))
    if list(builds) == [""]:
        single = builds[""]
        return Tree(single.files, {None: single}, single.warnings)
    files = {f"{folder}/{path}": text for folder, b in builds.items() for path, text in b.files.items()} | extra
    files[MANIFEST] = combined_manifest({folder: b.plan for folder, b in builds.items()})
    warnings = list(dict.fromkeys(w for b in builds.values() for w in b.warnings))
    return Tree(files, {folder: b for folder, b in builds.items()}, warnings)


def build_files(spec_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """The full content of build/ for ``spec_dir`` as ``{path: text}`` (see :func:`build_tree`)."""
    return build_tree(spec_dir, templates_dir).files


def app_inputs(tree: Tree, spec_dir: Path) -> tuple[list[Path], list[Path]]:
    """What the lint of every build of ``tree`` read of the app: each ``project.source`` as
    the spec names it (``spec_dir / source``, unresolved: a symlink on the way may be
    repointed), and the files and folders consulted below where it led
    (:func:`generator.lint.source_inputs`)."""
    roots: list[Path] = []
    paths: list[Path] = []
    for b in tree.builds.values():
        if b.plan.spec.project.source:
            roots.append(spec_dir / b.plan.spec.project.source)
            paths += source_inputs(b.plan, roots[-1].resolve())
    return list(dict.fromkeys(roots)), list(dict.fromkeys(paths))


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
