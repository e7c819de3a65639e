"""Shared fixtures: the repo's spec and fixture specs, copied where a test may change them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO


@pytest.fixture
def zachot_spec(tmp_path: Path) -> Path:
    """A private copy of the repo's spec/ folder (tmp_path/spec)."""
    dst = tmp_path / "spec"
    shutil.copytree(REPO / "spec", dst)
    project = dst / "project.yaml"
    project.write_text(project.read_text().replace("  source: ..\n", f"  source: {REPO}\n"))  # the app stays here
    return dst


@pytest.fixture(autouse=True, scope="session")
def _private_check_records(tmp_path_factory: pytest.TempPathFactory) -> None:
    """``zachot-gen check`` records clean checks under $XDG_CACHE_HOME (generator/checkcache.py):
    the tests' records go to a folder of their own, never the user's ~/.cache."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
