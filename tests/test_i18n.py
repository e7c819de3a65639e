"""Every language catalog has the same labels, and every label a template uses exists."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from generator.environment import TEMPLATES_DIR

LANGS = sorted(p.stem for p in (TEMPLATES_DIR / "i18n").glob("*.yaml"))


def _keys(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return {prefix}
    return {k for key, value in node.items() for k in _keys(value, f"{prefix}.{key}" if prefix else str(key))}


def _catalog(lang: str) -> dict[str, Any]:
    return yaml.safe_load((TEMPLATES_DIR / "i18n" / f"{lang}.yaml").read_text(encoding="utf-8"))


def test_at_least_ru_and_en() -> None:
    assert {"ru", "en"} <= set(LANGS)


@pytest.mark.parametrize("lang", LANGS)
def test_same_keys_as_ru(lang: str) -> None:
    assert _keys(_catalog(lang)) == _keys(_catalog("ru"))


@pytest.mark.parametrize("lang", LANGS)
def test_same_fields_as_ru(lang: str) -> None:
    ru, other = _catalog("ru"), _catalog(lang)
    for key in _keys(ru):
        a, b = ru, other
        for part in key.split("."):
            a, b = a[part], b[part]
        assert set(re.findall(r"\{(\w+)\}", str(a))) == set(re.findall(r"\{(\w+)\}", str(b))), key


def test_literal_keys_used_by_templates_exist() -> None:
    keys = _keys(_catalog("ru"))
    used = {
        m for path in TEMPLATES_DIR.rglob("*.j2") for m in re.findall(r'\bt\("([a-z_.]+[a-z_])"[,)]', path.read_text())
    }
    assert used, "no t(...) calls found: the pattern is stale"
    assert used <= keys, used - keys
