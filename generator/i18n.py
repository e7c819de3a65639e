"""Label catalogs of the generated docs, one YAML file per language (templates/i18n/).

Templates never hold language-specific text: they call ``t("readme.title", project=...)``.
A missing key or a missing ``{field}`` is an error, never an empty string.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from .errors import TemplateError

__all__ = ["Catalog", "load_catalog"]


class Catalog:
    """One language's labels: nested keys addressed as ``"section.key"``."""

    def __init__(self, language: str, data: dict[str, Any]) -> None:
        self.language = language
        self._data = data

    def get(self, key: str) -> Any:
        """The raw value at dotted ``key`` (a string or a mapping); raises TemplateError if absent."""
        node: Any = self._data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                raise TemplateError(f"i18n/{self.language}.yaml: no label '{key}'")
            node = node[part]
        return node

    def __call__(self, key: str, **params: object) -> str:
        """The label at ``key`` with ``{name}`` fields filled from ``params``.

        Raises :class:`TemplateError` when the key is missing, is not text, or names a
        field not given.
        """
        text = self.get(key)
        if not isinstance(text, str):
            raise TemplateError(f"i18n/{self.language}.yaml: '{key}' is not a text label")
        try:
            return text.format(**params)
        except (KeyError, IndexError, ValueError) as exc:
            raise TemplateError(f"i18n/{self.language}.yaml: label '{key}' needs {exc}") from None


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> object:
    # libyaml when PyYAML has it: the catalogs are the package's own files, read on every run
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 (a safe loader)


def load_catalog(templates_dir: Path, language: str) -> Catalog:
    """Load ``templates_dir/i18n/<language>.yaml``; raises :class:`TemplateError` if missing or invalid.

    Parsed once per file content (a tree of 200 hosts renders 200 times; the text is re-read,
    so an edited catalog is seen)."""
    path = templates_dir / "i18n" / f"{language}.yaml"
    try:
        data = _parsed(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TemplateError(f"cannot load label catalog {path}: {exc}") from None
    if not isinstance(data, dict):
        raise TemplateError(f"label catalog {path} must be a mapping")
    return Catalog(language, data)
