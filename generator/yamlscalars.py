"""Scalar values of a spec: YAML 1.2 core schema, and a refusal for what YAML 1.1 reads otherwise.

PyYAML implements YAML 1.1, whose implicit types surprise people: ``no`` is false,
``1:30`` is 90 (base 60), ``0640`` is 416 (octal), ``2024-02-30`` is a date that does not
exist. YAML 1.2's core schema (YAML 1.2.2, section 10.3.2) reads these as text or plain
decimals. A spec is read by people and editors that follow either version, so a plain
(unquoted) scalar the two versions read differently is refused with a message that says
how to write it unambiguously; everything else gets its YAML 1.2 core value.

Explicit tags are limited to the core schema's (``!!str``, ``!!int``, ``!!float``,
``!!bool``, ``!!null``, ``!!map``, ``!!seq``); their content must fit the tag. Text may
not hold control characters other than tab and newline, nor lone surrogates (they cannot
be written to a UTF-8 file). Every refusal raises :class:`ScalarError` with a message;
:mod:`generator.yamlsource` adds the node's ``file:line:col``.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any

import yaml

__all__ = ["MAX_INT_DIGITS", "PLAIN", "ScalarError", "check_collection_tag", "scalar_value"]

PLAIN = "zachot:plain"
"""Tag the spec loader gives every untagged plain scalar, so resolution happens here, once."""

MAX_INT_DIGITS = 30
"""Longest integer accepted, in digits; no spec value needs more, and int() of thousands of
digits is slow or refused by Python (sys.int_info.default_max_str_digits)."""

_CORE = "tag:yaml.org,2002:"
_NULL = re.compile(r"null|Null|NULL|~|")
_BOOL = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?(\.inf|\.Inf|\.INF)")
_NAN = re.compile(r"\.nan|\.NaN|\.NAN")
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_YAML11 = yaml.SafeLoader("")
_KIND = {"bool": "a boolean", "int": "a number", "float": "a number", "null": "null",
         "timestamp": "a date", "str": "text"}  # fmt: skip


class ScalarError(ValueError):
    """Raised when a scalar cannot be given one clear value; the message says why and what to write."""


def _core(text: str) -> tuple[str, Any]:
    """YAML 1.2 core schema resolution of a plain scalar: ``(tag name, value)``."""
    if _NULL.fullmatch(text):
        return "null", None
    if text in _BOOL:
        return "bool", _BOOL[text]
    if _INT10.fullmatch(text) or _INT8.fullmatch(text) or _INT16.fullmatch(text):
        return "int", _int(text)
    if _FLOAT.fullmatch(text):
        return "float", _finite(text)
    if _INF.fullmatch(text):
        return "float", -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return "float", math.nan
    return "str", text


def _int(text: str) -> int:
    digits = text.lstrip("+-")
    if len(digits) > MAX_INT_DIGITS:
        raise ScalarError(f"an integer of {len(digits)} digits; at most {MAX_INT_DIGITS} are accepted")
    if digits.startswith("0o"):
        return int(text.replace("0o", ""), 8)
    if digits.startswith("0x"):
        return int(text.replace("0x", ""), 16)
    return int(text)


def _finite(text: str) -> float:
    if len(text) > 64:
        raise ScalarError(f"a number of {len(text)} characters; write it shorter")
    value = float(text)
    if math.isinf(value):
        raise ScalarError(f"{text} is too large for a number (it would be infinity)")
    return value


def _yaml11_kind(text: str) -> str:
    tag: str = _YAML11.resolve(yaml.ScalarNode, text, (True, False))  # type: ignore[no-untyped-call]
    return tag.removeprefix(_CORE)


def _plain(text: str) -> Any:
    kind, value = _core(text)
    old = _yaml11_kind(text)
    if kind == "int" and old == "int" and re.fullmatch(r"[-+]?0[0-9]+", text):
        return _raise(
            f"'{text}' is {int(text, 8)} (octal) in YAML 1.1 and {value} in YAML 1.2; quote it if you mean text "
            '(a mode is written "0640"), else write the number without the leading zero'
        )
    if old != kind and not (old == "float" and kind == "int"):
        shown = _KIND.get(old, old)
        fix = {
            "bool": "write true or false for a flag",
            "int": "write a plain decimal number without leading zeros, ':' or '_'",
            "float": "write a plain decimal number",
            "timestamp": "dates are not spec values",
        }.get(old, "write it as a plain decimal number")
        return _raise(
            f"'{text}' is {shown} in YAML 1.1 and {_KIND[kind]} in YAML 1.2; quote it if you mean text, else {fix}"
        )
    return value


@functools.lru_cache(maxsize=4096)
def _plain_value(text: str) -> Any:
    """The value of an untagged plain scalar; the same words recur across a spec's services
    (``true``, ``bench``, ``0640``...), so each is resolved once per run (values are immutable;
    a refusal raises again each time, it is not cached)."""
    value = _plain(text)
    return _text(value) if isinstance(value, str) else value


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_CORE) if tag.startswith(_CORE) else tag


def _raise(message: str) -> Any:
    raise ScalarError(message)


def _text(value: str) -> str:
    bad = _BAD_CHARS.search(value)
    if bad:
        raise ScalarError(
            f"text holds the control character {bad.group()!r} at offset {bad.start()}; "
            "only tab and newline are allowed"
        )
    return value


def scalar_value(node: yaml.ScalarNode) -> Any:
    """The value of a scalar node composed by the spec loader.

    Input: a node whose tag is :data:`PLAIN` (untagged plain scalar), ``!!str`` (quoted or
    tagged text) or another explicit tag. Output: ``None``, ``bool``, ``int``, ``float`` or
    ``str``. Raises :class:`ScalarError` for an unsupported tag, content that does not fit
    its tag, a YAML 1.1/1.2 ambiguity, an integer over :data:`MAX_INT_DIGITS` digits, a
    decimal that overflows to infinity, or text with control characters.
    """
    text = str(node.value)
    tag = node.tag
    if tag == PLAIN:
        return _plain_value(text)
    if not tag.startswith(_CORE) or tag.removeprefix(_CORE) not in {"str", "int", "float", "bool", "null"}:
        raise ScalarError(
            f"tag '{_short(tag)}' is not supported; spec values are text, numbers, true/false, null, lists and mappings"
        )
    want = tag.removeprefix(_CORE)
    if want == "str":
        return _text(text)
    kind, value = _core(text)
    if kind == want or (want == "float" and kind == "int"):
        return float(value) if want == "float" else value
    raise ScalarError(f"'{text}' is not a valid !!{want}")


def check_collection_tag(node: yaml.Node) -> None:
    """Refuse a list or mapping with a tag other than ``!!seq``/``!!map`` (``!!set``, ``!!omap``,
    custom tags). Raises :class:`ScalarError`."""
    if node.tag not in (f"{_CORE}seq", f"{_CORE}map"):
        raise ScalarError(f"tag '{_short(node.tag)}' is not supported; use a plain list or mapping")
