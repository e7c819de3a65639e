"""Hostile and malformed specs: either a valid tree or exit 2 with located messages.

Hypothesis mutates the `single_api_en` fixture (replaces, deletes or adds values anywhere,
with hostile strings: newlines, '%', '$', braces, '|', '../', NULs, huge numbers) and also
corrupts the YAML text itself. Every case runs the real `render` command in-process and
must end in exit 0 with a complete tree, or exit 2 with every message located
(`file:line:col: ...`), never a traceback and never a partial build/.
Set ZACHOT_FUZZ_EXAMPLES to run more cases (default 300).
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

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
LOCATED = re.compile(r"^spec/spec\.yaml:\d+:\d+: ")

HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "a\nb",
        "x\r\ny",
        "100%",
        "%n",
        "$HOME",
        "${nope}",
        "$$",
        "{",
        "}",
        "a|b",
        "../../etc/passwd",
        "/",
        ".hidden",
        "*.log",
        "a b",
        '"quoted"',
        "back\\slash\\",
        "\x00",
        "\u202e",
        "ÿ" * 300,
        "-1",
        "9" * 40,
        "yes",
        "null",
        "0640",
        "0999",
        "[1, 2]",
        "{a: 1}",
    ]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=True), HOSTILE, st.text(max_size=30)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


ALL_PATHS = [p for p in _paths(BASE) if p]


@st.composite
def mutated_text(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["replace", "delete", "add", "text"]))
    if kind == "text":
        pos = draw(st.integers(0, len(BASE_TEXT)))
        junk = draw(
            st.sampled_from(
                [
                    ":",
                    "- ",
                    "{",
                    "[",
                    "\t",
                    "&a",
                    "*a",
                    "!!python/object:os.system ''",
                    "\n  - x",
                    "'",
                    '"',
                    "<<: *a",
                    "? ",
                    "%YAML 1.1\n",
                ]
            )
        )
        return BASE_TEXT[:pos] + junk + BASE_TEXT[pos:]
    data = yaml.safe_load(BASE_TEXT)
    path = draw(st.sampled_from(ALL_PATHS))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if kind == "replace":
        parent[path[-1]] = draw(VALUES)
    elif kind == "delete":
        del parent[path[-1]]
    elif isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=10))] = draw(VALUES)
    else:
        parent.append(draw(VALUES))
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_text())
def test_hostile_spec_gives_a_tree_or_located_errors(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):  # names are shown relative to the cwd
        spec = Path(tmp) / "spec"
        spec.mkdir()
        (spec / "spec.yaml").write_text(text)
        out = Path(tmp) / "build"
        result = CliRunner().invoke(main, ["render", "--spec", str(spec), "--build", str(out)])
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
        if result.exit_code == 0:
            assert tree_bytes(out) == {k: v.encode() for k, v in build_files(spec).items()}
            return
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.output.splitlines() if not ln.startswith("zachot-gen: ")]
        assert lines, result.output
        assert all(LOCATED.match(ln) for ln in lines), result.output
        assert not out.exists()
