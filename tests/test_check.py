"""`zachot-gen render` writes build/ atomically; `zachot-gen check` names every drift."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, SPEC_CASES, run_cli, tree_bytes

from generator import build_files, check, diff

TREE = "staging/"
"""The repo spec's one-server environment (spec/env/staging.yaml): its tree is build/staging/."""
UNIT = f"{TREE}root/etc/systemd/system/zachot-api.service"


@pytest.fixture
def built(tmp_path: Path) -> Path:
    """A build/ rendered from the repo's spec by the real CLI."""
    build = tmp_path / "build"
    result = run_cli("render", "--spec", REPO / "spec", "--build", build)
    assert result.returncode == 0, result.stderr
    return build


def test_committed_build_matches_spec() -> None:
    drift = check(REPO / "spec", REPO / "build")
    assert not drift, (
        f"build/ is out of date: {drift.changed + drift.missing + drift.stale}, folders {drift.stale_dirs}, "
        f"modes {drift.modes}; run 'make render'"
    )


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
    (built / TREE / "docs" / "failure_matrix.md").unlink()
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"missing: {built}/{TREE}docs/failure_matrix.md" in result.stdout


def test_check_names_a_stale_file(built: Path) -> None:
    (built / TREE / "root/etc/systemd/system/zachot-old.service").write_text("[Unit]\n")
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"stale: {built}/{TREE}root/etc/systemd/system/zachot-old.service" in result.stdout


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
    api_trees = (TREE, "production/api1/", "production/api2/")  # every tree that runs the API
    assert changed == {f"{t}{p}" for t in api_trees
                       for p in ("root/etc/systemd/system/zachot-api.service", "docs/failure_matrix.md", "docs/README.md")}
    assert "RestartSec=7\n" in after[UNIT]
    api_rows = after[f"{TREE}docs/failure_matrix.md"].split("## API")[1].split("## Worker")[0]
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
    build = tmp_path / "build"
    cmd = [sys.executable, "-c", "from generator.cli import main; main()", "render", "--spec", str(REPO / "spec"),
           "--build", str(build)]
    procs = [subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert all(rc == 0 for rc, _ in results), results
    assert not check(REPO / "spec", build)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]


# --- A tree zachot-gen wrote is recognised by its manifest's header line, nothing else ------------

HEADER = "# zachot-gen tree; sha256 of the rows below: "


def _foreign_folder(tmp_path: Path, manifest: str) -> Path:
    folder = tmp_path / "photos"
    (folder / "2023").mkdir(parents=True)
    (folder / "2023" / "holiday.jpg").write_bytes(b"\xff\xd8precious")
    (folder / "manifest.tsv").write_text(manifest)
    return folder


def _refused_untouched(folder: Path, why: str) -> None:
    before = tree_bytes(folder)
    stamps = {p: (p.stat().st_mtime_ns, p.stat().st_mode) for p in folder.rglob("*")}
    beside = sorted(p.name for p in folder.parent.iterdir())
    result = run_cli("render", "--spec", REPO / "spec", "--build", folder)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "is not a tree zachot-gen wrote" in result.stderr and why in result.stderr, result.stderr
    assert f"rm -r {folder}" in result.stderr and "choose another --build" in result.stderr
    assert "Traceback" not in result.stderr
    assert tree_bytes(folder) == before
    assert {p: (p.stat().st_mtime_ns, p.stat().st_mode) for p in folder.rglob("*")} == stamps
    assert sorted(p.name for p in folder.parent.iterdir()) == beside  # no scratch tree left either


def test_render_refuses_a_foreign_folder_that_merely_holds_a_manifest_tsv(tmp_path: Path) -> None:
    folder = _foreign_folder(tmp_path, "file\tsize\n2023/holiday.jpg\t10\n")
    _refused_untouched(folder, "manifest.tsv has no zachot-gen header line")


def test_render_refuses_a_manifest_whose_header_digest_is_forged(tmp_path: Path) -> None:
    folder = _foreign_folder(tmp_path, HEADER + "0" * 64 + "\nfile\tsize\n2023/holiday.jpg\t10\n")
    _refused_untouched(folder, "do not match its sha256")


def test_render_refuses_a_zachot_tree_whose_manifest_rows_were_edited(built: Path) -> None:
    manifest = built / "manifest.tsv"
    manifest.write_text(manifest.read_text().replace("\troot\troot\t0644\n", "\troot\troot\t0600\n", 1))
    _refused_untouched(built, "do not match its sha256")


def test_render_refuses_a_folder_whose_manifest_is_a_symlink(built: Path, tmp_path: Path) -> None:
    real = tmp_path / "real.tsv"
    real.write_text((built / "manifest.tsv").read_text())
    (built / "manifest.tsv").unlink()
    (built / "manifest.tsv").symlink_to(real)
    _refused_untouched(built, "manifest.tsv is a symlink")


def test_manifest_header_is_the_sha256_of_the_rows_below(built: Path) -> None:
    first, _, body = (built / "manifest.tsv").read_text().partition("\n")
    assert first == HEADER + hashlib.sha256(body.encode()).hexdigest()
    assert body.startswith("build_path\tserver_path\towner\tgroup\tmode\n")


def test_a_rendered_tree_re_renders_and_keeps_its_mark(built: Path) -> None:
    (built / UNIT).write_text("hand edit\n")
    for _ in range(2):
        result = run_cli("render", "--spec", REPO / "spec", "--build", built)
        assert result.returncode == 0, result.stderr
    assert run_cli("check", "--spec", REPO / "spec", "--build", built).returncode == 0


def test_server_tests_read_the_manifest_rows_without_the_header(built: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO / "tests" / "server"))
    testserver = importlib.import_module("testserver")
    rows = testserver.read_manifest(built / "manifest.tsv")
    installed = [p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file() and "/root/" in p.as_posix()]
    assert sorted(r["build_path"] for r in rows) == sorted(installed)
    assert all(set(r) == {"build_path", "server_path", "owner", "group", "mode"} for r in rows)
    assert all(r["server_path"].startswith("/") and not r["build_path"].startswith("#") for r in rows)


def test_check_reports_a_manifest_without_a_valid_header_as_changed(tmp_path: Path) -> None:
    """Byte-equal to what the caller rendered, but not stamped: still not a tree zachot-gen wrote."""
    (tmp_path / "manifest.tsv").write_text("build_path\n")
    (tmp_path / "manifest.tsv").chmod(0o644)
    drift = diff(tmp_path, {"manifest.tsv": "build_path\n"}, marker="manifest.tsv")
    assert drift.changed == ["manifest.tsv"]
    assert not diff(tmp_path, {"manifest.tsv": "build_path\n"})


def test_check_on_a_tree_from_before_the_header_says_how_to_re_render(built: Path) -> None:
    manifest = built / "manifest.tsv"
    manifest.write_text(manifest.read_text().partition("\n")[2])  # as zachot-gen wrote it before the header
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"changed: {built}/manifest.tsv" in result.stdout
    assert "render will not replace it" in result.stderr and f"rm -r {built}" in result.stderr


# --- check compares file modes and reports folders holding no rendered file -----------------------


def test_render_writes_every_file_0644_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        result = run_cli("render", "--spec", REPO / "spec", "--build", tmp_path / "build")
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    modes = {p.relative_to(tmp_path).as_posix(): oct(stat.S_IMODE(p.stat().st_mode))
             for p in (tmp_path / "build").rglob("*") if p.is_file()}
    assert len(modes) == len(build_files(REPO / "spec"))
    assert set(modes.values()) == {"0o644"}, modes


@pytest.mark.parametrize("mode", [0o777, 0o4755, 0o2644, 0o1644, 0o755, 0o600], ids=lambda m: f"{m:04o}")
def test_check_names_a_file_whose_mode_changed(built: Path, mode: int) -> None:
    (built / UNIT).chmod(mode)
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1, result.stdout
    assert f"mode: {built}/{UNIT} is {mode:04o}, want 0644" in result.stdout
    assert "changed:" not in result.stdout and "up to date" not in result.stdout
    assert run_cli("render", "--spec", REPO / "spec", "--build", built).returncode == 0
    assert stat.S_IMODE((built / UNIT).stat().st_mode) == 0o644
    assert run_cli("check", "--spec", REPO / "spec", "--build", built).returncode == 0


def test_check_names_the_manifest_when_its_mode_changed(built: Path) -> None:
    (built / "manifest.tsv").chmod(0o4755)
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"mode: {built}/manifest.tsv is 4755, want 0644" in result.stdout


def test_check_names_an_empty_folder(built: Path) -> None:
    (built / "extra").mkdir()
    (built / TREE / "root/etc/empty/deeper").mkdir(parents=True)
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1, result.stdout
    assert f"stale: {built}/extra/ (folder)\n" in result.stdout
    assert f"stale: {built}/{TREE}root/etc/empty/ (folder)\n" in result.stdout
    assert "deeper" not in result.stdout  # the topmost folder names it
    assert run_cli("render", "--spec", REPO / "spec", "--build", built).returncode == 0
    assert not (built / "extra").exists()


def test_check_names_a_folder_holding_only_stale_files(built: Path) -> None:
    (built / "old").mkdir()
    (built / "old" / "x.conf").write_text("x\n")
    result = run_cli("check", "--spec", REPO / "spec", "--build", built)
    assert result.returncode == 1
    assert f"stale: {built}/old/ (folder)" in result.stdout and f"stale: {built}/old/x.conf" in result.stdout


def test_a_clone_made_under_umask_002_is_not_drift(built: Path) -> None:
    """git checks files out at 0666 & ~umask: 0664 under umask 002 is what a clone has."""
    for p in built.rglob("*"):
        if p.is_file():
            p.chmod(0o664)
    old = os.umask(0o002)
    try:
        under_002 = run_cli("check", "--spec", REPO / "spec", "--build", built)
    finally:
        os.umask(old)
    assert under_002.returncode == 0, under_002.stdout
    old = os.umask(0o022)
    try:
        under_022 = run_cli("check", "--spec", REPO / "spec", "--build", built)
    finally:
        os.umask(old)
    assert under_022.returncode == 1
    assert f"mode: {built}/{UNIT} is 0664, want 0644" in under_022.stdout


def test_render_removes_nothing_beside_build_but_its_own_scratch(tmp_path: Path) -> None:
    """Folders named like scratch trees (`.build.old-mine`) and a build name that is a glob
    (`*`) are left alone; only `.<name>.zachot-gen/`, marked as ours, is used and removed."""
    theirs = [tmp_path / ".build.old-mine", tmp_path / ".build.new-abcdefgh", tmp_path / ".xbuild.new-keep"]
    for folder in theirs:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine\n")
    for name in ("build", "*"):
        result = run_cli("render", "--spec", SPEC_CASES["single_api_en"], "--build", tmp_path / name)
        assert result.returncode == 0, result.stderr
    assert all((folder / "notes.txt").read_text() == "mine\n" for folder in theirs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["*", "build", *(f.name for f in theirs)])


def test_render_refuses_a_scratch_folder_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / ".build.zachot-gen").mkdir()
    (tmp_path / ".build.zachot-gen" / "keep.txt").write_text("mine\n")
    result = run_cli("render", "--spec", SPEC_CASES["single_api_en"], "--build", tmp_path / "build")
    assert result.returncode == 2
    assert "is not zachot-gen's scratch folder" in result.stderr
    assert (tmp_path / ".build.zachot-gen" / "keep.txt").read_text() == "mine\n"
