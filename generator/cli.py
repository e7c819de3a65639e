"""The ``zachot-gen`` command: thin click commands over the public API.

Exit codes: 0 success / up to date / valid; 1 build/ differs from the spec (``check``) or
a real tool found a problem (``validate``); 2 a mistake in the spec, a template, the
command line, or a missing tool.
"""

from __future__ import annotations

import contextlib
import json
import shlex
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from . import checkcache, treeid
from .errors import GeneratorError, Problem, SpecError
from .layout import MANIFEST, TEMPLATES_DIR

# Each command imports what it runs when it runs: `--help`, and a `check` answered from its
# record (generator/checkcache.py), load neither pydantic nor Jinja.

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


class _Stopped(Exception):
    """A signal asked the command to stop (:func:`_raise_on_signals`)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum


@contextlib.contextmanager
def _raise_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`_Stopped`, as Ctrl-C raises KeyboardInterrupt, so that
    every ``with`` on the way out runs: validate's scratch folder is removed and a running tool
    is killed (``subprocess.run`` kills its child on any exception) instead of both being left
    behind. The previous handlers are put back after."""
    def stop(signum: int, frame: object) -> None:
        raise _Stopped(signum)

    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _os_error_text(exc: OSError) -> str:
    """One line for ``exc``: a ``shutil.Error`` of a copy carries one entry per file it failed."""
    failed = exc.args[0] if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) else []
    if failed and len(failed[0]) == 3:
        return str(failed[0][2]) + (f" (and {len(failed) - 1} more files)" if len(failed) > 1 else "")
    return str(exc)


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

    The folder must be empty, absent, or a tree zachot-gen wrote (its manifest.tsv starts
    with the zachot-gen header line and matches its sha256). Exit 0 written, 2 on a
    spec/lint/template error or a foreign folder (nothing written).
    """
    from .pipeline import render_to

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

    Prints ``changed:``, ``missing:``, ``stale:`` (files, and folders holding no rendered
    file), ``mode:`` (a file not at 0644) lines, then unified diffs. Exit 0 identical, 1
    drift, 2 on a spec error.
    """
    if checkcache.is_up_to_date(spec_dir, build_dir, templates_dir):
        click.echo(f"zachot-gen: {build_dir}/ is up to date")
        return
    snapshot = checkcache.Snapshot(spec_dir, build_dir, templates_dir)
    from .output import FILE_MODE, diff
    from .pipeline import app_inputs, build_tree

    try:
        tree = build_tree(spec_dir, templates_dir)
        drift = diff(build_dir, tree.files, marker=MANIFEST)
    except GeneratorError as exc:
        _fail(exc)
    if not drift:
        try:
            snapshot.record_up_to_date(*app_inputs(tree, spec_dir))
        except (OSError, RuntimeError):  # the app's path changed under the check: no record
            pass
        click.echo(f"zachot-gen: {build_dir}/ is up to date")
        return
    for kind, paths in (("changed", drift.changed), ("missing", drift.missing), ("stale", drift.stale)):
        for path in paths:
            click.echo(f"{kind}: {build_dir}/{path}")
    for folder in drift.stale_dirs:
        click.echo(f"stale: {build_dir}/{folder}/ (folder)")
    for path, mode in drift.modes:
        click.echo(f"mode: {build_dir}/{path} is {mode:04o}, want {FILE_MODE:04o}")
    for text in drift.diffs.values():
        click.echo(text, nl=False)
    why = treeid.problem(build_dir / MANIFEST) if build_dir.is_dir() and any(build_dir.iterdir()) else None
    if why is not None:  # render would refuse this folder: say what works
        click.echo(
            f"zachot-gen: {build_dir}/ is out of date, and render will not replace it: its {MANIFEST} {why}; "
            f"if it is a zachot-gen tree, run 'rm -r {shlex.quote(str(build_dir))}' and 'zachot-gen render'",
            err=True,
        )
    else:
        click.echo(f"zachot-gen: {build_dir}/ is out of date; run 'zachot-gen render'", err=True)
    sys.exit(EXIT_DRIFT)


@main.command()
@_spec_opt
@_templates_opt
def validate(spec_dir: Path, templates_dir: Path) -> None:
    """Run the real tools on a fresh render (build/ is not read).

    systemd-analyze verify and security --offline=true, logrotate -d, and logrotate -f on
    simulated days in a sandbox. Exit 0 when every tool agrees, 1 when one reports a
    problem, 2 on a spec error, a missing tool or no room for the scratch; 128 + the signal's
    number when stopped by SIGINT, SIGTERM or SIGHUP (the scratch is removed first).
    """
    from .realtools import ToolMissing
    from .scratch import ScratchError
    from .validate import validate as validate_tree

    try:
        with _raise_on_signals():
            report = validate_tree(spec_dir, templates_dir)
    except GeneratorError as exc:
        _fail(exc)
    except (ToolMissing, ScratchError) as exc:
        click.echo(f"zachot-gen: error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    except OSError as exc:  # the scratch's filesystem filled up, most likely
        text = _os_error_text(exc)
        hint = "; set TMPDIR to a folder with more room" if "No space left" in text else ""
        click.echo(f"zachot-gen: error: {text}; validate's scratch folder is removed{hint}", err=True)
        sys.exit(EXIT_ERROR)
    except (_Stopped, KeyboardInterrupt) as exc:
        signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
        click.echo(f"zachot-gen: validate stopped by {signal.Signals(signum).name}; its scratch folder is removed",
                   err=True)
        sys.exit(128 + signum)
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


@main.command()
@_spec_opt
@click.option("--name", required=True, help="Project name: names the units, the user, the folders.")
@click.option("--title", default=None, help="Human name in the docs (default: the name).")
@click.option("--language", type=click.Choice(["en", "ru"]), default="en", show_default=True, help="Docs language.")
@click.option("--app", default=None, help="ASGI app as module:attribute (default: <name>.main:app).")
@click.option("--repo-url", default=None, help="Where the code lives (the runbook clones it).")
def init(spec_dir: Path, name: str, title: str | None, language: str, app: str | None, repo_url: str | None) -> None:
    """Write a first spec for a new project into an empty or new spec/ folder.

    One ASGI app under uvicorn logging to the journal, the JSON Schema beside it; it renders
    and validates as written, and its comments name the fields to fill next. Exit 0 written,
    2 when the folder holds files or a value is refused (nothing written).
    """
    from .scaffold import init_spec

    try:
        written = init_spec(spec_dir, name, title=title, language=language, app=app, repo_url=repo_url)
    except GeneratorError as exc:
        _fail(exc)
    click.echo(f"zachot-gen: wrote {', '.join(map(str, written))}; next: zachot-gen render --spec {spec_dir}")


@main.command()
@_spec_opt
@click.option("--env", "env", default=None, help="The environment (spec/env/<name>.yaml); default: the base spec.")
def config(spec_dir: Path, env: str | None) -> None:
    """Print the spec as an environment sees it: the base deep-merged with env/<name>.yaml.

    YAML, keys in the order written; an example of a ``secret: true`` variable is shown as
    ``<secret>``. The spec is validated first. Exit 0, 2 on a spec error or an unknown environment.
    """
    from .environments import dump_config, read_environment, shown_config
    from .loader import validate_source
    from .yamlsource import read_spec_dir

    try:
        source = read_spec_dir(spec_dir) if env is None else read_environment(spec_dir, env)
        validate_source(source)
    except GeneratorError as exc:
        _fail(exc)
    click.echo(dump_config(shown_config(source.data)), nl=False)


@main.command()
def schema() -> None:
    """Print the JSON Schema of a spec file (draft 2020-12, field docs included).

    Save it (e.g. ``zachot-gen schema > spec/.schema.json``) and put
    ``# yaml-language-server: $schema=.schema.json`` on the first line of each spec file for
    completion and hover docs in editors. Exit 0.
    """
    from .schema import spec_file_schema

    click.echo(json.dumps(spec_file_schema(), indent=2, ensure_ascii=False))


@main.command()
@_spec_opt
def facts(spec_dir: Path) -> None:
    """List every ``${name}`` spec prose may quote, with its value for this spec.

    One fact per line: ``${name}`` then its value. Exit 0, 2 on a spec error.
    """
    from .facts import facts_of
    from .loader import load

    try:
        values = facts_of(load(spec_dir).spec)
    except GeneratorError as exc:
        _fail(exc)
    width = max(len(name) for name in values) + 3
    for name in sorted(values):
        click.echo(f"{'${' + name + '}':<{width}} {values[name]}")
