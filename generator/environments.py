"""Environments: the base spec plus one overlay file per environment, deep-merged.

``spec/*.yaml`` is the base; ``spec/env/<name>.yaml`` (e.g. ``staging``, ``production``) holds
only what differs there, as Kamal's destinations do (``config/deploy.<destination>.yml``). The
merge: a mapping in both is merged key by key, anything else the overlay writes replaces the
base's value (a list is replaced, never appended to); ``hosts`` is replaced as a whole, since an
environment's servers are its own. The source map follows the data, so every
later error points into the file that wrote the value it is about.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import Location, Problem, SpecError
from .spectypes import NAME_RE
from .yamlsource import SourceMap, SpecSource, read_spec_dir, read_spec_files, shown_path

__all__ = ["ENV_DIR", "dump_config", "environment_names", "merge_sources", "read_environment", "shown_config"]

ENV_DIR = "env"
"""The folder of the spec holding one overlay file per environment."""

def _overlays(spec_dir: Path) -> dict[str, Path]:
    folder = spec_dir / ENV_DIR
    if not folder.exists() and not folder.is_symlink():
        return {}
    if folder.is_symlink() or not folder.is_dir():
        raise SpecError([Problem(Location(shown_path(folder), 1, 1), "",
                                 "must be a plain folder holding one <name>.yaml per environment")])
    files = sorted(p for p in folder.iterdir() if p.suffix in {".yaml", ".yml"})
    bad = [p for p in files if not NAME_RE.fullmatch(p.stem) or not p.is_file() or p.is_symlink()]
    if bad:
        raise SpecError([
            Problem(Location(shown_path(p), 1, 1), "",
                    "an environment file is a regular file named <name>.yaml, the name in lowercase letters, "
                    "digits, '-' and '_' (e.g. production.yaml)")
            for p in bad
        ])  # fmt: skip
    names: dict[str, Path] = {}
    for p in files:
        if p.stem in names:
            where = Location(shown_path(p), 1, 1)
            raise SpecError([Problem(where, "", f"environment '{p.stem}' is also {names[p.stem]}")])
        names[p.stem] = p
    return names


def environment_names(spec_dir: Path) -> list[str]:
    """The environments of ``spec_dir`` (``env/<name>.yaml``), sorted; empty for a spec without any.

    Raises :class:`SpecError` for a file whose name is not an environment name.
    """
    return sorted(_overlays(spec_dir))


def _merge(base: Any, over: Any, path: tuple[str | int, ...], smap: SourceMap, omap: SourceMap) -> Any:
    if isinstance(base, dict) and isinstance(over, dict) and path != ("hosts",):
        out = dict(base)
        for key, value in over.items():
            child = (*path, key)
            if key in out:
                out[key] = _merge(out[key], value, child, smap, omap)
            else:
                out[key] = value
                _take(child, smap, omap)
        return out
    _take(path, smap, omap)
    return over


def _take(path: tuple[str | int, ...], smap: SourceMap, omap: SourceMap) -> None:
    """The overlay replaced the value at ``path``: its positions replace the base's below it."""
    n = len(path)
    for table, theirs in ((smap.values, omap.values), (smap.keys, omap.keys)):
        for p in [p for p in table if p[:n] == path]:
            del table[p]
        table.update({p: loc for p, loc in theirs.items() if p[:n] == path})


def merge_sources(base: SpecSource, overlay: SpecSource) -> SpecSource:
    """``base`` deep-merged with ``overlay`` (module doc); positions follow the value that won."""
    smap = SourceMap(dict(base.source_map.values), dict(base.source_map.keys), base.source_map.fallback)
    data = _merge(base.data, overlay.data, (), smap, overlay.source_map)
    return SpecSource(data, smap, [*base.files, *overlay.files])


def shown_config(data: dict[str, Any]) -> dict[str, Any]:
    """Spec data fit to print: every ``secret: true`` variable's example replaced by ``<secret>``
    (the spec holds no real secret, but an example marked secret is never shown anywhere)."""
    project = data.get("project")
    if not isinstance(project, dict) or not isinstance(project.get("env_vars"), dict):
        return data
    env_vars = {
        name: ({**var, "example": "<secret>"} if isinstance(var, dict) and var.get("secret") is True else var)
        for name, var in project["env_vars"].items()
    }
    return {**data, "project": {**project, "env_vars": env_vars}}


_YAML12_NUMBER = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|0o[0-7]+|0x[0-9a-fA-F]+|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)


class _Dumper(yaml.SafeDumper):
    """Writes a string quoted whenever a YAML 1.1 or 1.2 reader could take it for something else
    (``1e3``, ``0o17``, ``no``, ``1:30``), so the printed spec reads back as the same data here."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    implicit = yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    quote = implicit != "tag:yaml.org,2002:str" or bool(_YAML12_NUMBER.fullmatch(value)) or value.lower() in {"y", "n"}
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quote else None)


_Dumper.add_representer(str, _str)


def dump_config(data: dict[str, Any]) -> str:
    """``data`` as YAML text (keys in order, Unicode kept) that reads back as the same data."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def read_environment(spec_dir: Path, env: str) -> SpecSource:
    """The spec of environment ``env``: ``spec_dir``'s base files merged with ``env/<env>.yaml``.

    Raises :class:`SpecError` for an unknown environment or any problem reading the files.
    """
    overlays = _overlays(spec_dir)
    if env not in overlays:
        known = ", ".join(overlays) or "none"
        where = Location(str(spec_dir / ENV_DIR), 1, 1)
        raise SpecError([Problem(where, "", f"no environment '{env}' (known: {known})")])
    return merge_sources(read_spec_dir(spec_dir), read_spec_files([overlays[env]]))
