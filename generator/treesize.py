"""The bound on what a spec may make zachot-gen write: the rendered tree's size.

The YAML reader already bounds what aliases may repeat (:mod:`generator.yamlsource`); this is
the last guard, on the output itself, so no spec can make ``render`` fill a disk or ``check``
eat memory. The bound grows with the spec: :data:`BYTES_PER_SPEC_BYTE` for each byte of its
text (a value the docs repeat) and :data:`BYTES_PER_ENTRY` for each named entry (a service, a
healthcheck, an external unit, a log policy, a host: the units, rows and sections the templates
write for it). A terse honest spec renders to ~30 bytes per byte (bench/synth.py's services:
~9 KiB of output each), so a per-byte bound alone refused 5,000 honest services while any
amplification of a value beyond the bound is still refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .loader import Loaded

__all__ = ["BASE_BYTES", "BYTES_PER_ENTRY", "BYTES_PER_SPEC_BYTE", "tree_size_problem"]

BASE_BYTES = 10 * 1024 * 1024
"""Bytes any spec may render to (10 MiB), whatever its own size."""

BYTES_PER_SPEC_BYTE = 16
"""Bytes of output allowed on top of :data:`BASE_BYTES` per byte of spec text."""

BYTES_PER_ENTRY = 32 * 1024
"""Bytes of output allowed per named entry of the spec (32 KiB; a service renders ~9 KiB)."""


def utf8_size(text: str, chunk: int = 1 << 20) -> int:
    """Bytes ``text`` takes as UTF-8, counted ``chunk`` characters at a time: a 20 MB README
    is never held as bytes beside its text (that copy was the peak RSS of render at 5,000
    services)."""
    if text.isascii():
        return len(text)
    return sum(len(text[i:i + chunk].encode()) for i in range(0, len(text), chunk))


def _strings(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[int, tuple[str | int, ...]]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, (*path, i))
    elif isinstance(node, str):
        yield len(node.encode()), path


def tree_size_problem(loaded: Loaded, files: dict[str, str], spec_bytes: int) -> Any:
    """A located :class:`generator.errors.Problem` when ``files`` are over the bound, else None.

    Inputs: the loaded spec, the rendered ``{path: text}``, the spec files' total size in
    bytes. The bound: :data:`BASE_BYTES` + :data:`BYTES_PER_SPEC_BYTE` per spec byte +
    :data:`BYTES_PER_ENTRY` per named entry. The problem is located at the spec's longest text
    value (the likeliest cause) and names the largest rendered file. Raises nothing.
    """
    sizes = {path: utf8_size(text) for path, text in files.items()}
    total = sum(sizes.values())
    spec = loaded.spec
    entries = (len(spec.services) + len(spec.healthchecks) + len(spec.external_units) + len(spec.log_policies)
               + len(spec.hosts))
    limit = BASE_BYTES + BYTES_PER_SPEC_BYTE * spec_bytes + BYTES_PER_ENTRY * entries
    if total <= limit:
        return None
    largest = max(sizes, key=lambda p: sizes[p])
    longest = max(_strings(spec.model_dump(), ()), default=(0, ()))[1]
    return loaded.problem(
        longest,
        f"the rendered tree would be {total} bytes (largest: {largest}, {sizes[largest]} bytes); "
        f"the limit for this spec is {limit} bytes — this value is the longest text of the spec",
    )
