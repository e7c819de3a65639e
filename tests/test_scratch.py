"""Where validate's scratch goes (generator/scratch.py): /dev/shm when it is writable, exec and
has room, the user's TMPDIR when set, else the temporary folder. The mount flags are real: each
case mounts a tmpfs in a private mount namespace (unshare(1), root only) and asks there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO, run_cli

from generator import scratch

ASK = """
import sys
from pathlib import Path
from generator import scratch
scratch.SHM = Path(sys.argv[1])
print(scratch.scratch_parent(int(sys.argv[2])))
"""


def _ask_under_mount(tmp_path: Path, options: str, tree_bytes: int, env: dict[str, str] | None = None) -> str:
    """``scratch_parent(tree_bytes)`` with SHM on a fresh tmpfs mounted ``-o options``."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mounting a tmpfs in a private namespace needs root and unshare(1)")
    point = tmp_path / "shm"
    point.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o {options} none "$1" && exec "$2" -c "$3" "$1" "$4"'
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")} | (env or {})
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(point), sys.executable,
         ASK, str(tree_bytes)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env | {"PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_a_roomy_exec_tmpfs_is_chosen(tmp_path: Path) -> None:
    assert _ask_under_mount(tmp_path, "size=256m", 1000) == str(tmp_path / "shm")


def test_a_noexec_tmpfs_is_not_chosen(tmp_path: Path) -> None:
    """Docker mounts /dev/shm noexec: verify would find every program stub not executable."""
    assert _ask_under_mount(tmp_path, "size=256m,noexec", 1000) == "None"


def test_a_read_only_tmpfs_is_not_chosen(tmp_path: Path) -> None:
    assert _ask_under_mount(tmp_path, "size=256m,ro", 1000) == "None"


def test_a_tmpfs_short_of_room_for_the_tree_is_not_chosen(tmp_path: Path) -> None:
    """Docker's default /dev/shm is 64 MiB: a tree needing more than its free space goes to /tmp."""
    room = 256 << 20
    fits = (room - scratch.HEADROOM) // scratch.ROOM_FACTOR - (1 << 20)
    assert _ask_under_mount(tmp_path, "size=256m", fits) == str(tmp_path / "shm")
    assert _ask_under_mount(tmp_path, "size=256m", fits + (2 << 20)) == "None"


def test_the_users_tmpdir_wins(tmp_path: Path) -> None:
    assert _ask_under_mount(tmp_path, "size=256m", 1000, {"TMPDIR": str(tmp_path)}) == "None"


def test_a_scratch_root_may_lie_below_shm_or_the_temp_folder_only() -> None:
    assert scratch.SHM.resolve() in scratch.scratch_bases()
    assert Path("/") not in scratch.scratch_bases() and Path("/etc") not in scratch.scratch_bases()


def test_validate_leaves_nothing_in_its_scratch_folder() -> None:
    """Whichever folder it chose, a validate run removes what it wrote there."""
    def ours() -> set[str]:
        return {p.name for base in scratch.scratch_bases() if base.is_dir() for p in base.iterdir()
                if p.name.startswith("zachot-validate-")}

    before = ours()
    result = run_cli("validate", "--spec", REPO / "spec")
    assert result.returncode == 0, result.stderr
    assert ours() <= before
