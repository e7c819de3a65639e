"""``zachot-gen check`` answers from its record (generator/checkcache.py) only while nothing the
record covers has changed: after a recorded clean check, every kind of change below must still
be found, by the full check, with the full check's own words and exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import REPO

from generator.checkcache import RACY_SEC, Snapshot
from generator.environment import TEMPLATES_DIR
from generator.layout import MANIFEST
from generator.output import diff
from generator.pipeline import app_inputs, build_tree


def _cli(tmp: Path, *args: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from generator.cli import main; main()", *map(str, args)]
    environ = {**os.environ, "PYTHONPATH": str(REPO), "XDG_CACHE_HOME": str(tmp / "cache")}
    environ.pop("ZACHOT_GEN_NO_CACHE", None)
    return subprocess.run(cmd, cwd=tmp, env=environ | env, capture_output=True, text=True, timeout=120)


def _records(tmp: Path) -> list[Path]:
    folder = tmp / "cache" / "zachot-gen" / "check"
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def _settle() -> None:
    """Let what was just written age past RACY_SEC: a check records nothing that changed status
    (ctime) in the two seconds before it began, and ctime cannot be set back."""
    time.sleep(RACY_SEC + 0.2)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The repo's spec, templates and app copied under ``tmp_path``, rendered into build/, and
    checked once: the clean check left its record."""
    shutil.copytree(REPO / "spec", tmp_path / "spec")
    shutil.copytree(REPO / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(TEMPLATES_DIR, tmp_path / "templates")
    assert _cli(tmp_path, "render", "--templates", "templates").returncode == 0
    _settle()
    first = _cli(tmp_path, "check", "--templates", "templates")
    assert (first.returncode, first.stdout) == (0, "zachot-gen: build/ is up to date\n"), first.stderr
    assert len(_records(tmp_path)) == 1
    return tmp_path


def _imports(stderr: str) -> set[str]:
    """Top-level modules named by ``python -X importtime`` lines."""
    return {ln.split("|")[-1].strip().split(".")[0] for ln in stderr.splitlines() if ln.startswith("import time:")}


def test_an_unchanged_tree_is_answered_without_loading_the_generator(project: Path) -> None:
    record = _records(project)[0].stat()
    again = _cli(project, "check", "--templates", "templates", PYTHONPROFILEIMPORTTIME="1")
    assert (again.returncode, again.stdout) == (0, "zachot-gen: build/ is up to date\n")
    assert not {"pydantic", "jinja2", "yaml"} & _imports(again.stderr)
    assert _records(project)[0].stat().st_ino == record.st_ino  # answered, not checked and recorded anew
    full = _cli(project, "check", "--templates", "templates", PYTHONPROFILEIMPORTTIME="1", ZACHOT_GEN_NO_CACHE="1")
    assert full.returncode == 0 and {"pydantic", "jinja2", "yaml"} <= _imports(full.stderr)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


CHANGES: dict[str, tuple[Callable[[Path], None], int, str]] = {
    "a spec value": (lambda p: _edit(p / "spec/services.yaml", "      timeout_sec: 90\n", "      timeout_sec: 95\n"),
                     1, "changed: build/"),
    "a template": (lambda p: _append(p / "templates/docs/README.md.j2", "One more line.\n"), 1, "changed: build/"),
    "a built file": (lambda p: _edit(p / "build/manifest.tsv", "\n", "\n# hand edit\n"), 1, "changed: build/manifest.tsv"),
    "a built file's mode": (lambda p: (p / "build/manifest.tsv").chmod(0o600), 1, "mode: build/manifest.tsv"),
    "a stray file in build/": (lambda p: (p / "build/extra.txt").write_text("x\n"), 1, "stale: build/extra.txt"),
    "an env read in the app": (lambda p: _append(p / "app/api.py", 'os.environ.get("UNDECLARED_X")\n'),
                               2, "reads UNDECLARED_X"),
    "a healthcheck script removed": (lambda p: (p / "app/healthchecks/redis_check.py").unlink(), 2, "does not exist"),
    "spec/env/ swapped for a symlink to its copy": (
        lambda p: (shutil.move(p / "spec/env", p / "env-copy"), (p / "spec/env").symlink_to(p / "env-copy")),
        2, "plain folder"),
}


@pytest.mark.parametrize("what", list(CHANGES))
def test_a_change_after_a_recorded_check_is_still_found(project: Path, what: str) -> None:
    change, code, words = CHANGES[what]
    change(project)
    found = _cli(project, "check", "--templates", "templates")
    assert found.returncode == code, found.stdout + found.stderr
    assert words in found.stdout + found.stderr


def test_no_record_without_the_cache_or_for_a_freshly_edited_app_file(tmp_path: Path, project: Path) -> None:
    for record in _records(project):
        record.unlink()
    assert _cli(project, "check", "--templates", "templates", ZACHOT_GEN_NO_CACHE="1").returncode == 0
    assert _records(project) == []
    (project / "app/api.py").touch()  # just now: lint may have read it before this edit landed
    assert _cli(project, "check", "--templates", "templates").returncode == 0
    assert _records(project) == []


def test_a_repointed_source_link_is_the_app_it_leads_to_now(project: Path) -> None:
    """project.source through a symlink (a release layout): after the link moves to an app
    that reads an undeclared variable, the check must lint that app, not answer from the record
    of the old one."""
    (project / "v1").mkdir()
    shutil.move(project / "app", project / "v1/app")
    shutil.copytree(project / "v1", project / "v2")
    (project / "v2/app/api.py").write_text((project / "v2/app/api.py").read_text() + 'os.getenv("UNDECLARED_Y")\n')
    (project / "current").symlink_to("v1")
    _edit(project / "spec/project.yaml", "  source: ..\n", "  source: ../current\n")
    _settle()
    for _ in range(2):
        assert _cli(project, "check", "--templates", "templates").returncode == 0
    assert len(_records(project)) == 1
    (project / "current").unlink()
    (project / "current").symlink_to("v2")
    found = _cli(project, "check", "--templates", "templates")
    assert found.returncode == 2 and "reads UNDECLARED_Y" in found.stderr


def test_a_fifo_in_the_spec_is_not_opened_and_records_stay_out_of_the_tree(project: Path) -> None:
    os.mkfifo(project / "spec/pipe")  # a reader would block forever
    assert _cli(project, "check", "--templates", "templates").returncode == 0
    inside = {"XDG_CACHE_HOME": str(project / "build/.cache")}
    for _ in range(2):
        checked = _cli(project, "check", "--templates", "templates", **inside)
        assert (checked.returncode, checked.stdout) == (0, "zachot-gen: build/ is up to date\n"), checked.stdout
    assert not (project / "build/.cache").exists()


def _snapshot_then(project: Path, spec: Path, during: Callable[[], None], monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A full check of ``spec`` in-process, as the CLI runs it, with ``during`` happening after
    lint read the app and before the record is written; returns the records there are then."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(project / "cache"))
    monkeypatch.chdir(project)
    for record in _records(project):
        record.unlink()
    build, templates = Path("build"), Path("templates")
    snapshot = Snapshot(spec, build, templates)
    tree = build_tree(spec, templates)
    assert not diff(build, tree.files, marker=MANIFEST)
    during()
    snapshot.record_up_to_date(*app_inputs(tree, spec))
    return _records(project)


def test_nothing_is_recorded_when_the_app_or_a_link_above_the_spec_changed_during_the_check(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two races a review staged with inotify: a healthcheck script outside the code lint
    scans deleted after lint found it, and a symlink above spec/ repointed and back."""
    (project / "scripts").mkdir()
    script = project / "scripts/redis_check.py"
    shutil.copy(project / "app/healthchecks/redis_check.py", script)
    _edit(project / "spec/healthchecks.yaml", "script: app/healthchecks/redis_check.py", "script: scripts/redis_check.py")
    _edit(project / "spec/project.yaml", "  source: ..\n", f"  source: {project}\n")
    for side in ("y", "z"):
        (project / side).mkdir()
        shutil.copytree(project / "spec", project / side / "spec")
    (project / "current").symlink_to("y")
    spec = Path("current/spec")
    assert _cli(project, "render", "--spec", spec, "--templates", "templates").returncode == 0
    _settle()
    assert len(_snapshot_then(project, spec, lambda: None, monkeypatch)) == 1  # undisturbed: recorded
    _settle()
    assert _snapshot_then(project, spec, script.unlink, monkeypatch) == []  # deleted after lint read it
    shutil.copy(project / "app/healthchecks/redis_check.py", script)
    _settle()

    def flip_and_back() -> None:
        for target in ("z", "y"):
            (project / "current.new").symlink_to(target)
            os.replace(project / "current.new", project / "current")

    assert _snapshot_then(project, spec, flip_and_back, monkeypatch) == []


def test_loops_fifos_and_linked_cache_folders_end_cleanly(project: Path) -> None:
    (project / "loop").symlink_to("loop")
    looped = _cli(project, "check", "--templates", "templates", "--build", "loop")
    assert looped.returncode == 2 and "Traceback" not in looped.stderr, looped.stderr
    os.mkfifo(project / "app/evil.py")  # lint's scan of the app must not block on it
    assert _cli(project, "check", "--templates", "templates").returncode == 0
    (project / "linked").mkdir()
    (project / "linked/zachot-gen").symlink_to(project / "build")  # the cache folder would be build/
    for _ in range(2):
        checked = _cli(project, "check", "--templates", "templates", XDG_CACHE_HOME=str(project / "linked"))
        assert checked.returncode == 0, checked.stdout
    assert sorted(p.name for p in (project / "build").iterdir()) == ["manifest.tsv", "production", "staging"]
