"""Write a build tree atomically; compare one on disk with a fresh render (drift).

``write`` builds the whole new tree in a sibling temporary folder, then swaps it with
the old one in one ``renameat2(RENAME_EXCHANGE)`` call (Linux >= 3.15, rename(2)), so a
crash or kill at any moment leaves either the old tree or the new one under the name.
Files the previous render made and this one does not are gone with the old tree.
Nothing under the old tree is followed: a symlink planted inside build/ is removed as a
link, never written through.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import fcntl
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OutputError

__all__ = ["Drift", "diff", "read_tree", "write"]

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fn = getattr(libc, "renameat2", None)
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22):  # ENOSYS, EINVAL: kernel or filesystem without the flag
        return False
    raise OutputError(f"cannot swap {a} and {b}: {os.strerror(err)}")


def _sweep(parent: Path, name: str) -> None:
    """Remove scratch trees an earlier, killed render left beside ``name`` (ours by their names)."""
    for pattern in (f".{name}.new-*", f".{name}.old-*"):
        for stale in parent.glob(pattern):
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)


def _fill(tmp: Path, files: dict[str, str], modes: dict[str, int]) -> None:
    for rel, text in sorted(files.items()):
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "x", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(target, modes.get(rel, 0o644))


def _check_target(build_dir: Path, marker: str | None) -> None:
    if build_dir.is_symlink() or (build_dir.exists() and not build_dir.is_dir()):
        raise OutputError(f"{build_dir} exists and is not a plain directory; refusing to replace it")
    if marker and build_dir.is_dir() and any(build_dir.iterdir()) and not (build_dir / marker).is_file():
        raise OutputError(
            f"{build_dir} is not empty and holds no {marker}, so it is not a tree zachot-gen wrote; "
            "refusing to replace it (render replaces the whole folder)"
        )


def write(
    build_dir: Path, files: dict[str, str], modes: dict[str, int] | None = None, marker: str | None = None
) -> None:
    """Replace ``build_dir`` with exactly ``files`` (``{relative path: text}``), atomically.

    ``modes`` gives a file's permission bits (default 0o644). ``marker`` names a file every
    tree this function writes holds: an existing non-empty ``build_dir`` without it is not
    replaced. Concurrent calls for the same folder are serialised with flock(2) on the
    parent folder. Raises :class:`OutputError` when ``build_dir`` is a symlink, a file, or a
    foreign folder, a path would escape the tree, or the disk refuses (read-only, full).
    """
    for rel in files:
        parts = Path(rel).parts
        if not rel or Path(rel).is_absolute() or ".." in parts or any(p.startswith(".") for p in parts):
            raise OutputError(f"refusing to write {rel!r}: outside build/ or hidden")
    _check_target(build_dir, marker)
    try:
        parent = build_dir.resolve().parent
        parent.mkdir(parents=True, exist_ok=True)
        lock = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _check_target(build_dir, marker)
            _swap_in(build_dir, parent, files, modes or {})
        finally:
            os.close(lock)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(f"cannot write {build_dir}: {exc.strerror or exc}{where}") from None


def _swap_in(build_dir: Path, parent: Path, files: dict[str, str], modes: dict[str, int]) -> None:
    _sweep(parent, build_dir.name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}.new-", dir=parent))
    try:
        _fill(tmp, files, modes)
        os.chmod(tmp, 0o755)
        if not build_dir.exists():
            os.rename(tmp, build_dir)
            return
        if not _exchange(tmp, build_dir):
            old = Path(tempfile.mkdtemp(prefix=f".{build_dir.name}.old-", dir=parent))
            os.rename(build_dir, old / "tree")
            os.rename(tmp, build_dir)
            tmp = old
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_tree(build_dir: Path) -> dict[str, bytes | None]:
    """Every entry under ``build_dir``: regular files -> bytes; symlinks, devices -> None.

    Does not follow symlinks. A missing folder reads as empty.
    """
    out: dict[str, bytes | None] = {}
    if not build_dir.is_dir() or build_dir.is_symlink():
        return out
    for root, dirs, names in os.walk(build_dir, followlinks=False):
        for name in names + [d for d in dirs if (Path(root) / d).is_symlink()]:
            path = Path(root) / name
            rel = path.relative_to(build_dir).as_posix()
            st = os.lstat(path)
            out[rel] = path.read_bytes() if stat.S_ISREG(st.st_mode) else None
    return out


@dataclass
class Drift:
    """How build/ differs from a fresh render: paths changed, missing, stale; diffs per path."""

    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.changed or self.missing or self.stale)


def diff(build_dir: Path, files: dict[str, str]) -> Drift:
    """Compare ``build_dir`` on disk with rendered ``files``.

    Output: a :class:`Drift` (falsy when identical byte for byte). ``diffs`` holds a
    unified diff (difflib) for each changed and missing file. A symlink or other
    non-regular file where a file is expected counts as changed.
    """
    if build_dir.is_symlink() or (build_dir.exists() and not build_dir.is_dir()):
        raise OutputError(f"{build_dir} exists and is not a plain directory")
    disk = read_tree(build_dir)
    drift = Drift()
    for rel in sorted(files):
        want = files[rel].encode("utf-8")
        have = disk.get(rel, b"") if rel in disk else None
        if rel not in disk:
            drift.missing.append(rel)
        elif have != want:
            drift.changed.append(rel)
        else:
            continue
        old = (have or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
        drift.diffs[rel] = "".join(
            difflib.unified_diff(
                old,
                files[rel].splitlines(keepends=True),
                fromfile=f"{build_dir}/{rel}" if rel in disk else "/dev/null",
                tofile=f"rendered/{rel}",
            )
        )
    drift.stale = sorted(set(disk) - set(files))
    return drift
