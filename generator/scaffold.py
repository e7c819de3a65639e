"""``zachot-gen init``: the first spec of a new project, one that renders and validates as written.

The text comes from ``templates/init/spec.yaml.j2`` (comments name the next fields to fill);
free-text values are written as JSON strings, which YAML 1.2 reads back unchanged. The spec is
loaded and linted before anything is written, so a name the rules refuse (a reserved account,
a bad app reference) is a located error and the folder is left as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .environment import TEMPLATES_DIR, make_environment
from .errors import Location, OutputError, Problem, SpecError
from .pipeline import build
from .schema import spec_file_schema
from .spectypes import LINE_BREAKING, NAME_RE

__all__ = ["SPEC_FILE", "init_spec"]

SPEC_FILE = "spec.yaml"
"""The one file init writes, beside ``.schema.json``."""


def _moved(problem: Problem, stage: Path, spec_dir: Path) -> Problem:
    loc = problem.location
    mine = Path(loc.file).resolve().parent == stage.resolve()
    file = str(spec_dir / Path(loc.file).name) if mine else loc.file
    return Problem(Location(file, loc.line, loc.column), problem.path, problem.message)


def init_spec(
    spec_dir: Path,
    name: str,
    *,
    title: str | None = None,
    language: str = "en",
    app: str | None = None,
    repo_url: str | None = None,
    templates_dir: Path = TEMPLATES_DIR,
) -> list[Path]:
    """Write a minimal spec for project ``name`` into ``spec_dir``; returns the files written.

    Inputs: a folder that is absent or empty, the project name (``[a-z][a-z0-9_-]*``), and
    optionally the docs' title, their language (``en``/``ru``), the ASGI app (default
    ``<name>.main:app``) and the repository URL. Raises :class:`OutputError` for a folder
    that holds files or a bad name, :class:`SpecError` when the written spec would not load
    (located in the would-be file); nothing is written then.
    """
    if spec_dir.is_symlink() or (spec_dir.exists() and not spec_dir.is_dir()):
        raise OutputError(f"{spec_dir} is a file or a link, not a folder; init writes only into an empty or new folder")
    if spec_dir.exists() and any(spec_dir.iterdir()):
        where = str(spec_dir).rstrip("/") + "/"
        raise OutputError(f"{where} already holds files; init writes only into an empty or new folder")
    for option, value in (("--title", title), ("--app", app), ("--repo-url", repo_url)):
        if value is not None and LINE_BREAKING.search(value):
            raise OutputError(f"{option}: one line without control characters, please")
    if not NAME_RE.fullmatch(name):
        raise OutputError(f"project name {name!r}: use lowercase letters, digits, '-' and '_', starting with a letter")
    if language not in ("en", "ru"):
        raise OutputError(f"language {language!r}: the docs come in 'en' or 'ru'")
    title = title or name
    text = make_environment(templates_dir).get_template("init/spec.yaml.j2").render(
        name=name,
        title=json.dumps(title, ensure_ascii=False),
        language=language,
        app=json.dumps(app or f"{name.replace('-', '_')}.main:app"),
        repo_url=json.dumps(repo_url or f"https://git.example.com/{name}"),
        description=json.dumps(f"{title} API (uvicorn)", ensure_ascii=False),
    )
    parent = spec_dir.resolve().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=".zachot-init-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot create {spec_dir}: {exc.strerror} ({exc.filename})") from None
    try:
        (stage / SPEC_FILE).write_text(text)
        (stage / ".schema.json").write_text(json.dumps(spec_file_schema(), indent=2, ensure_ascii=False) + "\n")
        try:
            build(stage, templates_dir)  # loads, lints and renders in memory
        except SpecError as exc:  # name the file the user will look for, not the staging copy
            head = Problem(Location(str(spec_dir / SPEC_FILE), 1, 1), "", "the spec init would write is refused "
                           "(nothing written); change the --name/--title/--app/--repo-url values:")
            raise SpecError([head, *(_moved(pr, stage, spec_dir) for pr in exc.problems)]) from None
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(stage, 0o777 & ~umask)  # mkdtemp made it 0700; a spec folder is an ordinary folder
        if spec_dir.exists():
            spec_dir.rmdir()  # empty, checked above
        os.replace(stage, spec_dir)
    except OSError as exc:
        shutil.rmtree(stage, ignore_errors=True)
        raise OutputError(f"cannot create {spec_dir}: {exc.strerror}") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return [spec_dir / SPEC_FILE, spec_dir / ".schema.json"]
