"""`zachot-gen render` writes build/ atomically; `zachot-gen check` names every drift."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, run_cli, tree_bytes

from generator import build_files, check

UNIT = "root/etc/systemd/system/zachot-api.service"


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A build/ rendered from the repo's spec by the real CLI."""
    build = tmp_path / "build"
    result = run_cli("render", "--spec", REPO / "spec", "--build", build)
    assert result.returncode == 0, result.stderr
    return build


def test_committed_build_matches_spec() -> None:
    drift = check(REPO / "spec", REPO / "build")
    assert not drift, f"build/ is out of date: {drift.changed + drift.missing + drift.stale}; run 'make render'"


def test_render_writes_exactly_the_rendered_files(built: Path) -> None:
    assert tree_bytes(built) == {k: v.encode() for k, v in build_files(REPO / "spec").items()}


def test_check_passes_on_a_fresh_render(built: Path) -> None:
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "up to date" in result.stdout


def test_check_names_a_hand_edit_with_a_diff(built: Path) -> None:
    unit = built / UNIT
    unit.write_text(unit.read_text().replace("RestartSec=5", "RestartSec=1"))
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"changed: {built}/{UNIT}" in result.stdout
    assert "-RestartSec=1" in result.stdout and "+RestartSec=5" in result.stdout


def test_check_names_a_missing_file(built: Path) -> None:
    (built / "docs" / "failure_matrix.md").unlink()
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"missing: {built}/docs/failure_matrix.md" in result.stdout


def test_check_names_a_stale_file(built: Path) -> None:
    (built / "root/etc/systemd/system/zachot-old.service").write_text("[Unit]\n")
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"stale: {built}/root/etc/systemd/system/zachot-old.service" in result.stdout


def test_check_treats_a_planted_symlink_as_changed(built: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text((built / UNIT).read_text())
    (built / UNIT).unlink()
    os.symlink(target, built / UNIT)
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"changed: {built}/{UNIT}" in result.stdout


def test_render_removes_stale_files_and_never_writes_through_symlinks(built: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me\n")
    (built / "stale.txt").write_text("old\n")
    (built / UNIT).unlink()
    os.symlink(outside, built / UNIT)
    result = run_cli("render", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 0, result.stderr
    assert not (built / "stale.txt").exists()
    assert not (built / UNIT).is_symlink()
    assert outside.read_text() == "keep me\n"
    assert run_cli("check", "--spec", REPO / "spec", "--build", built).returncode == 0


def test_render_refuses_a_symlinked_build_dir(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "precious").write_text("x")
    link = tmp_path / "build"
    link.symlink_to(real)
    result = run_cli("render", "--spec", REPO / "spec", "--build", link)
    assert result.returncode == 2
    assert "not a plain directory" in result.stderr
    assert (real / "precious").read_text() == "x"


def test_a_bad_spec_leaves_build_untouched(built: Path, zachot_spec: Path) -> None:
    before = tree_bytes(built)
    mtimes = {p: p.stat().st_mtime_ns for p in built.rglob("*")}
    services = zachot_spec / "services.yaml"
    services.write_text(services.read_text().replace("port: 8000", "port: eight thousand"))
    result = run_cli("render", "--spec", zachot_spec, "--build", built)
    assert result.returncode == 2
    assert "spec/services.yaml:" in result.stderr and "services.api.runner.port" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_bytes(built) == before
    assert {p: p.stat().st_mtime_ns for p in built.rglob("*")} == mtimes


def test_no_leftover_temporary_trees(built: Path) -> None:
    assert run_cli("render", "--spec", REPO / "spec", "--build", built).returncode == 0
    assert sorted(p.name for p in built.parent.iterdir()) == ["build"]


def test_restart_delay_edit_changes_unit_and_matrix_together(zachot_spec: Path) -> None:
    before = build_files(zachot_spec)
    services = zachot_spec / "services.yaml"
    text = services.read_text()
    assert text.count("delay_sec: 5\n") == 1
    services.write_text(text.replace("delay_sec: 5\n", "delay_sec: 7\n"))
    after = build_files(zachot_spec)
    changed = {p for p in after if after[p] != before[p]}
    assert changed == {UNIT, "docs/failure_matrix.md", "docs/README.md"}
    assert "RestartSec=7\n" in after[UNIT]
    api_rows = after["docs/failure_matrix.md"].split("## API")[1].split("## Worker")[0]
    assert "Перезапуск через 7 с (Restart=on-failure, RestartSec=7s)" in api_rows
    assert "через 5 с" not in api_rows


def test_copy_of_build_checks_clean_anywhere(tmp_path: Path) -> None:
    """No absolute local path or timestamp leaks into build/: a copy elsewhere still checks clean."""
    copy = tmp_path / "b"
    shutil.copytree(REPO / "build", copy)
    assert not check(REPO / "spec", copy)
    for text in build_files(REPO / "spec").values():
        assert str(REPO) not in text


def test_render_refuses_to_replace_a_foreign_folder(tmp_path: Path) -> None:
    precious = tmp_path / "mine"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep\n")
    result = run_cli("render", "--spec", REPO / "spec", "--build", precious)
    assert result.returncode == 2
    assert "is not a tree zachot-gen wrote" in result.stderr
    assert (precious / "notes.txt").read_text() == "keep\n"


def test_disk_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        result = run_cli("render", "--spec", REPO / "spec", "--build", ro / "sub" / "build")
    finally:
        ro.chmod(0o755)
    if os.geteuid() == 0:  # root ignores the mode: use a read-only mount point instead
        result = run_cli("render", "--spec", REPO / "spec", "--build", "/proc/zachot-build")
    assert result.returncode == 2, result.stderr
    assert "zachot-gen: error: cannot write" in result.stderr and "Traceback" not in result.stderr


def test_concurrent_renders_into_one_folder_all_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys

    build = tmp_path / "build"
    cmd = [sys.executable, "-c", "from generator.cli import main; main()", "render", "--spec", str(REPO / "spec"),
           "--build", str(build)]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert not check(REPO / "spec", build)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]


@pytest.mark.slow
def test_pip_install_of_the_checkout_leaves_build_alone(tmp_path: Path) -> None:
    """The install runbook's `pip install <checkout>` builds the package in the checkout; by
    default setuptools writes build/lib and build/bdist.* there, into zachot-gen's output, and
    `zachot-gen check` on the server's checkout then reports them (setup.cfg moves them)."""
    src = tmp_path / "repo"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, tracked.decode().split("\0")):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    before = tree_bytes(src / "build")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path / "wheels"),
                    str(src)], check=True, timeout=300)
    assert list((tmp_path / "wheels").glob("zachot_gen-*.whl")), "no wheel built"
    after = tree_bytes(src / "build")
    assert sorted(after) == sorted(before), f"pip wrote into build/: {sorted(set(after) - set(before))}"
    result = run_cli("check", "--spec", src / "spec", "--build", src / "build")
    assert result.returncode == 0, result.stdout + result.stderr
