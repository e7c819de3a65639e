"""Read spec YAML files into plain data plus the position of every node.

Safe loading only: PyYAML's safe loader composes the node tree (no Python tags): libyaml's
C parser when PyYAML has it and the text is well-formed, else the pure-Python one, which also
words every syntax error (:mod:`generator.yamlcompose`). This module builds the data from the tree,
so it can record where each value and each key stands, refuse duplicate keys in one mapping
(YAML 1.2 section 3.2.1.1 says keys are unique; PyYAML silently keeps the last), and cap what
a document may expand to, which stops alias ("billion laughs") bombs before they eat memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.reader import ReaderError

from .errors import Location, Problem, SpecError
from .yamlcompose import MAX_DEPTH, TooDeep, compose
from .yamlscalars import PLAIN, ScalarError, check_collection_tag, scalar_value

__all__ = [
    "MAX_ALIAS_BYTES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "SPLIT_SECTIONS",
    "SourceMap",
    "SpecSource",
    "read_spec_dir",
    "read_spec_files",
]

MAX_FILE_BYTES = 1024 * 1024
"""Largest spec file read, in bytes; a real spec is a few KiB."""

MAX_NODES = 200_000
"""Most YAML nodes one run may build, counting every expansion of an alias."""

MAX_ALIAS_BYTES = 1024 * 1024
"""Most bytes of text that aliases may add to a file's data beyond the file's own size:
bounds what one anchored string repeated by aliases can make the docs grow to."""

Path_ = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Where each dotted path of the merged spec data was written.

    ``values`` maps a path to the start of its value, ``keys`` to the start of the
    mapping key that names it (the better place to point at for a wrong field name).
    """

    values: dict[Path_, Location] = field(default_factory=dict)
    keys: dict[Path_, Location] = field(default_factory=dict)
    fallback: Location = Location("<spec>", 1, 1)

    def locate(self, path: Iterable[str | int], *, key: bool = False) -> Location:
        """Return the location of ``path``, or of its nearest written ancestor.

        Input: a path like ``("services", "api", "restart", "delay")``; ``key=True``
        prefers the key's position. Output: a :class:`Location`; never raises.
        """
        p = tuple(path)
        while True:
            if key and p in self.keys:
                return self.keys[p]
            if p in self.values:
                return self.values[p]
            if not p:
                return self.fallback
            p = p[:-1]


@dataclass
class SpecSource:
    """The merged data of all spec files and the positions of its nodes."""

    data: dict[str, Any]
    source_map: SourceMap
    files: list[Path]


class _Builder:
    """Turns a composed node tree into data, recording positions and counting nodes."""

    def __init__(self, file: str, smap: SourceMap, problems: list[Problem], budget: int) -> None:
        self.file = file
        self.smap = smap
        self.problems = problems
        self.nodes = 0
        self.budget = budget
        """Bytes of text the data may still hold (the file's size plus MAX_ALIAS_BYTES)."""

    def loc(self, node: yaml.Node) -> Location:
        return Location(self.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge(self.loc(node), f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
        self.smap.values.setdefault(path, self.loc(node))
        if len(path) > MAX_DEPTH:  # aliases can nest deeper than the text, or refer to themselves
            raise _TooLarge(self.loc(node), f"aliases nest lists and mappings deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            try:
                check_collection_tag(node)
            except ScalarError as exc:
                self._problem(node, path, str(exc))
                return None
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        self.budget -= len(node.value)
        if self.budget < 0:
            raise _TooLarge(self.loc(node), f"aliases repeat more than {MAX_ALIAS_BYTES} bytes of text (alias bomb?)")
        try:
            return scalar_value(node)  # type: ignore[arg-type]
        except ScalarError as exc:
            self._problem(node, path, str(exc))
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str | int, Any]:
        out: dict[str | int, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or (key_node.tag == PLAIN and key_node.value == "<<"):
                self._problem(key_node, path, "merge keys ('<<') are not supported; write the keys out")
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, path, "mapping keys must be strings or integers, not a list or mapping")
                continue
            try:
                key = scalar_value(key_node)
            except ScalarError as exc:
                self._problem(key_node, path, str(exc))
                continue
            if not isinstance(key, str | int) or isinstance(key, bool):
                self._problem(key_node, path, f"mapping keys must be strings or integers, got {key!r}")
                continue
            if key in out:
                first = self.smap.keys[(*path, key)]
                self._problem(key_node, (*path, key), f"duplicate key '{key}' (first written at line {first.line})")
                continue
            sub = (*path, key)  # one tuple for both tables
            self.smap.keys[sub] = self.loc(key_node)
            out[key] = self.build(value_node, sub)
        return out

    def _problem(self, node: yaml.Node, path: Path_, message: str) -> None:
        self.problems.append(Problem(self.loc(node), _dotted(path), message))


class _TooLarge(Exception):
    def __init__(self, location: Location, message: str) -> None:
        self.location = location
        self.message = message


def _dotted(path: Iterable[str | int]) -> str:
    """Render a path as ``services.api.restart.delay`` / ``scenarios[3].event``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _read_one(path: Path, display: str, problems: list[Problem]) -> tuple[dict[str, Any], SourceMap] | None:
    start = Location(display, 1, 1)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            problems.append(Problem(start, "", f"file is {size} bytes; spec files are limited to {MAX_FILE_BYTES}"))
            return None
        data = path.read_bytes()
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line, col = before.count(b"\n") + 1, exc.start - (before.rfind(b"\n") + 1) + 1
        problems.append(Problem(Location(display, line, col), "", "not UTF-8 text (save the file as UTF-8)"))
        return None
    except OSError as exc:
        problems.append(Problem(start, "", f"cannot read spec file: {exc.strerror or exc}"))
        return None
    try:
        node = compose(text)
    except TooDeep as exc:
        where = Location(display, exc.mark.line + 1, exc.mark.column + 1)
        problems.append(Problem(where, "", f"lists and mappings nest deeper than {MAX_DEPTH} levels"))
        return None
    except ReaderError as exc:
        head = text[: exc.position]
        line, col = head.count("\n") + 1, exc.position - (head.rfind("\n") + 1) + 1
        problems.append(
            Problem(
                Location(display, line, col),
                "",
                f"character U+{int(exc.character):04X} is not allowed in YAML ({exc.reason})",
            )
        )
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = Location(display, mark.line + 1, mark.column + 1) if mark else start
        context = ""
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            context = f" ({exc.context} at line {exc.context_mark.line + 1})"
        problems.append(Problem(where, "", f"YAML syntax error: {exc.problem or exc.context}{context}"))
        return None
    except yaml.YAMLError as exc:
        problems.append(Problem(start, "", f"YAML error: {exc}"))
        return None
    if node is None:
        return {}, SourceMap()
    file_map = SourceMap()
    builder = _Builder(display, file_map, problems, len(text) + MAX_ALIAS_BYTES)
    try:
        data = builder.build(node, ())
    except _TooLarge as exc:
        problems.append(Problem(exc.location, "", exc.message))
        return None
    if not isinstance(data, dict):
        problems.append(Problem(start, "", "a spec file must be a mapping of top-level sections"))
        return None
    return data, file_map


def shown_path(path: Path) -> str:
    """How a spec file is named in messages: relative to the working directory when it lies
    below it (``spec/services.yaml``), else absolute, so the name can be opened from where
    the command ran."""
    full = path.absolute()
    cwd = Path.cwd()
    return str(full.relative_to(cwd)) if full.is_relative_to(cwd) else str(full)


def read_spec_files(files: list[Path]) -> SpecSource:
    """Read and merge spec files; each must be a mapping of distinct top-level sections.

    Input: the files (read in the given order; named in messages by :func:`shown_path`).
    Output: :class:`SpecSource`. Raises :class:`SpecError` with every
    syntax, duplicate-key, size and merge problem of all files.
    """
    problems: list[Problem] = []
    smap = SourceMap()
    merged: dict[str, Any] = {}
    for path in files:
        display = shown_path(path)
        read = _read_one(path, display, problems)
        if read is None:
            continue
        data, file_map = read
        for key, value in data.items():
            if key in merged:
                first = smap.keys[(key,)]
                problems.append(Problem(file_map.keys[(key,)], key, f"section '{key}' is also defined in {first.file}"))
                continue
            merged[key] = value
            for table, into in ((file_map.keys, smap.keys), (file_map.values, smap.values)):
                into.update({p: loc for p, loc in table.items() if p and p[0] == key})
    if files:
        smap.fallback = Location(shown_path(files[0]), 1, 1)
    if problems:
        raise SpecError(problems)
    return SpecSource(merged, smap, list(files))


def read_spec_dir(spec_dir: Path) -> SpecSource:
    """Read every ``*.yaml``/``*.yml`` file of ``spec_dir`` (sorted by name) and merge them, then
    add the entries of each ``<section>.d/*.yaml`` (:data:`SPLIT_SECTIONS`) to their section.

    Raises :class:`SpecError` when the folder is missing or holds no spec file, or for
    any problem :func:`read_spec_files` reports.
    """
    if not spec_dir.is_dir():
        raise SpecError([Problem(Location(str(spec_dir), 1, 1), "", "spec folder not found")])
    entries = sorted(p for p in spec_dir.iterdir() if p.suffix in {".yaml", ".yml"})
    odd = [p for p in entries if not p.is_file()]
    if odd:
        raise SpecError(
            [
                Problem(
                    Location(shown_path(p), 1, 1),
                    "",
                    "not a regular file (a folder or a dangling link?)",
                )
                for p in odd
            ]
        )
    files = entries
    if not files:
        raise SpecError([Problem(Location(str(spec_dir), 1, 1), "", "no *.yaml files in the spec folder")])
    source = read_spec_files(files)
    parts = _split_parts(spec_dir)
    return _merge_parts(source, parts) if parts else source


SPLIT_SECTIONS = ("services", "external_units", "log_policies", "healthchecks")
"""Sections of named entries a spec may spread over a folder ``<section>.d/`` (conf.d style):
each ``*.yaml`` file there is a mapping of entries (``api: {...}``), read with the same caps as
any spec file, so a spec of thousands of services fits in files of at most MAX_FILE_BYTES."""


def _split_parts(spec_dir: Path) -> list[tuple[str, Path]]:
    """``(section, file)`` of every ``<section>.d/*.yaml`` of ``spec_dir``, sorted by section order
    and file name. Raises :class:`SpecError` for a file that is not a regular file."""
    odd = [
        Problem(Location(shown_path(d), 1, 1), "",
                f"not a folder of entries zachot-gen reads: only {', '.join(f'{x}.d/' for x in SPLIT_SECTIONS)}, "
                "each a plain folder")
        for d in sorted(spec_dir.glob("*.d"))
        if d.name[:-2] not in SPLIT_SECTIONS or d.is_symlink() or not d.is_dir()
    ]  # fmt: skip
    if odd:  # a typo or a link would otherwise drop its entries without a word
        raise SpecError(odd)
    out: list[tuple[str, Path]] = []
    for section in SPLIT_SECTIONS:
        folder = spec_dir / f"{section}.d"
        if not folder.is_dir():
            continue
        entries = sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml"})
        links = [p for p in entries if not p.is_file() or p.is_symlink()]
        if links:
            raise SpecError([Problem(Location(shown_path(p), 1, 1), "", "not a regular file (a folder or a link?)")
                             for p in links])  # fmt: skip
        out += [(section, p) for p in entries]
    return out


def _merge_parts(source: SpecSource, parts: list[tuple[str, Path]]) -> SpecSource:
    """``source`` with each part file's entries added to its section; an entry name already
    written (in the section's own file or an earlier part) is refused at the part's key."""
    problems: list[Problem] = []
    data, smap = dict(source.data), source.source_map
    for section, path in parts:
        display = shown_path(path)
        read = _read_one(path, display, problems)
        if read is None:
            continue
        entries, file_map = read
        current = data.get(section, {})
        if not isinstance(current, dict):
            continue  # the section's own file already fails validation at the section
        current = dict(current)
        taken = {name for name in entries if name in current}
        for name in taken:
            first = smap.keys.get((section, name), smap.fallback)
            problems.append(Problem(file_map.keys[(name,)], f"{section}.{name}",
                                    f"'{name}' is also defined in {first.file} (line {first.line})"))
        current.update((name, value) for name, value in entries.items() if name not in taken)
        for table, into in ((file_map.keys, smap.keys), (file_map.values, smap.values)):
            into.update(((section, *p), loc) for p, loc in table.items() if p and p[0] not in taken)
        data[section] = current
        smap.keys.setdefault((section,), Location(display, 1, 1))
        smap.values.setdefault((section,), Location(display, 1, 1))
    if problems:
        raise SpecError(problems)
    return SpecSource(data, smap, [*source.files, *(p for _, p in parts)])
