"""The ``zachot-gen`` command: thin click commands over the public API.

Exit codes: 0 success / up to date / valid; 1 build/ differs from the spec (``check``) or
a real tool found a problem (``validate``); 2 a mistake in the spec, a template, the
command line, or a missing tool.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from . import check as check_tree
from . import render_to
from .environment import TEMPLATES_DIR
from .errors import GeneratorError, Problem, SpecError
from .realtools import ToolMissing
from .validate import validate as validate_tree

__all__ = ["main"]

EXIT_OK, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2

F = TypeVar("F", bound=Callable[..., Any])


def _path_option(flag: str, dest: str, default: Path, help: str) -> Callable[[F], F]:
    return click.option(flag, dest, type=click.Path(path_type=Path), default=default, show_default=True, help=help)


_spec_opt = _path_option("--spec", "spec_dir", Path("spec"), "Folder of spec YAML files.")
_build_opt = _path_option("--build", "build_dir", Path("build"), "The deploy tree to write or check.")
_templates_opt = _path_option("--templates", "templates_dir", TEMPLATES_DIR, "Templates folder.")


def _fail(exc: GeneratorError, wrote: bool = False) -> None:
    if isinstance(exc, SpecError):
        for problem in exc.problems:
            click.echo(str(problem), err=True)
        tail = "; nothing written" if wrote else ""
        click.echo(f"zachot-gen: {len(exc.problems)} error(s) in the spec{tail}", err=True)
    else:
        click.echo(f"zachot-gen: error: {exc}", err=True)
    sys.exit(EXIT_ERROR)


def _warn(warnings: list[Problem]) -> None:
    for problem in warnings:
        click.echo(str(problem), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="zachot-gen")
def main() -> None:
    """Render, check and validate the zachot deploy tree from spec/.

    Exit codes: 0 ok; 1 build/ out of date (check) or a real tool found a problem
    (validate); 2 a spec, lint or template error, a usage error, or a missing tool.
    """


@main.command()
@_spec_opt
@_build_opt
@_templates_opt
def render(spec_dir: Path, build_dir: Path, templates_dir: Path) -> None:
    """Render spec/ into build/ (replaces the whole folder atomically).

    The folder must be empty, absent, or a tree zachot-gen wrote (it holds manifest.tsv).
    Exit 0 written, 2 on a spec/lint/template error (nothing written).
    """
    try:
        result = render_to(spec_dir, build_dir, templates_dir)
    except GeneratorError as exc:
        _fail(exc, wrote=True)
    _warn(result.warnings)
    click.echo(f"zachot-gen: wrote {len(result.files)} files to {build_dir}/")


@main.command()
@_spec_opt
@_build_opt
@_templates_opt
def check(spec_dir: Path, build_dir: Path, templates_dir: Path) -> None:
    """Compare build/ with a fresh render of spec/ (writes nothing).

    Exit 0 identical, 1 changed/missing/stale files (with unified diffs), 2 on a spec error.
    """
    try:
        drift = check_tree(spec_dir, build_dir, templates_dir)
    except GeneratorError as exc:
        _fail(exc)
    if not drift:
        click.echo(f"zachot-gen: {build_dir}/ is up to date")
        return
    for kind, paths in (("changed", drift.changed), ("missing", drift.missing), ("stale", drift.stale)):
        for path in paths:
            click.echo(f"{kind}: {build_dir}/{path}")
    for text in drift.diffs.values():
        click.echo(text, nl=False)
    click.echo(f"zachot-gen: {build_dir}/ is out of date; run 'zachot-gen render'", err=True)
    sys.exit(EXIT_DRIFT)


@main.command()
@_spec_opt
@_templates_opt
def validate(spec_dir: Path, templates_dir: Path) -> None:
    """Run the real tools on a fresh render (build/ is not read).

    systemd-analyze verify and security --offline=true, logrotate -d, and logrotate -f on
    simulated days in a sandbox. Exit 0 when every tool agrees, 1 when one reports a
    problem, 2 on a spec error or a missing tool.
    """
    try:
        report = validate_tree(spec_dir, templates_dir)
    except GeneratorError as exc:
        _fail(exc)
    except ToolMissing as exc:
        click.echo(f"zachot-gen: error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    for line in report.checked:
        click.echo(f"checked  {line}")
    for unit, score in sorted(report.exposure.items()):
        click.echo(f"exposure {unit}: {score} (systemd-analyze security --offline=true)")
    for finding in report.findings:
        click.echo(f"FAIL     {finding}", err=True)
    if report.findings:
        click.echo(f"zachot-gen: {len(report.findings)} problem(s) found by the real tools", err=True)
        sys.exit(EXIT_DRIFT)
    click.echo("zachot-gen: validate passed")
