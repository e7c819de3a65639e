"""zachot-gen: render the zachot deploy tree (systemd units, logrotate files, healthcheck
wiring, ops docs) from the YAML spec, and check that a committed tree still matches it.

Data flows one way: ``load_spec`` (YAML -> :class:`Spec`) -> ``plan`` (artifacts) ->
``render`` (``{path: text}``) -> ``write`` (build/) or ``diff`` (drift); :mod:`generator.pipeline`
runs it. The public names below are imported on first use (PEP 562 module ``__getattr__``):
a ``zachot-gen check`` whose inputs did not change (:mod:`generator.checkcache`) answers
without loading pydantic, Jinja or the spec models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import GeneratorError, OutputError, SpecError, TemplateError
    from .loader import load_spec
    from .models import Spec
    from .output import Drift, diff, write
    from .pipeline import Build, Tree, build, build_files, build_tree, check, render_to
    from .planner import Plan, plan
    from .renderer import render

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

_HOME = {
    **dict.fromkeys(("GeneratorError", "OutputError", "SpecError", "TemplateError"), "errors"),
    **dict.fromkeys(("Build", "Tree", "build", "build_files", "build_tree", "check", "render_to"), "pipeline"),
    **dict.fromkeys(("Drift", "diff", "write"), "output"),
    **dict.fromkeys(("Plan", "plan"), "planner"),
    "Spec": "models",
    "load_spec": "loader",
    "render": "renderer",
}
"""The module each public name lives in."""


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for; AttributeError
    for any other (``from generator import layout`` then imports the submodule, as usual)."""
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value
