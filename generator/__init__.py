"""zachot-gen: render the zachot deploy tree (systemd units, logrotate files, healthcheck
wiring, ops docs) from the YAML spec, and check that a committed tree still matches it.

Data flows one way: ``load_spec`` (YAML -> :class:`Spec`) -> ``plan`` (artifacts) ->
``render`` (``{path: text}``) -> ``write`` (build/) or ``diff`` (drift).
"""

from __future__ import annotations

from pathlib import Path

from .environment import TEMPLATES_DIR
from .errors import GeneratorError, OutputError, SpecError, TemplateError
from .loader import load_spec
from .models import Spec
from .output import Drift, diff, write
from .planner import Plan, plan
from .renderer import render

__all__ = [
    "Drift", "GeneratorError", "OutputError", "Plan", "Spec", "SpecError", "TemplateError",
    "build_files", "check", "diff", "load_spec", "plan", "render", "render_to", "write",
]


def build_files(spec_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """Load, plan and render ``spec_dir``: the full content of build/ as ``{path: text}``.

    Raises :class:`SpecError` or :class:`TemplateError`; touches no file but reads.
    """
    return render(plan(load_spec(spec_dir)), templates_dir)


def render_to(spec_dir: Path, build_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """Render ``spec_dir`` and replace ``build_dir`` with the result, atomically.

    Output: the files written. Raises :class:`GeneratorError` subclasses; on any error
    ``build_dir`` is left as it was.
    """
    files = build_files(spec_dir, templates_dir)
    write(build_dir, files)
    return files


def check(spec_dir: Path, build_dir: Path, templates_dir: Path = TEMPLATES_DIR) -> Drift:
    """Render ``spec_dir`` in memory and compare with ``build_dir``; returns the :class:`Drift`.

    Raises :class:`SpecError` or :class:`TemplateError`; writes nothing.
    """
    return diff(build_dir, build_files(spec_dir, templates_dir))
