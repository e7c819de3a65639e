"""A record of the last clean ``zachot-gen check``, so the next one with the same inputs renders nothing.

``check`` renders the whole tree in memory and compares it with build/; most of its time is
spent importing pydantic and Jinja and building the spec models. When it finds build/ up to
date it records two digests: of everything the render read (the spec folder, the templates
folder, zachot-gen's own code, the Python and library installs, the umask and working
directory that the comparison and messages depend on, and the app files lint consulted:
:func:`generator.lint.source_inputs`), and of build/ itself (every path, type, mode and
content). Both are taken before the check and recorded only if they are the same after it (an
edit made while it ran is never recorded as checked), and an app file changed in the two
seconds before it is not recorded at all (its edit may race lint's read). The next ``check``
that finds both digests unchanged says "up to date" without importing the generator, as
``make`` or ``ruff`` skip work whose inputs did not change. Any
difference, a record that is missing or unreadable, a folder too large to digest quickly, or
``ZACHOT_GEN_NO_CACHE=1`` runs the full check. Only "up to date" is ever recorded: drift and
errors are always found anew.

The records live in ``$XDG_CACHE_HOME/zachot-gen/check/`` (``~/.cache/zachot-gen/check/``),
one small JSON file per (spec, build, templates, working directory); never in build/ or the
spec, so a fresh clone (CI) simply runs the full check. This module imports only the
standard library: it runs before anything else of the generator is loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
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
    """sha256 over a sequence of labelled entries, counting files and bytes against the caps."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.files = 0
        self.bytes = 0
        self.newest = 0.0
        """The latest modification time (s since the epoch) of a file digested."""

    def add(self, *parts: object) -> None:
        self.sha.update(repr(parts).encode("utf-8", "surrogateescape") + b"\n")

    def file(self, label: str, path: Path) -> None:
        self.files += 1
        try:
            data = path.read_bytes()
            self.newest = max(self.newest, path.stat().st_mtime)
        except OSError as exc:
            self.add(label, "unreadable", exc.errno)
            return
        self.bytes += len(data)
        if self.files > MAX_FILES or self.bytes > MAX_BYTES:
            raise _TooBig
        self.add(label, "file", len(data), hashlib.sha256(data).hexdigest())

    def folder(self, label: str, root: Path, keep: str | None = None, skip_hidden: bool = False) -> None:
        """Every entry below ``root``: folders, symlinks (their target), files (their content;
        only names ending in ``keep`` when given). Symlinked folders are entered once."""
        if not root.is_dir():
            self.add(label, "absent" if not root.exists() else "not a folder")
            if root.is_file():
                self.file(label, root)
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
            self.add(label, "folder", rel)
            for name in sorted(names):
                if (keep and not name.endswith(keep)) or (skip_hidden and name.startswith(".")):
                    continue
                path = Path(current) / name
                if path.is_symlink():
                    self.add(label, "link", rel, name, os.readlink(path))
                self.file(f"{label}/{rel}/{name}", path)

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


def _record_file(spec_dir: Path, build_dir: Path, templates_dir: Path) -> Path | None:
    if os.environ.get("ZACHOT_GEN_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.expanduser("~/.cache") if "HOME" in os.environ else "")
    if not base or not os.path.isabs(base):
        return None
    key = hashlib.sha256(
        repr((str(spec_dir.absolute()), str(build_dir.absolute()), str(templates_dir.absolute()), os.getcwd())).encode(
            "utf-8", "surrogateescape")
    ).hexdigest()[:32]
    return Path(base) / "zachot-gen" / "check" / f"{key}.json"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _inputs(spec_dir: Path, templates_dir: Path) -> str:
    d = _Digest()
    d.add(FORMAT, sys.version, sys.executable, os.getcwd(), _umask())
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        origin = Path(spec.origin) if spec and spec.origin else None
        st = origin.stat() if origin is not None else None  # a reinstall makes new files
        d.add("library", name, str(origin), st and (st.st_ino, st.st_size, st.st_mtime_ns))
    d.folder("generator", _PACKAGE)
    d.folder("spec", spec_dir)
    d.folder("templates", templates_dir)
    return d.hexdigest()


def _sources(sources: Iterable[str]) -> _Digest:
    """The app files lint read: each a file, or a folder's Python files."""
    d = _Digest()
    for source in sources:
        d.folder(f"source {source}", Path(source), keep=".py", skip_hidden=True)
    return d


def _tree(build_dir: Path) -> str:
    d = _Digest()
    if not build_dir.is_dir() or build_dir.is_symlink():
        d.add("build", "not a folder")
        return d.hexdigest()
    for current, dirs, names in os.walk(build_dir, followlinks=False, onerror=_raise):
        dirs.sort()
        rel = os.path.relpath(current, build_dir)
        for name in sorted(names + dirs):
            path = Path(current) / name
            st = os.lstat(path)
            d.add("entry", rel, name, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
            if stat.S_ISREG(st.st_mode):
                d.file(f"{rel}/{name}", path)
            elif stat.S_ISLNK(st.st_mode):
                d.add("link", os.readlink(path))
    return d.hexdigest()


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
        sources = record.get("sources")
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            return False
        return bool(record.get("tree") == _tree(build_dir)
                    and record.get("inputs") == _inputs(spec_dir, templates_dir)
                    and record.get("source_digest") == _sources(sources).hexdigest())
    except (OSError, ValueError, _TooBig, RecursionError):
        return False


class Snapshot:
    """The digests of build/ and of the inputs taken just before a full check: recorded after
    it only if they are the same then, so an edit made while the check ran is never recorded
    as checked."""

    def __init__(self, spec_dir: Path, build_dir: Path, templates_dir: Path) -> None:
        self.dirs = (spec_dir, build_dir, templates_dir)
        self.started = time.time()
        try:
            self.digests: tuple[str, str] | None = (_tree(build_dir), _inputs(spec_dir, templates_dir))
        except (OSError, ValueError, _TooBig, RecursionError):
            self.digests = None

    def record_up_to_date(self, sources: Iterable[Path]) -> None:
        """Record that the full check found build/ up to date; ``sources`` are the app files
        and folders lint consulted (:func:`generator.lint.source_inputs`). Nothing is recorded
        when records are off, a digest changed during the check, an app file is newer than
        two seconds before the check began (its edit may have raced lint's read), or the
        record cannot be written. Written atomically (a temporary file renamed over it)."""
        spec_dir, build_dir, templates_dir = self.dirs
        try:
            where = _record_file(spec_dir, build_dir, templates_dir)
            if where is None or self.digests is None:
                return
            if (_tree(build_dir), _inputs(spec_dir, templates_dir)) != self.digests:
                return
            names = sorted({str(s.absolute()) for s in sources})
            source = _sources(names)
            if source.newest >= self.started - 2:
                return
            record = {"format": FORMAT, "sources": names, "tree": self.digests[0], "inputs": self.digests[1],
                      "source_digest": source.hexdigest()}
            where.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, tmp = tempfile.mkstemp(prefix=".record-", dir=where.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
            os.replace(tmp, where)
        except (OSError, ValueError, _TooBig, RecursionError):
            return
