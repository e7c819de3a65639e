"""zachot-gen installed like any Python tool: a wheel built from a copy of the checkout,
installed into a fresh venv, renders outside the checkout exactly what build/ holds.

One wheel per module (building it takes a few seconds); the venv gets the generator's own
dependencies from the package index, never the app's stack (that is the ``app`` extra).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from helpers import REPO, tree_bytes

pytestmark = pytest.mark.slow


def _copy_tracked(dest: Path) -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)


@pytest.fixture(scope="module")
def wheel_and_checkout(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the copy of the checkout it was built from)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "repo"
    _copy_tracked(src)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp / "wheels"),
                    str(src)], check=True, timeout=300)
    wheels = list((tmp / "wheels").glob("zachot_gen-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0], src


@pytest.fixture(scope="module")
def installed(wheel_and_checkout: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed (no extras); returns its bin/ folder."""
    env_dir = tmp_path_factory.mktemp("venv") / "v"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run([bin_dir / "pip", "install", "--quiet", str(wheel_and_checkout[0])], check=True, timeout=600)
    return bin_dir


def test_pip_wheel_of_the_checkout_leaves_build_alone(wheel_and_checkout: tuple[Path, Path]) -> None:
    """The install runbook's `pip install <checkout>` builds the package in the checkout; by
    default setuptools writes build/lib and build/bdist.* there, into zachot-gen's output
    (setup.cfg moves them)."""
    _, src = wheel_and_checkout
    assert tree_bytes(src / "build") == tree_bytes(REPO / "build")
    assert not (src / "build" / "lib").exists()


def test_the_wheel_holds_every_module_template_and_catalog(wheel_and_checkout: tuple[Path, Path]) -> None:
    import zipfile

    names = set(zipfile.ZipFile(wheel_and_checkout[0]).namelist())
    tracked = subprocess.run(["git", "ls-files", "generator", "app", "templates"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    want = {("generator/" + rel if rel.startswith("templates/") else rel) for rel in tracked
            if not rel.endswith(".md")}
    assert want - names == set()


def test_installed_wheel_renders_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    """A folder holding only spec/ (and the app the spec's `source: ..` points at): render,
    check and the tree byte-identical to the checkout's build/."""
    project = tmp_path / "elsewhere"
    shutil.copytree(REPO / "spec", project / "spec")
    shutil.copytree(REPO / "app", project / "app", ignore=shutil.ignore_patterns("__pycache__"))
    render = subprocess.run([installed / "zachot-gen", "render"], cwd=project, capture_output=True, text=True,
                            timeout=120)
    assert render.returncode == 0, render.stdout + render.stderr
    assert tree_bytes(project / "build") == tree_bytes(REPO / "build")
    check = subprocess.run([installed / "zachot-gen", "check"], cwd=project, capture_output=True, text=True,
                           timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    where = subprocess.run([installed / "python", "-c", "import generator.environment as e; print(e.TEMPLATES_DIR)"],
                           cwd=project, capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(installed.parent)), where  # site-packages, not the checkout


def test_the_generator_install_brings_only_what_the_generator_uses(installed: Path) -> None:
    listed = subprocess.run([installed / "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            check=True).stdout.lower()
    names = {line.split("==")[0] for line in listed.split()}
    assert {"pydantic", "jinja2", "pyyaml", "click"} <= names
    assert not names & {"fastapi", "uvicorn", "dramatiq", "redis", "starlette"}, names
