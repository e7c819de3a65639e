"""Write a build tree atomically; compare one on disk with a fresh render (drift).

``write`` builds the whole new tree in a scratch folder beside it (``.<name>.zachot-gen/``,
marked as ours; nothing else beside it is ever removed), then swaps it with the old one in
one ``renameat2(RENAME_EXCHANGE)`` call (Linux >= 3.15, rename(2)), so a crash or kill at
any moment leaves either the old tree or the new one under the name.
Files the previous render made and this one does not are gone with the old tree.
Nothing under the old tree is followed: a symlink planted inside build/ is removed as a
link, never written through. An existing non-empty folder is replaced only when its
manifest carries the generator's header line with a matching digest (:mod:`treeid`).

``diff`` reports changed, missing and stale files, folders holding no rendered file, and
files whose mode is not 0644 (or what a git clone has under the current umask).
"""

from __future__ import annotations

import ctypes
import difflib
import fcntl
import os
import shlex
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from . import treeid
from .errors import OutputError

__all__ = ["FILE_MODE", "Drift", "accepted_modes", "diff", "read_tree", "write"]

FILE_MODE = 0o644
"""The mode of every file render writes (what a git clone has under umask 022)."""

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _libc_function(name: str) -> Callable[..., int] | None:
    """C library function ``name`` of this process (glibc, musl), None where it has none.
    ``CDLL(None)`` is the process's own symbols: no ``ldconfig`` run as ``find_library`` does."""
    fn: Callable[..., int] | None = getattr(ctypes.CDLL(None, use_errno=True), name, None)
    return fn


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False if unsupported."""
    fn = _libc_function("renameat2")
    if fn is None:
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22):  # ENOSYS, EINVAL: kernel or filesystem without the flag
        return False
    raise OutputError(f"cannot swap {a} and {b}: {os.strerror(err)}")


SCRATCH_MARK = "zachot-gen-scratch"
"""The file that marks a folder as zachot-gen's own scratch folder beside a build tree."""


def _scratch(parent: Path, name: str) -> Path:
    """The scratch folder for ``name``'s new and old trees: ``.<name>.zachot-gen/`` beside it,
    holding :data:`SCRATCH_MARK`. Earlier, killed renders' trees in it are removed; nothing
    outside it ever is. Raises :class:`OutputError` when a folder of that name exists without
    the mark (someone else's) or is a symlink."""
    scratch = parent / f".{name}.zachot-gen"
    if not scratch.exists() and not scratch.is_symlink():
        scratch.mkdir(mode=0o700)
        (scratch / SCRATCH_MARK).write_text("scratch trees of zachot-gen render; safe to delete\n")
    if scratch.is_symlink() or not scratch.is_dir() or not (scratch / SCRATCH_MARK).is_file():
        raise OutputError(f"{scratch} exists but is not zachot-gen's scratch folder; refusing to use it")
    for stale in scratch.iterdir():
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    return scratch


def _drop_scratch(scratch: Path) -> None:
    """Remove the scratch folder when no tree is left in it (a concurrent render may still use it)."""
    if [p.name for p in scratch.iterdir()] == [SCRATCH_MARK]:
        (scratch / SCRATCH_MARK).unlink()
        scratch.rmdir()


_CHUNK = 1 << 20
"""Characters encoded at a time: a 20 MB README is not held as bytes beside its text."""


def _create(path: Path, text: str, fix_mode: bool) -> None:
    """Create ``path`` (it must not exist) holding ``text`` as UTF-8, mode :data:`FILE_MODE`:
    open(2), write(2), close(2) and no more (Python's ``open`` adds fstat, ioctl and lseek
    calls, and a file creation is the bulk of render's time at 1000 services)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        for start in range(0, len(text), _CHUNK):
            view = memoryview(text[start:start + _CHUNK].encode("utf-8"))
            while view:
                view = view[os.write(fd, view):]
        if fix_mode:
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def _fill(tmp: Path, files: dict[str, str]) -> None:
    """Write ``files`` below the new folder ``tmp``, each with mode :data:`FILE_MODE`, and put
    them on disk before the swap: one syncfs(2) for the filesystem (one journal commit),
    or, where the C library has none, fsync(2) per file."""
    for folder in sorted({(tmp / rel).parent for rel in files}):
        folder.mkdir(parents=True, exist_ok=True)
    umask = os.umask(0o022)
    os.umask(umask)
    written = []
    for rel, text in files.items():
        target = tmp / rel
        _create(target, text, fix_mode=bool(umask & FILE_MODE))
        written.append(target)
    syncfs = _libc_function("syncfs")
    fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs is not None and syncfs(fd) == 0:
            return
    finally:
        os.close(fd)
    for target in written:
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_target(build_dir: Path, marker: str | None) -> None:
    if build_dir.is_symlink() or (build_dir.exists() and not build_dir.is_dir()):
        raise OutputError(f"{build_dir} exists and is not a plain directory; refusing to replace it")
    if not marker or not build_dir.is_dir() or not any(build_dir.iterdir()):
        return
    why = treeid.problem(build_dir / marker)
    if why is not None:
        raise OutputError(
            f"{build_dir} is not empty and its {marker} {why}, so it is not a tree zachot-gen wrote; "
            "refusing to replace it (render replaces the whole folder). If it is an old or hand-edited zachot-gen "
            f"tree, remove it (rm -r {shlex.quote(str(build_dir))}) and render again; otherwise choose another --build"
        )


def write(build_dir: Path, files: dict[str, str], marker: str | None = None) -> None:
    """Replace ``build_dir`` with exactly ``files`` (``{relative path: text}``), atomically.

    Every file is written with mode :data:`FILE_MODE` (0644, what a git clone has).
    ``marker`` names the manifest every tree this function writes holds, stamped with
    :mod:`treeid`'s header line: an existing non-empty ``build_dir`` whose marker is
    missing, has no header line, or does not match its digest is not touched. Concurrent
    calls for the same folder are serialised with flock(2) on the parent folder. Raises
    :class:`OutputError` (saying why and what to do) when ``build_dir`` is a symlink, a
    file, or a foreign folder, a path would escape the tree, or the disk refuses
    (read-only, full); ``build_dir`` is then as it was.
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
            _swap_in(build_dir, parent, files)
        finally:
            os.close(lock)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        raise OutputError(f"cannot write {build_dir}: {exc.strerror or exc}{where}") from None


def _swap_in(build_dir: Path, parent: Path, files: dict[str, str]) -> None:
    scratch = _scratch(parent, build_dir.name)
    tmp = Path(tempfile.mkdtemp(prefix="new-", dir=scratch))
    try:
        _fill(tmp, files)
        os.chmod(tmp, 0o755)
        if not build_dir.exists():
            os.rename(tmp, build_dir)
            return
        if not _exchange(tmp, build_dir):
            old = Path(tempfile.mkdtemp(prefix="old-", dir=scratch))
            os.rename(build_dir, old / "tree")
            os.rename(tmp, build_dir)
            tmp = old
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        _drop_scratch(scratch)


@dataclass
class _Disk:
    files: dict[str, bytes | None] = field(default_factory=dict)
    """Every entry but a real folder: regular files -> bytes; symlinks, devices -> None."""
    modes: dict[str, int] = field(default_factory=dict)
    """Permission bits (incl. setuid/setgid/sticky) of each regular file."""
    dirs: list[str] = field(default_factory=list)
    """Every real folder (not a symlink) below the root."""


def _scan(build_dir: Path) -> _Disk:
    disk = _Disk()
    if not build_dir.is_dir() or build_dir.is_symlink():
        return disk
    for root, dirs, names in os.walk(build_dir, followlinks=False):
        for name in names + dirs:
            path = Path(root) / name
            rel = path.relative_to(build_dir).as_posix()
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                disk.dirs.append(rel)
            elif stat.S_ISREG(st.st_mode):
                disk.files[rel] = path.read_bytes()
                disk.modes[rel] = stat.S_IMODE(st.st_mode)
            else:
                disk.files[rel] = None
    return disk


def read_tree(build_dir: Path) -> dict[str, bytes | None]:
    """Every entry under ``build_dir``: regular files -> bytes; symlinks, devices -> None.

    Does not follow symlinks. A missing folder reads as empty. Real folders are not listed.
    """
    return _scan(build_dir).files


def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def accepted_modes() -> frozenset[int]:
    """File modes ``check`` accepts in build/: :data:`FILE_MODE` and a clone's ``0o666 & ~umask``.

    Git records only the executable bit, so a clean clone has every (non-executable) file at
    0666 minus the current umask (0644 under umask 022, 0664 under 002). Raises nothing.
    """
    return frozenset({FILE_MODE, 0o666 & ~_umask()})


@dataclass
class Drift:
    """How build/ differs from a fresh render; falsy when it does not differ at all.

    ``changed``, ``missing``, ``stale``: file paths (relative to build/); ``diffs``: a unified
    diff per changed or missing file; ``stale_dirs``: topmost folders holding no rendered
    file (e.g. an empty folder); ``modes``: ``(path, permission bits)`` of each rendered
    file whose mode is not one of :func:`accepted_modes`.
    """

    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)
    stale_dirs: list[str] = field(default_factory=list)
    modes: list[tuple[str, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.changed or self.missing or self.stale or self.stale_dirs or self.modes)


def _unified(build_dir: Path, rel: str, have: bytes | None, want: str) -> str:
    old = (have or b"").decode("utf-8", errors="replace").splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(
            old,
            want.splitlines(keepends=True),
            fromfile=f"{build_dir}/{rel}" if have is not None else "/dev/null",
            tofile=f"rendered/{rel}",
        )
    )


def diff(build_dir: Path, files: dict[str, str], marker: str | None = None) -> Drift:
    """Compare ``build_dir`` on disk with rendered ``files`` (``{relative path: text}``).

    Output: a :class:`Drift`, falsy when every rendered file is there byte for byte with an
    accepted mode (:func:`accepted_modes`), nothing else is there, and no folder is empty
    of rendered files. A symlink or other non-regular file where a file is expected counts
    as changed; so does ``marker`` (the manifest) when its :mod:`treeid` header line is
    missing or does not match its digest. Raises :class:`OutputError` when ``build_dir`` is
    a symlink or not a folder, ``OSError`` when a file cannot be read.
    """
    if build_dir.is_symlink() or (build_dir.exists() and not build_dir.is_dir()):
        raise OutputError(f"{build_dir} exists and is not a plain directory")
    disk = _scan(build_dir)
    drift = Drift()
    for rel in sorted(files):
        if rel not in disk.files:
            drift.missing.append(rel)
        elif disk.files[rel] != files[rel].encode("utf-8"):
            drift.changed.append(rel)
        else:
            continue
        drift.diffs[rel] = _unified(build_dir, rel, disk.files.get(rel), files[rel])
    header_bad = marker is not None and marker in files and marker in disk.modes and treeid.problem(build_dir / marker)
    if marker is not None and header_bad and marker not in drift.changed:
        drift.changed = sorted([*drift.changed, marker])
        drift.diffs[marker] = _unified(build_dir, marker, disk.files[marker], files[marker])
    drift.stale = sorted(set(disk.files) - set(files))
    wanted = {str(parent) for rel in files for parent in PurePosixPath(rel).parents}
    drift.stale_dirs = sorted(d for d in disk.dirs if d not in wanted and str(PurePosixPath(d).parent) in wanted)
    ok = accepted_modes()
    drift.modes = [(rel, disk.modes[rel]) for rel in sorted(files) if rel in disk.modes and disk.modes[rel] not in ok]
    return drift
