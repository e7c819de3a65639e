"""Small helpers for tests that go through the public API and the CLI."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SPEC_CASES: dict[str, Path] = {
    "zachot": REPO / "spec",
    "single_api_en": REPO / "tests" / "fixtures" / "specs" / "single_api_en",
    "worker_split_group": REPO / "tests" / "fixtures" / "specs" / "worker_split_group",
    "gunicorn_command": REPO / "tests" / "fixtures" / "specs" / "gunicorn_command",
    "shared_logs": REPO / "tests" / "fixtures" / "specs" / "shared_logs",
    "journal_api": REPO / "tests" / "fixtures" / "specs" / "journal_api",
    "zachot_split": REPO / "tests" / "fixtures" / "specs" / "zachot_split",
    "bullseye_command": REPO / "tests" / "fixtures" / "specs" / "bullseye_command",
    "staged": REPO / "tests" / "fixtures" / "specs" / "staged",
    "fleet": REPO / "tests" / "fixtures" / "specs" / "fleet",
}
"""Spec folders rendered by the snapshot tests: the real one and fixtures of other shapes."""


def edited_spec(tmp_path: Path, case: str, *edits: tuple[str, str]) -> tuple[Path, str]:
    """A one-file copy of fixture ``case``'s spec.yaml under ``tmp_path/spec`` with each
    ``(old, new)`` replaced once; returns (the folder, the new text). Fails when an ``old`` is
    missing, so a stale case cannot pass by editing nothing."""
    text = (SPEC_CASES[case] / "spec.yaml").read_text()
    for old, new in edits:
        assert old in text, f"{old!r} not in {case}: update the case"
        text = text.replace(old, new, 1)
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "spec.yaml").write_text(text)
    return spec, text


def run_cli(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real ``zachot-gen`` entry point in a subprocess; returns the finished process."""
    cmd = [sys.executable, "-c", "from generator.cli import main; main()", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(cmd, cwd=cwd or REPO, env=env, capture_output=True, text=True, timeout=120)


def tree_bytes(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` as ``{relative path: bytes}`` (symlinks not followed)."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def line_of(text: str, needle: str) -> int:
    """1-based number of the first line of ``text`` containing ``needle``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in text")


def assert_render_refuses_at(tmp_path: Path, spec: Path, text: str, marker: str, path: str, message: str) -> None:
    """Render ``spec`` (whose spec.yaml holds ``text``) with the real CLI, run in ``tmp_path``, and
    assert the house rule for a spec mistake: exit 2, no traceback, nothing written, and an error
    at ``spec/spec.yaml:<line of marker>:`` naming ``path`` with a message matching ``message``."""
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "build").exists()
    line = line_of(text, marker)
    located = [ln for ln in result.stderr.splitlines() if ln.startswith(f"spec/spec.yaml:{line}:")]
    assert located, f"nothing at line {line}:\n{result.stderr}"
    assert any(f": {path}: " in ln and re.search(message, ln) for ln in located), result.stderr
