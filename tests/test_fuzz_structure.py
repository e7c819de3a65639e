"""Hostile YAML *structure and text* at real value positions of a valid spec.

test_fuzz.py mutates values and writes them back with ``yaml.safe_dump``, so it never
reaches what only YAML text can say: anchors and aliases, explicit tags, deep nesting,
YAML 1.1's implicit types (dates, base-60 and octal numbers, ``yes``/``no``), special
floats and raw or escaped control characters. Here hypothesis writes such text straight
into the `single_api_en` fixture at the place of one of its values (flow syntax inside a
flow collection, block syntax where a block may stand), so the rest of the spec stays
valid and the hostile part is what gets tested.

Each case runs the real ``render`` command in-process (click's CliRunner) inside a forked
child with a 4 GiB address-space limit and a time limit, so an alias bomb or a runaway
recursion costs one case, not the test run. Outcomes:

- ok: exit 0 and the tree equals ``build_files`` of the spec;
- located: exit 2 and every message is ``spec/spec.yaml:L:C: ...``;
- traceback: an exception other than SystemExit, an exit code other than 0/2, or
  "Traceback" in the output;
- unlocated: exit 2 with a message that is not ``file:L:C:``, or that points at 1:1
  (line 1 is the fixture's comment, never touched) or past the end of the file;
- partial: build/ exists after a failed render;
- amplified: exit 0 with a tree over 10 MB (the spec file itself is under 1 MiB);
- incomplete: exit 0 but the tree differs from ``build_files``;
- accepted: exit 0 for a value the models must refuse (a path with a trailing newline,
  tab, NUL, BOM... or any value holding a lone surrogate);
- slow: no answer within the time limit; crashed: the child died without an answer.

Every category gets ZACHOT_FUZZ_EXAMPLES // 8 examples (default 300 in all, shared with
test_fuzz.py) and must end with no failure kind at all; the counts per category and the
shortest example of each distinct failure are printed in the terminal summary.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import resource
import shutil
import sys
import tempfile
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from helpers import SPEC_CASES, tree_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generator import build_files
from generator.cli import main

BASE_TEXT = (SPEC_CASES["single_api_en"] / "spec.yaml").read_text()
BASE = yaml.safe_load(BASE_TEXT)
EXAMPLES = int(os.environ.get("ZACHOT_FUZZ_EXAMPLES", "300"))
LOCATED = re.compile(r"^spec/spec\.yaml:(\d+):(\d+): ")
AMPLIFIED_BYTES = 10 * 1024 * 1024
"""An exit-0 tree larger than this came from aliases repeating text (the file is < 1 MiB)."""
CASE_TIMEOUT = 60.0
"""Seconds one case may take (a normal render takes about 0.1 s)."""
MEMORY_LIMIT = 4 * 1024**3
"""Address space a case may add to what the forked child starts with."""
BIG_TEXT_BYTES = 100_000_000
"""Most text a big-string case may repeat (string size x aliases): the unfixed generator
rendered 500 KB x 200 aliases (2 x 100 MB of docs) in 2.3 s with 0.5 GB of memory."""

OK_KINDS = ("ok", "located")
FAIL_KINDS = ("traceback", "unlocated", "partial", "amplified", "incomplete", "accepted", "slow", "crashed")


# --- where values stand in the fixture -----------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One value of the fixture: ``BASE_TEXT[start:end]`` is its text."""

    path: tuple[str | int, ...]
    start: int
    end: int
    flow: bool
    """Inside a flow collection: only flow syntax may replace it."""
    indent: int
    """Column for block content written on the lines after the slot."""
    kind: str
    """Type of the fixture's value: bool, int, float, str, list or dict."""

    @property
    def text(self) -> str:
        return BASE_TEXT[self.start : self.end]

    @property
    def dotted(self) -> str:
        out = ""
        for part in self.path:
            out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
        return out


def _value_at(path: tuple[str | int, ...]) -> Any:
    node: Any = BASE
    for part in path:
        node = node[part]
    return node


def _find_slots() -> list[Slot]:
    found: list[Slot] = []

    def visit(node: yaml.Node, path: tuple[str | int, ...], flow: bool, indent: int) -> None:
        if isinstance(node, yaml.ScalarNode) or node.flow_style:
            value = _value_at(path)
            kind = "bool" if isinstance(value, bool) else type(value).__name__
            found.append(Slot(path, node.start_mark.index, node.end_mark.index, flow, indent, kind))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                visit(value, (*path, key.value), flow or bool(node.flow_style), key.start_mark.column + 2)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                visit(item, (*path, i), flow or bool(node.flow_style), item.start_mark.column + 2)

    root = yaml.compose(BASE_TEXT, Loader=yaml.SafeLoader)
    assert isinstance(root, yaml.MappingNode)
    for key, value in root.value:
        visit(value, (key.value,), False, key.start_mark.column + 2)
    return sorted(found, key=lambda s: s.start)


SLOTS = _find_slots()
SCALAR_SLOTS = [s for s in SLOTS if s.kind not in {"list", "dict"}]
BY_KIND = {kind: [s for s in SLOTS if s.kind == kind] for kind in {s.kind for s in SLOTS}}
PATH_CHARS = re.compile(r"[A-Za-z0-9._/@+-]+")
"""What generator.models allows in a path (AbsPath)."""
PATH_SLOTS = [s for s in SLOTS if s.kind == "str" and str(_value_at(s.path)).startswith("/")]
PROSE_SLOTS = [s for s in SCALAR_SLOTS if s.kind == "str" and " " in _value_at(s.path) and "$" not in _value_at(s.path)]
"""Free-text values (titles, comments, symptoms...): where a long string is valid."""
PROSE_LISTS = [s for s in SLOTS if s.kind == "list" and all(isinstance(v, str) for v in _value_at(s.path))]
assert BY_KIND["bool"] and BY_KIND["int"] and PATH_SLOTS and PROSE_LISTS


def slot_of(*kinds: str, pool: list[Slot] | None = None) -> st.SearchStrategy[Slot]:
    """A slot of one of ``kinds`` (or from ``pool``) half the time, any value slot otherwise."""
    typed = pool if pool is not None else [s for k in kinds for s in BY_KIND.get(k, [])]
    return st.one_of(st.sampled_from(typed), st.sampled_from(SLOTS))


# --- cases ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    category: str
    text: str
    label: str
    """Short description of what was written where (for the report)."""
    lines: tuple[tuple[int, int], ...]
    """1-based line ranges the inserted text covers."""
    weight: int
    """Size of the inserted text; the smallest failing case of a kind is reported."""
    must_refuse: str = ""
    """Why exit 0 would be wrong for this case ("" when a tree may be right)."""


def _short(text: str, limit: int = 90) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 30]}…({len(text)} chars)…{shown[-20:]}"


def make_case(category: str, edits: list[tuple[Slot, str]], label: str | None = None, must_refuse: str = "") -> Case:
    """Replace each slot's text by its snippet (slots must not overlap)."""
    edits = sorted(edits, key=lambda e: e[0].start)
    parts: list[str] = []
    lines: list[tuple[int, int]] = []
    at = 0
    line = 1
    for slot, snippet in edits:
        assert slot.start >= at, "overlapping slots"
        parts.append(BASE_TEXT[at : slot.start])
        line += BASE_TEXT[at : slot.start].count("\n")
        lines.append((line, line + snippet.count("\n")))
        line += snippet.count("\n")
        parts.append(snippet)
        at = slot.end
    parts.append(BASE_TEXT[at:])
    if label is None:
        label = "; ".join(f"{slot.dotted}: {_short(snippet)}" for slot, snippet in edits)
    return Case(category, "".join(parts), label, tuple(lines), sum(len(s) for _, s in edits), must_refuse)


# --- strategies, one per category ---------------------------------------------------------------


def _disjoint(slots: list[Slot]) -> list[Slot]:
    """``slots`` without those overlapping an earlier one (a flow collection holds slots too)."""
    kept: list[Slot] = []
    for slot in slots:
        if all(slot.end <= k.start or slot.start >= k.end for k in kept):
            kept.append(slot)
    return kept


def _dq(text: str) -> str:
    """A double-quoted YAML scalar whose escapes are written by hand (no re-escaping)."""
    return f'"{text}"'


@st.composite
def anchors_aliases(draw: st.DrawFn) -> Case:
    variant = draw(st.sampled_from(["reuse", "undefined", "forward", "laughs", "bigstring", "self"]))
    if variant == "reuse":  # an anchored value used again later: valid YAML, may be a valid spec
        first = draw(st.sampled_from(SLOTS[:-1]))
        later = draw(st.lists(st.sampled_from([s for s in SLOTS if s.start > first.end]), min_size=1, max_size=4))
        edits = [(first, f"&a {first.text}")] + [(s, "*a") for s in _disjoint(later)]
        return make_case("anchors_aliases", edits)
    if variant in {"undefined", "forward"}:  # an alias to nothing, or to an anchor written further down
        a = draw(st.sampled_from(SLOTS[:-1]))
        if variant == "undefined":
            return make_case("anchors_aliases", [(a, "*nope")])
        b = draw(st.sampled_from([s for s in SLOTS if s.start > a.end]))
        return make_case("anchors_aliases", [(a, "*b"), (b, f"&b {b.text}")])
    if variant == "self":  # an anchor whose collection holds an alias to itself
        slot = draw(slot_of("list", "dict"))
        return make_case("anchors_aliases", [(slot, draw(st.sampled_from(["&r [*r]", "&r {a: *r}", "&r [a, [*r]]"])))])
    if variant == "laughs":  # billion laughs: each level a list of `fan` aliases to the level below
        fan, levels = draw(st.integers(2, 10)), draw(st.integers(2, 9))
        word = draw(st.sampled_from(["lol", "x" * 100, "the session cache"]))
        layers = [f"&l0 [{', '.join([word] * fan)}]"]
        layers += [f"&l{i} [{', '.join([f'*l{i - 1}'] * fan)}]" for i in range(1, levels)]
        slot = draw(slot_of(pool=PROSE_LISTS))
        edits = [(slot, f"[{', '.join(layers)}]")]
        repeat = draw(st.lists(st.sampled_from([s for s in SLOTS if s.start > slot.end] or [slot]), max_size=3))
        edits += [(s, f"*l{levels - 1}") for s in _disjoint([s for s in repeat if s != slot])]
        label = f"{slot.dotted}: [&l0 [{word!r} x{fan}], &lN [*l(N-1) x{fan}] for N < {levels}] (= {fan}**{levels})"
        return make_case("anchors_aliases", edits, label + f" + {len(edits) - 1} more *l{levels - 1}")
    # one big string anchored once and repeated by aliases in a prose list (docs print every item)
    size = draw(st.sampled_from([100_000, 250_000, 500_000]))
    count = min(draw(st.integers(150, 1000)), BIG_TEXT_BYTES // size)
    big = ("lorem ipsum " * (size // 12 + 1))[:size].strip()
    target = draw(st.sampled_from(PROSE_LISTS))
    anchor_at = draw(st.sampled_from([None] + [s for s in PROSE_SLOTS if s.end < target.start]))
    aliases = ", ".join(["*big"] * count)
    label = f"{target.dotted}: [*big x{count}], &big = {size}-char string"
    if anchor_at is None:
        edits = [(target, f'[&big "{big}", {aliases}]')]
        label += " anchored in the same list"
    else:
        edits = [(anchor_at, f'&big "{big}"'), (target, f"[{aliases}]")]
        label += f" anchored at {anchor_at.dotted}"
    return make_case("anchors_aliases", edits, label)


SCALAR_TAGS = [
    "!!int abc",
    "!!int 1.5",
    "!!int ''",
    "!!int 0x",
    "!!float abc",
    "!!float ''",
    "!!bool maybe",
    "!!bool 1",
    "!!timestamp nope",
    "!!timestamp 2024-02-30",
    "!!binary aGVsbG8=",
    "!!binary '!!!'",
    "!!binary ''",
    "!!str 12",
    "!!str",
    "!!null x",
    "!!null ''",
    "!custom x",
    "!custom",
    "!<tag:yaml.org,2002:int> abc",
    "!<tag:example.com,2000:app> x",
    "!!python/object:os.system ''",
    "!!python/name:os.system ''",
    "!!python/str x",
    "!!merge x",
    "!!value x",
    "!!yaml x",
    "!!set a",
    "!!omap a",
    "!!map x",
    "!!seq x",
]
COLLECTION_TAGS = [
    "!!set {a, b}",
    "!!set {}",
    "!!omap [{a: 1}, {b: 2}]",
    "!!omap [a, b]",
    "!!pairs [{a: 1}, {a: 2}]",
    "!!map [a]",
    "!!seq {a: 1}",
    "!!str [a, b]",
    "!!int {a: 1}",
    "!custom [1]",
    "!!python/tuple [1, 2]",
    "!!python/object/apply:os.system ['true']",
    "!!python/object:argparse.Namespace {a: 1}",
]
TAG_NAMES = ["!!int", "!!float", "!!bool", "!!str", "!!null", "!!timestamp", "!!binary", "!!set", "!custom"]


@st.composite
def tags(draw: st.DrawFn) -> Case:
    slot = draw(st.sampled_from(SLOTS))
    choices = [st.sampled_from(SCALAR_TAGS), st.sampled_from(COLLECTION_TAGS)]
    choices.append(st.sampled_from(TAG_NAMES).map(lambda tag: f"{tag} {slot.text}"))  # a tag on the real value
    if not slot.flow:  # block collections with a tag
        pad = " " * slot.indent
        choices.append(st.sampled_from([f"!!set\n{pad}? a\n{pad}? b", f"!!omap\n{pad}- a: 1\n{pad}- b: 2", f"!custom\n{pad}- x"]))
    return make_case("tags", [(slot, draw(st.one_of(choices)))])


@st.composite
def depth(draw: st.DrawFn) -> Case:
    slot = draw(slot_of("list", "dict"))
    n = draw(st.integers(100, 2000))
    leaf = draw(st.sampled_from(["x", "1", ""]))
    forms = ["flow_seq", "flow_map", "flow_mixed", "unclosed"] + ([] if slot.flow else ["block_seq", "block_map"])
    form = draw(st.sampled_from(forms))
    if form == "flow_seq":
        snippet = "[" * n + leaf + "]" * n
    elif form == "flow_map":
        snippet = "{a: " * n + (leaf or "~") + "}" * n
    elif form == "flow_mixed":
        snippet = "[{a: " * (n // 2) + (leaf or "~") + "}]" * (n // 2)
    elif form == "unclosed":
        snippet = "[" * n + leaf
    elif form == "block_seq":  # compact nested sequences: `- - - x`
        snippet = "\n" + " " * slot.indent + "- " * n + (leaf or "~")
    else:  # one more space of indentation per level; at most 1000 levels keep the file under 1 MiB
        n = min(n, 1000)
        snippet = "".join(f"\n{' ' * (slot.indent + i)}k{i}:" for i in range(n)) + f" {leaf or '~'}"
    return make_case("depth", [(slot, snippet)], f"{slot.dotted}: {form} nested {n} deep")


TIMESTAMPS = [
    "2024-02-30",
    "2024-13-01",
    "2001-12-14t21:59:43.10-05:00",
    "2024-01-01",
    "0000-01-01",
    "2024-00-10",
    "2023-02-29",
    "2001-12-14 21:59:43.10 -5",
    "2001-12-15T02:59:43.1Z",
    "2024-12-31T23:59:60Z",
    "2024-12-31T24:00:00Z",
    "2024-01-01T00:00:00+99:00",
    "2024-1-1 1:00:00",
]


@st.composite
def timestamps(draw: st.DrawFn) -> Case:
    slot = draw(slot_of("str", "int"))
    generated = st.builds(
        lambda y, m, d, time: f"{y:04d}-{m:02d}-{d:02d}{time}",
        st.integers(0, 9999),
        st.integers(0, 99),
        st.integers(0, 99),
        st.one_of(
            st.just(""),
            st.builds(
                lambda sep, h, mi, s, frac, tz: f"{sep}{h}:{mi:02d}:{s:02d}{frac}{tz}",
                st.sampled_from(["T", "t", " "]),
                st.integers(0, 99),
                st.integers(0, 99),
                st.integers(0, 99),
                st.sampled_from(["", ".1", ".999999999"]),
                st.sampled_from(["", "Z", "+01:00", "-5", " +24:00", "+99"]),
            ),
        ),
    )
    return make_case("timestamps", [(slot, draw(st.one_of(st.sampled_from(TIMESTAMPS), generated)))])


SPECIAL_FLOATS = [
    ".nan",
    ".NaN",
    ".NAN",
    ".inf",
    ".Inf",
    "+.inf",
    "-.inf",
    "-.INF",
    "1e309",
    "-1e309",
    "1.0e+309",
    "-1.0e+309",
    "1.0e-400",
    "0.0",
    "-0.0",
    "1_000.5",
    "190:20:30.15",
    "6.8523015e+5",
    ".5",
    "1.",
    "1.5e3",
    "0.0000001",
    "604800.0000001",
]


@st.composite
def special_floats(draw: st.DrawFn) -> Case:
    slot = draw(slot_of("int", "float"))
    generated = st.builds(
        lambda sign, whole, frac, esign, exp: f"{sign}{whole}.{frac}e{esign}{exp}",
        st.sampled_from(["", "-", "+"]),
        st.integers(0, 999),
        st.integers(0, 999),
        st.sampled_from(["+", "-"]),
        st.integers(0, 999),
    )
    return make_case("special_floats", [(slot, draw(st.one_of(st.sampled_from(SPECIAL_FLOATS), generated)))])


@st.composite
def long_integers(draw: st.DrawFn) -> Case:
    slot = draw(slot_of("int", "float", "str"))
    n = draw(st.integers(20, 10_000))
    form = draw(st.sampled_from(["dec", "neg", "hex", "oct_0o", "oct_0", "bin", "sexagesimal", "fixed"]))
    pattern = draw(st.sampled_from(["9", "1234567890", "10"]))
    digits = (pattern * (n // len(pattern) + 1))[:n]
    if form == "dec":
        snippet = digits
    elif form == "neg":
        snippet = "-" + digits
    elif form == "hex":
        snippet = "0x" + ("dead_beef" * (n // 9 + 1))[:n]
    elif form == "oct_0o":
        snippet = "0o" + ("1234567" * (n // 7 + 1))[:n]
    elif form == "oct_0":
        snippet = "0" + ("1234567" * (n // 7 + 1))[:n]
    elif form == "bin":
        snippet = "0b" + ("10" * n)[:n]
    elif form == "sexagesimal":
        snippet = digits + ":" + ":".join(["59"] * draw(st.integers(1, 5)))
    else:
        snippet = draw(
            st.sampled_from(
                ["0640", "0777", "0000000000000000000640", "0999", "08", "1:30", "2:13:20", "190:20:30", "1_000", "+0"]
            )
        )
        n = len(snippet)
    return make_case("long_integers", [(slot, snippet)], f"{slot.dotted}: {form} {_short(snippet, 60)} ({n} digits)")


YAML11_WORDS = ["yes", "no", "on", "off", "y", "n", "Yes", "NO", "No", "ON", "Off", "Y", "N", "YES", "True", "FALSE"]
YAML11_WORDS += ["~", "null", "NULL", "Null", "tRUE", "oN"]


@st.composite
def yaml11_words(draw: st.DrawFn) -> Case:
    slot = draw(slot_of("bool", "str"))
    return make_case("yaml11_words", [(slot, draw(st.sampled_from(YAML11_WORDS)))])


RAW_CHARS = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
RAW_CHARS += ["\ufeff", "\ufffe", "\uffff", "\ud800", "\t", "\r"]
ESCAPES = ["\\0", "\\x01", "\\a", "\\e", "\\x7f", "\\N", "\\_", "\\L", "\\P", "\\ud800", "\\udfff", "\\ud83d\\ude00"]
ESCAPES += ["\\U0010ffff", "\\n", "\\r", "\\t", "\\ufeff", "\\x85"]


@st.composite
def control_chars(draw: st.DrawFn) -> Case:
    variant = draw(st.sampled_from(["raw", "escaped", "path"]))
    if variant == "raw":  # the character itself in the file, inside the value's text
        slot = draw(slot_of("str"))
        at = draw(st.integers(0, len(slot.text)))
        snippet = slot.text[:at] + draw(st.sampled_from(RAW_CHARS)) + slot.text[at:]
    elif variant == "escaped":  # a double-quoted scalar whose escape yields it
        slot = draw(slot_of("str"))
        value = str(_value_at(slot.path)).replace("\\", "\\\\").replace('"', '\\"')
        at = draw(st.integers(0, len(value)))
        snippet = _dq(value[:at] + draw(st.sampled_from(ESCAPES)) + value[at:])
    else:  # a path with a trailing newline or another invisible tail
        slot = draw(st.sampled_from(PATH_SLOTS))
        tail = draw(st.sampled_from(["\\n", "\\t", "\\r", "\\0", " ", "\\u2028", "\\ufeff", "\\ud800"]))
        snippet = _dq(f"{_value_at(slot.path)}{tail}")
    return make_case("control_chars", [(slot, snippet)], must_refuse=_must_refuse(slot, snippet))


def _must_refuse(slot: Slot, snippet: str) -> str:
    """Why the models must refuse ``snippet`` at ``slot`` whatever else the spec says, or ""."""
    try:
        value = yaml.safe_load(f"v: {snippet}")["v"]
    except (yaml.YAMLError, ValueError):
        return ""  # not even YAML: the reader refuses it (located, hopefully)
    if not isinstance(value, str):
        return ""
    if re.search(r"[\ud800-\udfff]", value):
        return "a lone surrogate cannot be written to a UTF-8 file"
    if slot in PATH_SLOTS and not PATH_CHARS.fullmatch(value):
        return f"{slot.dotted} is a path: only letters, digits and . _ / @ + - (got {value!r})"
    return ""


CATEGORIES: dict[str, Callable[[], st.SearchStrategy[Case]]] = {
    "anchors_aliases": anchors_aliases,
    "tags": tags,
    "depth": depth,
    "timestamps": timestamps,
    "special_floats": special_floats,
    "long_integers": long_integers,
    "yaml11_words": yaml11_words,
    "control_chars": control_chars,
}


def quota(category: str) -> int:
    """Examples for ``category``: EXAMPLES split evenly, the remainder to the first ones."""
    share, rest = divmod(EXAMPLES, len(CATEGORIES))
    return max(1, share + (list(CATEGORIES).index(category) < rest))


# --- running one case -------------------------------------------------------------------------


def _normal(text: str) -> str:
    """``text`` with numbers and quoted parts blanked, so one kind of failure groups as one."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"#x[0-9a-fA-F]+", "#x…", text)
    return _short(re.sub(r"\d+", "N", text), 160)


def _where(exc: BaseException) -> str:
    """Where ``exc`` was raised: the innermost frame of generator/ and the innermost frame;
    for a RecursionError the function that recursed (the most frequent frame)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    if isinstance(exc, RecursionError):
        name = Counter(f"{Path(f.filename).name}:{f.name}" for f in frames).most_common(1)[0][0]
        return f"{name} recursing"
    ours = [f for f in frames if "/generator/" in f.filename] or frames
    last, inner = ours[-1], frames[-1]
    where = f"{Path(last.filename).name}:{last.name}"
    if inner is not last:
        where += f" -> {Path(inner.filename).name}:{inner.name}"
    return where


def _crash(exc: BaseException, where: str = "") -> str:
    message = "" if isinstance(exc, RecursionError) else f": {_normal(str(exc))}"
    return f"{type(exc).__name__}{where} at {_where(exc)}{message}"


def _tree_size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def classify(tmp: Path, case: Case) -> dict[str, Any]:
    """Render ``case.text`` as tmp/spec/spec.yaml into tmp/build; the outcome as a dict.

    Keys: ``kinds`` (list: "ok" or "located", or the failure kinds), ``detail`` (exception
    type and where it was raised, or the offending message line) and ``output`` (truncated).
    """
    spec = tmp / "spec"
    spec.mkdir()
    (spec / "spec.yaml").write_bytes(case.text.encode("utf-8", "surrogatepass"))  # a raw \ud800 stays invalid UTF-8
    out = tmp / "build"
    os.chdir(tmp)  # names are shown relative to the cwd
    result = CliRunner().invoke(main, ["render", "--spec", str(spec), "--build", str(out)])
    output = result.output
    shown = output if len(output) <= 600 else output[:500] + f"…({len(output)} chars)"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        exc = result.exception
        return {"kinds": ["traceback"], "detail": _crash(exc), "output": shown}
    if "Traceback" in output or result.exit_code not in (0, 2):
        return {"kinds": ["traceback"], "detail": f"exit {result.exit_code} with a traceback in the output", "output": shown}
    if result.exit_code == 0:
        size = _tree_size(out)
        if size > AMPLIFIED_BYTES:
            return {"kinds": ["amplified"], "detail": "exit 0 with a tree over 10 MB", "output": f"{size} bytes in build/; {shown}"}
        try:
            same = tree_bytes(out) == {k: v.encode() for k, v in build_files(spec).items()}
        except Exception as exc:  # noqa: BLE001 - a second render of a spec that rendered once
            return {"kinds": ["traceback"], "detail": _crash(exc, " in build_files"), "output": shown}
        if not same:
            return {"kinds": ["incomplete"], "detail": "tree differs from build_files", "output": shown}
        if case.must_refuse:
            return {"kinds": ["accepted"], "detail": _normal(case.must_refuse), "output": shown}
        return {"kinds": ["ok"], "detail": "", "output": shown}
    kinds: list[str] = []
    detail = ""
    messages = [ln for ln in output.splitlines() if not ln.startswith("zachot-gen: ")]
    last_line = case.text.count("\n") + 1
    touches_line_1 = any(first <= 1 <= end for first, end in case.lines)
    bad = [ln for ln in messages if not LOCATED.match(ln)]
    if not messages:
        bad = [output.strip() or "(no output)"]
    for ln in messages:
        m = LOCATED.match(ln)
        if m and ((m.group(1), m.group(2)) == ("1", "1") and not touches_line_1 or int(m.group(1)) > last_line):
            bad.append(ln)
    if bad:
        kinds.append("unlocated")
        detail = _normal(bad[0].split("\\n")[0])  # the first line of a message PyYAML wrapped
    if out.exists():
        kinds.append("partial")
        detail = detail or "build/ exists after exit 2"
    return {"kinds": kinds or ["located"], "detail": detail, "output": shown}


def _child(tmp: str, case: Case, conn: Any) -> None:
    try:
        limit = MEMORY_LIMIT + _vm_size()
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        outcome = classify(Path(tmp), case)
    except BaseException as exc:  # noqa: BLE001 - the harness itself failed; report it as a traceback
        outcome = {"kinds": ["traceback"], "detail": _crash(exc, " outside the CLI"), "output": ""}
    conn.send(outcome)
    conn.close()


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def run_case(case: Case) -> dict[str, Any]:
    """Run one case in a forked child (memory and time limited); the child's outcome."""
    ctx = multiprocessing.get_context("fork")
    tmp = tempfile.mkdtemp(prefix="zachot-fuzz-")
    receiver, sender = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child, args=(tmp, case, sender), daemon=True)
    try:
        child.start()
        sender.close()
        if not receiver.poll(CASE_TIMEOUT):
            child.kill()
            return {"kinds": ["slow"], "detail": f"no answer in {CASE_TIMEOUT:.0f} s", "output": ""}
        try:
            return receiver.recv()  # type: ignore[no-any-return]
        except EOFError:
            child.join(10)
            return {"kinds": ["crashed"], "detail": f"child exit code {child.exitcode}", "output": ""}
    finally:
        child.join(10)
        receiver.close()
        shutil.rmtree(tmp, ignore_errors=True)


# --- bookkeeping and the report -----------------------------------------------------------------


@dataclass
class Finding:
    count: int = 0
    weight: int = sys.maxsize
    label: str = ""
    output: str = ""


@dataclass
class Tally:
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)

    def record(self, case: Case, outcome: dict[str, Any]) -> None:
        counts = self.counts.setdefault(case.category, Counter())
        counts["tried"] += 1
        for kind in outcome["kinds"]:
            counts[kind] += 1
            if kind in FAIL_KINDS:
                finding = self.findings.setdefault((case.category, kind, outcome["detail"]), Finding())
                finding.count += 1
                if case.weight < finding.weight:
                    finding.weight, finding.label, finding.output = case.weight, case.label, outcome["output"]

    def failures(self, category: str) -> list[str]:
        out = []
        for (cat, kind, detail), f in sorted(self.findings.items()):
            if cat == category:
                out.append(f"{kind} x{f.count}: {detail}\n    smallest: {f.label}")
                out += [f"    output: {f.output.strip()[:300]!r}"] if f.output.strip() else []
        return out

    def table(self) -> list[str]:
        cols = ("tried", *OK_KINDS, *FAIL_KINDS)
        rows = [("category", *cols)]
        rows += [(cat, *(str(self.counts[cat][c]) for c in cols)) for cat in CATEGORIES if cat in self.counts]
        total = Counter[str]()
        for counts in self.counts.values():
            total.update(counts)
        rows.append(("total", *(str(total[c]) for c in cols)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(cols) + 1)]
        return ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))) for row in rows]


TALLY = Tally()


class _Summary:
    """Registered as a plugin by the fixture below: prints the tally after the run."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not TALLY.counts:
            return
        terminalreporter.section("YAML structure fuzz (tests/test_fuzz_structure.py)")
        for line in TALLY.table():
            terminalreporter.write_line(line)
        for category in CATEGORIES:
            for text in TALLY.failures(category):
                terminalreporter.write_line(f"{category}: {text}")


@pytest.fixture(scope="module")
def structure_tally(request: pytest.FixtureRequest) -> Tally:
    plugins = request.config.pluginmanager
    if not plugins.has_plugin("zachot-structure-fuzz"):
        plugins.register(_Summary(), "zachot-structure-fuzz")
    build_files(SPEC_CASES["single_api_en"])  # compile the templates once; every forked case inherits them
    return TALLY


@pytest.mark.parametrize("category", list(CATEGORIES))
def test_hostile_yaml_structure_gives_a_tree_or_located_errors(category: str, structure_tally: Tally) -> None:
    @settings(
        max_examples=quota(category),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(CATEGORIES[category]())
    def run(case: Case) -> None:
        structure_tally.record(case, run_case(case))  # never raises: every case is counted, none shrunk

    run()
    counts = structure_tally.counts.get(category, Counter())
    failed = {kind: counts[kind] for kind in FAIL_KINDS if counts[kind]}
    assert not failed, f"{category}: {failed} of {counts['tried']} cases\n" + "\n".join(structure_tally.failures(category))
