"""Spec files -> validated :class:`Spec`; every mistake -> a located :class:`Problem`.

The steps: read the YAML (:mod:`generator.yamlsource`), validate the shapes with
pydantic, expand ``${fact}`` placeholders in prose (:mod:`generator.facts`), validate
again, check cross-references (:mod:`generator.crossref`). Each step collects all its
problems; the first step that finds any raises one :class:`SpecError` with all of them.
"""

from __future__ import annotations

import difflib
import functools
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .crossref import check_references
from .environments import read_environment
from .errors import Problem, SpecError
from .facts import FactTemplate, facts_of, optional_fact_field, placeholders
from .models import Spec
from .pathpolicy import path_problems
from .yamlsource import SourceMap, SpecSource, read_spec_dir

__all__ = ["MAX_EXPANDED_CHARS", "MAX_TOTAL_EXPANDED_CHARS", "Loaded", "load", "load_spec", "validate_source"]

Path_ = tuple[str | int, ...]

MAX_EXPANDED_CHARS = 64 * 1024
"""Longest a prose value may grow to by its ``${fact}`` placeholders (characters): bounds what a
short value repeating a long fact can make the docs grow to, before anything is built."""

MAX_TOTAL_EXPANDED_CHARS = 4 * 1024 * 1024
"""Most characters placeholders may add to the whole spec (a real spec adds a few thousand)."""


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Path_, bool]:
    """Map a pydantic ``loc`` onto the data: drop union tags; say if the last part exists."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            out.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            out.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and node.get("kind") == part:
            continue  # discriminated-union tag, not a key of the data
        elif part == "[key]":
            continue
        else:
            out.append(part)
            return tuple(out), False
    return tuple(out), True


def _as_model(tp: Any, node: Any) -> type[BaseModel] | None:
    """The model class ``tp`` stands for at ``node`` (a union is resolved by ``kind``)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _as_model(typing.get_args(tp)[0], node)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            model = _as_model(arg, node)
            kind = model.model_fields.get("kind") if model else None
            if model and (
                kind is None or (isinstance(node, dict) and node.get("kind") in typing.get_args(kind.annotation))
            ):
                return model
        return None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def _step(tp: Any, part: str | int, node: Any) -> Any:
    """The type reached from ``tp`` by stepping into ``part``."""
    model = _as_model(tp, node)
    if model is not None:
        field = model.model_fields.get(str(part))
        return field.annotation if field else None
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return typing.get_args(tp)[-1] if typing.get_origin(tp) in (dict, list) else None


def _known_fields(data: Any, parent: Path_) -> list[str]:
    """Field names allowed at ``parent`` in the data, for "did you mean"."""
    tp: Any = Spec
    node = data
    for part in parent:
        tp = _step(tp, part, node)
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
        if tp is None:
            return []
    model = _as_model(tp, node)
    return list(model.model_fields) if model else []


def _message(err: dict[str, Any], data: Any, path: Path_) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        known = _known_fields(data, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (f" (allowed: {', '.join(known)})" if known else "")
        return f"unknown field '{path[-1]}'{hint}"
    if kind == "missing" and len(path) == 1:
        return f"missing required section '{path[0]}': no spec file defines it"
    if kind == "missing":
        return f"missing required field '{path[-1]}'"
    if kind in {"value_error", "assertion_error"} and "ctx" in err:
        return str(err["ctx"].get("error", err["msg"]))
    return str(err["msg"])


def _problems_of(exc: ValidationError, data: Any, smap: SourceMap) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        path, exists = _data_path(data, err["loc"])
        is_key = err["type"] == "extra_forbidden" or "[key]" in err["loc"] or not exists
        location = smap.locate(path if exists else path[:-1], key=is_key)
        problems.append(Problem(location, _dotted(path), _message(dict(err), data, path)))
    return problems


def _validate(source: SpecSource, data: dict[str, Any]) -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(_problems_of(exc, data, source.source_map)) from None


@dataclass
class _Expansion:
    """What expanding ``${fact}`` placeholders needs, and how many characters it may still add."""

    facts: typing.Mapping[str, str]
    smap: SourceMap
    out: list[Problem]
    unset: typing.Callable[[str], str | None]
    budget: int = MAX_TOTAL_EXPANDED_CHARS

    def run(self, node: Any, path: Path_) -> Any:
        if isinstance(node, dict):
            return {k: self.run(v, (*path, k)) for k, v in node.items()}
        if isinstance(node, list):
            return [self.run(v, (*path, i)) for i, v in enumerate(node)]
        if not isinstance(node, str) or "$" not in node:
            return node
        try:
            names = placeholders(node)
        except ValueError as exc:
            return self._refuse(node, path, str(exc))
        unknown = [name for name in names if name not in self.facts]
        for name in unknown:
            close = difflib.get_close_matches(name, list(self.facts), n=1)
            field = self.unset(name)
            hint = (f"; it is defined by {field}, which is not set" if field
                    else f"; did you mean '${{{close[0]}}}'?" if close else "")  # fmt: skip
            self._refuse(node, path, f"unknown placeholder '${{{name}}}'{hint}")
        if unknown:
            return node
        grown = len(node) + sum(len(self.facts[name]) for name in names)
        self.budget -= grown - len(node)
        if grown > max(len(node), MAX_EXPANDED_CHARS) or self.budget < 0:
            return self._refuse(
                node, path, f"its ${{...}} placeholders expand it to {grown} characters; at most "
                f"{MAX_EXPANDED_CHARS} per value and {MAX_TOTAL_EXPANDED_CHARS} for the whole spec are allowed"
            )  # fmt: skip
        return FactTemplate(node).substitute(self.facts)

    def _refuse(self, node: str, path: Path_, message: str) -> str:
        self.out.append(Problem(self.smap.locate(path), _dotted(path), message))
        return node


def validate_source(source: SpecSource) -> Spec:
    """Validate merged spec data and resolve its placeholders and references.

    Input: what :func:`generator.yamlsource.read_spec_files` returned. Output: the
    :class:`Spec`, its prose with ``${fact}`` placeholders expanded. Raises
    :class:`SpecError` listing every problem of the first failing step.
    """
    spec = _validate(source, source.data)
    smap = source.source_map
    # Names first: a placeholder such as ${api.rotate} is a fact of the log policy the service
    # names, so a wrong name must be reported as itself, not as the unknown placeholder it causes.
    found = check_references(spec)
    if found:
        raise SpecError([Problem(smap.locate(path), _dotted(path), msg) for path, msg in found])
    problems: list[Problem] = []
    unset = functools.partial(optional_fact_field, spec)
    expanded = _Expansion(facts_of(spec), source.source_map, problems, unset).run(source.data, ())
    if problems:
        raise SpecError(problems)
    spec = _validate(source, expanded)
    found = check_references(spec) or list(path_problems(spec))
    if found:
        raise SpecError([Problem(smap.locate(path), _dotted(path), msg) for path, msg in found])
    return spec


@dataclass(frozen=True)
class Loaded:
    """A validated spec and where each of its fields was written (for later findings)."""

    spec: Spec
    source_map: SourceMap
    files: tuple[Path, ...] = ()
    """The spec files read, in order."""

    def problem(self, path: tuple[str | int, ...], message: str) -> Problem:
        """A :class:`Problem` for ``path`` of the spec, located at the key that names it."""
        return Problem(self.source_map.locate(path, key=True), _dotted(path), message)


def load(spec_dir: Path, env: str | None = None) -> Loaded:
    """Read every YAML file of ``spec_dir`` (merged with ``env/<env>.yaml`` when ``env`` is given,
    :mod:`generator.environments`); return the validated spec with its source map.

    Raises :class:`SpecError` (all problems, each ``file:line:col: path: message``).
    """
    source = read_spec_dir(spec_dir) if env is None else read_environment(spec_dir, env)
    return Loaded(validate_source(source), source.source_map, tuple(source.files))


def load_spec(spec_dir: Path, env: str | None = None) -> Spec:
    """Read every YAML file of ``spec_dir`` (and environment ``env``'s overlay) and return the
    validated :class:`Spec`.

    Raises :class:`SpecError` (all problems, each ``file:line:col: path: message``).
    """
    return load(spec_dir, env).spec
