"""A record of the last clean ``zachot-gen check``, so the next one with the same inputs renders nothing.

``check`` renders the whole tree in memory and compares it with build/; most of its time is
spent importing pydantic and Jinja and building the spec models. When it finds build/ up to
date it records two digests: of everything the render read (the spec folder, the templates
folder, zachot-gen's own code, the Python and library installs, the text encoding, umask and
working directory that the render, comparison and messages depend on, and the app as lint saw
it: each ``project.source`` as written and where it leads, and the files lint consulted,
:func:`generator.lint.source_inputs`), and of build/ itself (every path, type, mode, symlink
target and content). A digest covers every entry's kind and a symlink's target, and reads
regular files only (a FIFO or device is never opened).

Both digests are taken before the check and recorded only if they are the same after it, and
only if nothing they cover changed status (ctime: any write, rename, deletion or utime sets it,
and nothing sets it back) since :data:`RACY_SEC` before the check began: an edit made while the
check ran, even one undone or with its mtime put back, is never recorded as checked. The next
``check`` that finds both digests unchanged says "up to date" without importing the generator,
as ``make`` or ``ruff`` skip work whose inputs did not change. Any difference, a record that
is missing or unreadable, a folder too large to digest quickly, or ``ZACHOT_GEN_NO_CACHE=1``
runs the full check. Only "up to date" is ever recorded: drift and errors are found anew.
Not covered: an in-place edit of a library's submodule (a reinstall is covered: it makes new
files), or of the Python standard library without a version change.

The records live in ``$XDG_CACHE_HOME/zachot-gen/check/`` (``~/.cache/zachot-gen/check/``),
one small JSON file per (spec, build, templates, working directory); never inside build/, the
spec or the templates (no record then), so a fresh clone (CI) simply runs the full check. This module imports only the
standard library: it runs before anything else of the generator is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import locale
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

__all__ = ["LIBRARIES", "MAX_BYTES", "MAX_FILES", "Snapshot", "is_up_to_date"]

FORMAT = "zachot-gen check record 1"
"""Changes whenever what a record holds changes: an older record then never matches."""

LIBRARIES = ("jinja2", "markupsafe", "pydantic", "pydantic_core", "yaml", "click")
"""Installed packages whose code shapes the tree or the check: an upgrade invalidates every record."""

MAX_FILES = 20_000
"""More files than this in one digest (the inputs, or build/): no record (digesting them would
cost what the full check costs)."""

MAX_BYTES = 256 * 1024 * 1024
"""More bytes than this to digest: no record."""

_PACKAGE = Path(__file__).resolve().parent


class _TooBig(Exception):
    """The inputs or the tree are over :data:`MAX_FILES` or :data:`MAX_BYTES`."""


def _raise(exc: OSError) -> None:
    """os.walk's error handler: an unreadable folder means no digest (so no record, no answer)."""
    raise exc


class _Digest:
    """sha256 over a sequence of labelled entries, counting files and bytes against the caps,
    and noting the latest status change (ctime) of every entry it looked at."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.files = 0
        self.bytes = 0
        self.newest = 0.0
        """The latest ctime (s since the epoch) of a file or folder digested: any write, rename
        into a folder, deletion from it or utime() sets it, and no tool can set it back."""

    def add(self, *parts: object) -> None:
        self.sha.update(repr(parts).encode("utf-8", "surrogateescape") + b"\n")

    def entry(self, label: str, path: Path) -> None:
        """One path: its kind (a symlink also by its target, then what it points at), and a
        regular file's content; a FIFO or device is never opened."""
        try:
            st = os.lstat(path)
            self.newest = max(self.newest, st.st_ctime)
            if stat.S_ISLNK(st.st_mode):
                self.add(label, "link", os.readlink(path))
                st = os.stat(path)
                self.newest = max(self.newest, st.st_ctime)
        except OSError as exc:
            self.add(label, "absent or unreadable", exc.errno)  # its deletion: the callers' ancestry()
            return
        kind, mode = stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode)
        if not stat.S_ISREG(st.st_mode):
            self.add(label, "kind", kind, mode)
            return
        self.files += 1
        self.bytes += st.st_size
        if self.files > MAX_FILES or self.bytes > MAX_BYTES:
            raise _TooBig
        with open(path, "rb") as fh:
            self.add(label, "file", mode, hashlib.file_digest(fh, "sha256").hexdigest())

    def ancestry(self, path: Path) -> None:
        """The ctime of every component of ``path`` (as written, and as resolved) that exists,
        and each symlink's target: a link or folder on the way that was repointed or moved,
        even and back, shows. Components that do not exist are skipped, and so is the ctime
        of a sticky folder (/tmp, shared by everyone, changes every moment; its entries
        cannot be moved by others)."""
        absolute = Path(os.path.abspath(path))
        for seen in (absolute, absolute.resolve()):
            for part in (seen, *seen.parents):
                try:
                    st = os.lstat(part)
                except OSError:
                    continue
                if not st.st_mode & stat.S_ISVTX:
                    self.newest = max(self.newest, st.st_ctime)
                if stat.S_ISLNK(st.st_mode):
                    self.add("on the way", str(part), os.readlink(part))

    def folder(self, label: str, root: Path, keep: str | None = None, skip_hidden: bool = False) -> None:
        """``root`` and every entry below it (:meth:`entry`; files only with names ending in
        ``keep`` when given). A symlinked folder is recorded as a link and entered, once."""
        self.entry(label, root)
        if not root.is_dir():
            return
        seen: set[tuple[int, int]] = set()
        for current, dirs, names in os.walk(root, followlinks=True, onerror=_raise):
            st = os.stat(current)
            if (st.st_dev, st.st_ino) in seen:
                dirs[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not (skip_hidden and d.startswith(".")))
            rel = os.path.relpath(current, root)
            for name in dirs:
                self.entry(f"{label}/{rel}/{name}/", Path(current) / name)
            for name in sorted(names):
                if (keep and not name.endswith(keep)) or (skip_hidden and name.startswith(".")):
                    continue
                self.entry(f"{label}/{rel}/{name}", Path(current) / name)

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def _record_file(spec_dir: Path, build_dir: Path, templates_dir: Path) -> Path | None:
    """Where the record for these folders and this working directory is; None when records
    are off, no cache folder can be named (no absolute $XDG_CACHE_HOME, no home but /), or it
    would lie inside build/, the spec, the templates or zachot-gen's own code (the app's
    folders are refused when the record is written, :meth:`Snapshot.record_up_to_date`)."""
    if os.environ.get("ZACHOT_GEN_NO_CACHE"):
        return None
    home = os.environ.get("HOME", "")
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(home, ".cache") if home not in ("", "/") else "")
    if not base or not os.path.isabs(base):
        return None
    where = (Path(base) / "zachot-gen" / "check").resolve()
    if any(where.is_relative_to(d.resolve()) for d in (spec_dir, build_dir, templates_dir, _PACKAGE)):
        return None
    key = hashlib.sha256(
        repr((str(spec_dir.absolute()), str(build_dir.absolute()), str(templates_dir.absolute()), os.getcwd())).encode(
            "utf-8", "surrogateescape")
    ).hexdigest()[:32]
    return where / f"{key}.json"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _inputs(spec_dir: Path, templates_dir: Path) -> _Digest:
    d = _Digest()
    d.add(FORMAT, sys.version, sys.executable, sys.path, sys.flags.utf8_mode, locale.getpreferredencoding(False),
          os.getcwd(), _umask(), str(spec_dir.resolve()), str(templates_dir.resolve()))
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec and spec.origin else None
        st = origin.stat() if origin is not None else None  # a reinstall makes new files
        d.add("library", name, str(origin), st and (st.st_ino, st.st_size, st.st_mtime_ns))
    d.folder("generator", _PACKAGE)
    for label, folder in (("spec", spec_dir), ("templates", templates_dir)):
        d.ancestry(folder)
        d.folder(label, folder)
    return d


def _sources(roots: Iterable[str], paths: Iterable[str]) -> _Digest:
    """The app as lint saw it: each ``project.source`` as written and where it leads now, and
    each path lint read (a file, or a folder's Python files)."""
    d = _Digest()
    for root in roots:
        d.add("root", root, str(Path(root).resolve()))
        d.ancestry(Path(root))
    for path in paths:
        d.ancestry(Path(path))
        d.folder(f"source {path}", Path(path), keep=".py", skip_hidden=True)
    return d


def _tree(build_dir: Path) -> _Digest:
    d = _Digest()
    d.add("build", str(build_dir.resolve()))
    d.ancestry(build_dir)
    d.entry("build", build_dir)
    if not build_dir.is_dir() or build_dir.is_symlink():
        return d
    for current, dirs, names in os.walk(build_dir, followlinks=False, onerror=_raise):
        dirs.sort()
        rel = os.path.relpath(current, build_dir)
        for name in sorted(names + dirs):
            d.entry(f"{rel}/{name}", Path(current) / name)
    return d


def _strings(value: object) -> list[str] | None:
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


def is_up_to_date(spec_dir: Path, build_dir: Path, templates_dir: Path) -> bool:
    """Whether a record says ``build_dir`` is up to date with ``spec_dir`` rendered with
    ``templates_dir``, and nothing either digest covers has changed since. False whenever in
    doubt (no record, an unreadable or foreign one, a folder too large); never raises."""
    try:
        where = _record_file(spec_dir, build_dir, templates_dir)
        if where is None or not where.is_file():
            return False
        record = json.loads(where.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            return False
        roots, sources = _strings(record.get("roots")), _strings(record.get("sources"))
        if roots is None or sources is None:
            return False
        return bool(record.get("tree") == _tree(build_dir).hexdigest()
                    and record.get("inputs") == _inputs(spec_dir, templates_dir).hexdigest()
                    and record.get("source_digest") == _sources(roots, sources).hexdigest())
    except (OSError, ValueError, RuntimeError, _TooBig, RecursionError):
        return False


RACY_SEC = 2.0
"""A file or folder whose status changed less than this before the check began (or since) is
too fresh to record: a coarse clock may not have told the edit apart from the check's read."""


class Snapshot:
    """The digests of build/ and of the inputs taken just before a full check: recorded after
    it only if they are the same then and nothing digested changed status (ctime) since
    :data:`RACY_SEC` before the check began, so nothing edited, renamed, deleted or put back
    while the check ran is ever recorded as checked."""

    def __init__(self, spec_dir: Path, build_dir: Path, templates_dir: Path) -> None:
        self.dirs = (spec_dir, build_dir, templates_dir)
        self.started = time.time()
        self.digests: tuple[str, str] | None = None
        try:
            if _record_file(spec_dir, build_dir, templates_dir) is not None:  # records off: no digest work
                self.digests = (_tree(build_dir).hexdigest(), _inputs(spec_dir, templates_dir).hexdigest())
        except (OSError, ValueError, RuntimeError, _TooBig, RecursionError):
            self.digests = None

    def record_up_to_date(self, roots: Iterable[Path], sources: Iterable[Path]) -> None:
        """Record that the full check found build/ up to date. ``roots`` are the spec's
        ``project.source`` folders as written (unresolved), ``sources`` the app files and
        folders lint read (:func:`generator.lint.source_inputs`). Nothing is recorded when
        records are off, a digest changed, an entry is too fresh (:data:`RACY_SEC`), or the
        record cannot be written. Written atomically (a temporary file renamed over it)."""
        spec_dir, build_dir, templates_dir = self.dirs
        tmp = None
        try:
            where = _record_file(spec_dir, build_dir, templates_dir)
            if where is None or self.digests is None:
                return
            names = sorted({str(s.absolute()) for s in sources})
            links = sorted({str(r.absolute()) for r in roots})
            if any(where.is_relative_to(Path(n).resolve()) for n in names):
                return  # a record inside the app's code that lint reads would change what it records
            now = (_tree(build_dir), _inputs(spec_dir, templates_dir), _sources(links, names))
            if (now[0].hexdigest(), now[1].hexdigest()) != self.digests:
                return
            if max(d.newest for d in now) >= self.started - RACY_SEC:
                return
            record = {"format": FORMAT, "roots": links, "sources": names, "tree": self.digests[0],
                      "inputs": self.digests[1], "source_digest": now[2].hexdigest()}
            where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".record-", dir=where.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
            os.replace(tmp, where)
            tmp = None
        except (OSError, ValueError, RuntimeError, _TooBig, RecursionError):
            return
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
