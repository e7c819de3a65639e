"""Which environment variables the app's Python code reads, found in its source with :mod:`ast`.

Read: ``os.environ.get("X")``, ``os.getenv("X")``, ``os.environ["X"]``, ``environ.get("X")``
and, when the spec names ``project.env_prefix`` (e.g. ``ZACHOT_``), every string constant made
of that prefix and capitals (``"ZACHOT_JOB_TTL_SECONDS"`` handed to a helper). Variables every
process has or systemd sets itself are ignored. The code is parsed, never imported or run.
Bounded: at most :data:`MAX_FILES` files of at most :data:`MAX_FILE_BYTES` each; a file that
does not parse is skipped.
"""

from __future__ import annotations

import ast
import functools
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_FILES", "MAX_FILE_BYTES", "EnvRead", "env_reads", "python_files"]

MAX_FILES = 5000
MAX_FILE_BYTES = 1 << 20

_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
_ACCESSORS = {"get", "getenv", "pop", "setdefault", "getenvb"}
# Variables of every process, and those systemd.exec(5) "Environment Variables Set or
# Propagated by the Service Manager" sets: reading them needs no declaration.
STANDARD = frozenset(
    """PATH HOME USER LOGNAME SHELL LANG LANGUAGE TZ TERM PWD TMPDIR INVOCATION_ID JOURNAL_STREAM
    NOTIFY_SOCKET WATCHDOG_PID WATCHDOG_USEC LISTEN_FDS LISTEN_PID LISTEN_FDNAMES MAINPID
    MANAGERPID RUNTIME_DIRECTORY STATE_DIRECTORY CACHE_DIRECTORY LOGS_DIRECTORY
    CONFIGURATION_DIRECTORY CREDENTIALS_DIRECTORY SERVICE_RESULT EXIT_CODE EXIT_STATUS
    MONITOR_SERVICE_RESULT SYSTEMD_EXEC_PID""".split()
)


@dataclass(frozen=True)
class EnvRead:
    """Variable ``name`` read at ``path``:``line``."""

    name: str
    path: Path
    line: int


def _is_environ(node: ast.expr) -> bool:
    """``os.environ`` or a bare ``environ``."""
    if isinstance(node, ast.Attribute):
        return node.attr in {"environ", "environb"} and isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id == "environ"


def _const(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _reads(tree: ast.AST, prefix: str | None) -> Iterator[tuple[str, int]]:
    for node in ast.walk(tree):
        name = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _ACCESSORS:
            owner = node.func.value
            if _is_environ(owner) or (isinstance(owner, ast.Name) and owner.id == "os"):
                name = _const(node.args[0]) if node.args else None
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            name = _const(node.slice)
        elif prefix and isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(prefix) and node.value != prefix and _NAME.fullmatch(node.value):
                name = node.value
        if name and _NAME.fullmatch(name) and name not in STANDARD and not name.startswith(("LC_", "PYTHON")):
            yield name, getattr(node, "lineno", 0)


def python_files(roots: Iterable[Path]) -> list[Path]:
    """The ``.py`` files of ``roots`` (files, or folders searched recursively), sorted, at
    most :data:`MAX_FILES`; hidden folders and ``__pycache__`` are skipped."""
    found: set[Path] = set()
    for root in roots:
        if root.is_file():
            found.add(root)
        elif root.is_dir():
            for path in root.rglob("*.py"):
                if not any(part.startswith(".") or part == "__pycache__" for part in path.relative_to(root).parts):
                    found.add(path)
        if len(found) >= MAX_FILES:
            break
    return sorted(found)[:MAX_FILES]


def env_reads(files: Iterable[Path], prefix: str | None = None) -> list[EnvRead]:
    """Every variable read in ``files``, first place of each, sorted by name.

    Input: Python files and an optional prefix (see the module docstring). Output: one
    :class:`EnvRead` per name. Raises nothing: unreadable, oversized or unparsable files are
    skipped.
    """
    first: dict[str, EnvRead] = {}
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        if st.st_size > MAX_FILE_BYTES or not stat.S_ISREG(st.st_mode):  # a FIFO would block the read
            continue
        for name, line in _file_reads(path, st.st_mtime_ns, st.st_size, prefix):
            if name not in first:
                first[name] = EnvRead(name, path, line)
    return [first[n] for n in sorted(first)]


@functools.lru_cache(maxsize=4096)
def _file_reads(path: Path, mtime_ns: int, size: int, prefix: str | None) -> tuple[tuple[str, int], ...]:
    """The reads of one file, parsed once per content (a tree of several hosts scans the same
    app once per host); ``mtime_ns`` and ``size`` are the cache key's record of that content."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError, RecursionError, MemoryError):
        return ()
    return tuple(_reads(tree, prefix))
