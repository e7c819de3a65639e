"""How zachot-gen recognises a tree it wrote: the header line of its manifest.

The first line of ``build/manifest.tsv`` is a comment naming the generator and the sha256
of the rest of the file (the rows below it)::

    # zachot-gen tree; sha256 of the rows below: 3f1c...e9

A folder counts as written by zachot-gen only when that line is there and the digest
matches, which a foreign file named manifest.tsv cannot do by accident. Readers of the
manifest skip the line (it starts with ``#``).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

__all__ = ["HEADER_PREFIX", "body_of", "problem", "stamp"]

HEADER_PREFIX = "# zachot-gen tree; sha256 of the rows below: "
"""The manifest's first line is this prefix, 64 lowercase hex digits and a newline."""

_PREFIX = HEADER_PREFIX.encode("ascii")
_LINE = len(_PREFIX) + 64 + 1  # the header line's length in bytes, newline included
_HEX = frozenset(b"0123456789abcdef")
_CHUNK = 1 << 16


def stamp(body: str) -> str:
    """``body`` (the manifest's rows, any text) with the header line put in front of it.

    Output: ``HEADER_PREFIX + sha256(body as UTF-8).hexdigest() + "\\n" + body``.
    """
    return f"{HEADER_PREFIX}{hashlib.sha256(body.encode('utf-8')).hexdigest()}\n{body}"


def body_of(text: str) -> str:
    """``text`` without its header line (as it is when there is no header line)."""
    if text.startswith(HEADER_PREFIX):
        return text.partition("\n")[2]
    return text


def problem(path: Path) -> str | None:
    """Why the file at ``path`` is not a manifest zachot-gen wrote, or None when it is.

    Input: the path of a would-be manifest. It is opened without following a symlink and
    read in chunks (a huge foreign file is not loaded whole; one without the header is
    judged by its first line). Output: ``None`` when the file is a regular file whose first
    line is the header and whose digest matches the rest; else a short reason to put after
    the file's name ("is missing", "is a symlink, not a regular file", "has no zachot-gen
    header line ...", "... do not match its sha256 ...", "cannot be read (...)"). Never
    raises for a missing or unreadable file: that is a reason too.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return "is missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "is a symlink, not a regular file"
        return f"cannot be read ({exc.strerror or exc})"
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return "is not a regular file"
        first = fh.readline(_LINE)
        digest = first[len(_PREFIX) : _LINE - 1]
        if not (len(first) == _LINE and first.startswith(_PREFIX) and first.endswith(b"\n") and set(digest) <= _HEX):
            return f"has no zachot-gen header line ('{HEADER_PREFIX}<sha256>')"
        h = hashlib.sha256()
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    if h.hexdigest().encode("ascii") != digest:
        return "has a zachot-gen header line, but the rows below it do not match its sha256 (edited or forged)"
    return None
