"""Compose YAML text into PyYAML's node tree, safely: libyaml's C parser when PyYAML has it and
the text is well-formed, else the pure-Python parser, which also words every syntax error the
way the spec-error messages quote it (:func:`compose`). Building data from the nodes, with
positions and caps, is :mod:`generator.yamlsource`'s.
"""

from __future__ import annotations

from typing import Any

import yaml

from .yamlscalars import PLAIN

__all__ = ["MAX_DEPTH", "TooDeep", "compose"]

MAX_DEPTH = 64
"""Deepest nesting of lists and mappings; a real spec nests about 8 deep. Bounds the
recursion of composing and building, so a 1 KB file of ``[[[[...`` cannot exhaust the stack."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, composing only: untagged plain scalars get the tag :data:`PLAIN`
    (resolved by :mod:`generator.yamlscalars` under YAML 1.2's core schema), and nesting
    deeper than :data:`MAX_DEPTH` stops the composer at the node that is too deep."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class TooDeep(Exception):
    """Nesting past :data:`MAX_DEPTH`; ``mark`` is where the node too deep starts."""

    def __init__(self, mark: yaml.Mark) -> None:
        self.mark = mark


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader (PyYAML's C binding) with :class:`_Loader`'s tag resolution."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return PLAIN
        return super().resolve(kind, value, implicit)


_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)


def _fast_compose(text: str) -> yaml.Node | None:
    """The node tree by libyaml, or raises :class:`_Slow` when the pure-Python loader must run:
    no libyaml, a character the Python reader refuses, nesting past :data:`MAX_DEPTH` (checked
    on libyaml's event stream first, which needs no recursion), or any YAML error. The Python
    loader then gives exactly the message and position it always gave; libyaml gives the same
    node tree with the same marks for every document it accepts."""
    if not getattr(yaml, "__with_libyaml__", False) or _NON_PRINTABLE.search(text):
        raise _Slow
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.CSafeLoader):
            if isinstance(event, _NODE_EVENTS):
                if depth >= MAX_DEPTH:
                    raise _Slow
                depth += isinstance(event, yaml.CollectionStartEvent)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return _single_node(_FastLoader(text))
    except yaml.YAMLError:
        raise _Slow from None


class _Slow(Exception):
    """The pure-Python loader must compose this text (:func:`_fast_compose`)."""


def compose(text: str) -> yaml.Node | None:
    """The node tree of ``text`` (None for an empty document). Raises :class:`TooDeep`, or
    PyYAML's ``ReaderError``/``MarkedYAMLError`` exactly as its pure-Python loader words them."""
    try:
        return _fast_compose(text)
    except _Slow:
        return _single_node(_Loader(text))


def _single_node(loader: Any) -> yaml.Node | None:
    """The one document's node tree (None when empty); the loader is disposed of either way."""
    try:
        node: yaml.Node | None = loader.get_single_node()
        return node
    finally:
        loader.dispose()


