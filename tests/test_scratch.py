"""Where validate's scratch goes (generator/scratch.py): /dev/shm when it is writable, exec and
has room, the user's TMPDIR when set, else the temporary folder. The mount flags are real: each
case mounts a tmpfs in a private mount namespace (unshare(1), root only) and asks there."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, run_cli

from generator import scratch

sys.path.insert(0, str(REPO))  # bench/ is a folder of the repo, not an installed package
from bench.synth import write_spec  # noqa: E402

ASK = """
import sys, tempfile
from pathlib import Path
from generator import scratch
scratch.SHM = Path(sys.argv[1])
if len(sys.argv) > 4:
    tempfile.tempdir = sys.argv[4]  # what gettempdir() says, as with TMPDIR unset
try:
    print(scratch.scratch_parent(int(sys.argv[2]), int(sys.argv[3])))
except scratch.ScratchError as exc:
    print("ScratchError:", exc)
"""


def _ask_under_mount(tmp_path: Path, options: str, tree_bytes: int, env: dict[str, str] | None = None,
                     trees: int = 1, tmp_options: str | None = None) -> str:
    """``scratch_parent(tree_bytes, trees)`` with SHM on a fresh tmpfs mounted ``-o options``
    (and with ``tmp_options``, the temporary folder on another one, as ``tempfile`` sees it)."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mounting a tmpfs in a private namespace needs root and unshare(1)")
    point, tmp = tmp_path / "shm", tmp_path / "tmp"
    point.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    script = f'mount -t tmpfs -o {options} none "$1"'
    if tmp_options:
        script += f' && mount -t tmpfs -o {tmp_options} none "$5"'
    script += ' && exec "$2" -c "$3" "$1" "$4" "$6" ${5:+"$5"}'
    env = {k: v for k, v in os.environ.items() if k not in ("TMPDIR", "TEMP", "TMP")} | (env or {})
    proc = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(point), sys.executable,
         ASK, str(tree_bytes), str(tmp) if tmp_options else "", str(trees)],
        capture_output=True, text=True, timeout=60, cwd=REPO, env=env | {"PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _fell_back(said: str, tmp_path: Path) -> bool:
    """The answer is the temporary folder's (not the tmpfs standing in for /dev/shm, no error)."""
    return said != str(tmp_path / "shm") and not said.startswith("ScratchError") and Path(said).is_dir()


def test_a_roomy_exec_tmpfs_is_chosen(tmp_path: Path) -> None:
    assert _ask_under_mount(tmp_path, "size=256m", 1000) == str(tmp_path / "shm")


def test_a_noexec_tmpfs_is_not_chosen(tmp_path: Path) -> None:
    """Docker mounts /dev/shm noexec: verify would find every program stub not executable."""
    assert _fell_back(_ask_under_mount(tmp_path, "size=256m,noexec", 1000), tmp_path)


def test_a_read_only_tmpfs_is_not_chosen(tmp_path: Path) -> None:
    assert _fell_back(_ask_under_mount(tmp_path, "size=256m,ro", 1000), tmp_path)


def test_a_tmpfs_short_of_room_for_the_tree_is_not_chosen(tmp_path: Path) -> None:
    """Docker's default /dev/shm is 64 MiB: a tree needing more than its free space goes to /tmp."""
    room = 256 << 20
    fits = (room - scratch.HEADROOM) // scratch.ROOM_FACTOR - (1 << 20)
    assert _ask_under_mount(tmp_path, "size=256m", fits) == str(tmp_path / "shm")
    assert _fell_back(_ask_under_mount(tmp_path, "size=256m", fits + (2 << 20)), tmp_path)


def test_room_is_counted_per_tree(tmp_path: Path) -> None:
    """A spec with hosts validates one tree per host, each with its own copy of the unit folder."""
    assert _ask_under_mount(tmp_path, "size=256m", 1000, trees=10) == str(tmp_path / "shm")
    assert _fell_back(_ask_under_mount(tmp_path, "size=256m", 1000, trees=60), tmp_path)


def test_the_users_tmpdir_wins(tmp_path: Path) -> None:
    assert _ask_under_mount(tmp_path, "size=256m", 1000, {"TMPDIR": str(tmp_path)}) == str(tmp_path)


def test_a_noexec_tmpdir_is_an_error_that_says_what_to_set(tmp_path: Path) -> None:
    assert _ask_under_mount(tmp_path, "size=256m", 1000, {"TMPDIR": str(tmp_path / "shm")}) == str(tmp_path / "shm")
    said = _ask_under_mount(tmp_path, "size=256m,noexec", 1000, {"TMPDIR": str(tmp_path / "shm")})
    assert said.startswith("ScratchError: the temporary folder ") and "noexec" in said and "set TMPDIR" in said


def test_with_shm_and_the_temp_folder_noexec_var_tmp_is_used(tmp_path: Path) -> None:
    """/tmp noexec as well as /dev/shm: a common hardening; the scratch goes to /var/tmp."""
    said = _ask_under_mount(tmp_path, "size=256m,noexec", 1000, tmp_options="size=64m,noexec")
    assert said == "/var/tmp"


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


def test_a_full_scratch_filesystem_is_one_clean_error(tmp_path: Path) -> None:
    """A 1 MiB tmpfs as TMPDIR fills while the unit folder is copied in: exit 2, one line that
    says so and what to do, and the scratch folder is gone."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("mounting a tmpfs in a private namespace needs root and unshare(1)")
    small = tmp_path / "small"
    small.mkdir()
    cmd = [sys.executable, "-c", "from generator.cli import main; main()", "validate", "--spec", str(REPO / "spec")]
    script = 'mount -t tmpfs -o size=1m none "$1" && shift && "$@"; code=$?; ls -A "$TMPDIR"; exit $code'
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(small)}
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(small),
                           *cmd], capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    [line] = [ln for ln in proc.stderr.splitlines() if ln.startswith("zachot-gen: error:")]
    assert "No space left on device" in line and "set TMPDIR to a folder with more room" in line
    assert not [name for name in proc.stdout.split() if name.startswith("zachot-validate-")]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stopped_validate_removes_its_scratch_and_its_tool(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM (systemctl stop, a CI timeout) or SIGHUP (a closed terminal) mid-run: the
    scratch folder is removed, the running tool is killed, exit 128 + the signal's number."""
    spec = write_spec(tmp_path / "spec", 100)  # logrotate then runs for several seconds
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-c", "from generator.cli import main; main()", "validate", "--spec",
                             str(spec)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("zachot-validate-*/tree/rotate-all")):  # the rotation has begun
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    children = _children(proc.pid)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, out + err
    assert f"validate stopped by {sig.name}; its scratch folder is removed" in err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("zachot-validate-*"))
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]


def _children(pid: int) -> list[int]:
    """The processes ``pid`` runs now (procfs children of every thread)."""
    tasks = Path(f"/proc/{pid}/task")
    return [int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()]


def test_tmpdir_slash_is_refused_and_is_no_base(tmp_path: Path) -> None:
    """TMPDIR=/ would make every folder of the host 'below the temporary folder'."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": "/"}
    probe = ("from generator import scratch; from pathlib import Path; assert Path('/') not in scratch.scratch_bases()\n"
             "try:\n    scratch.scratch_parent(1000)\nexcept scratch.ScratchError as exc:\n    print(exc)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "the root folder" in proc.stdout and "set TMPDIR" in proc.stdout
