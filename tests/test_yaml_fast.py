"""libyaml composes well-formed specs (generator/yamlcompose.py ``_fast_compose``); the pure-Python
loader composes everything else. Both must give the same data and the same positions, and no
text may crash the C side (deep nesting is checked on libyaml's event stream first)."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from generator import yamlcompose, yamlsource
from generator.errors import SpecError

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml")

SOURCES = sorted({str(Path(p).parent) for p in glob.glob(str(REPO / "tests/fixtures/specs/**/*.yaml"), recursive=True)}
                 | {str(REPO / "spec"), str(REPO / "spec/env")})


def _read(folder: str) -> object:
    try:
        src = yamlsource.read_spec_dir(Path(folder))
    except SpecError as exc:
        return [str(p) for p in exc.problems]
    return src.data, src.source_map.values, src.source_map.keys


def _slow(text: str) -> yaml.Node | None:
    raise yamlcompose._Slow


@pytest.mark.parametrize("folder", SOURCES, ids=lambda p: Path(p).relative_to(REPO).as_posix())
def test_libyaml_and_the_python_loader_agree_on_data_and_positions(folder: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _read(folder)
    monkeypatch.setattr(yamlcompose, "_fast_compose", _slow)
    assert fast == _read(folder)


def test_the_fast_path_is_taken_for_a_well_formed_spec() -> None:
    node = yamlcompose._fast_compose((REPO / "spec/services.yaml").read_text())
    assert node is not None and node.value[0][0].tag == yamlcompose.PLAIN  # untagged plain scalars: PLAIN


@pytest.mark.parametrize("text", [
    "a: " + "[" * 100_000 + "]" * 100_000 + "\n",      # nesting far past MAX_DEPTH: no recursion in C
    "a: b\n  c: d\n",                                  # a syntax error: the Python loader words it
    "a: \x00\n",                                       # a character the Python reader refuses
    "a: &x [*x]\n",                                    # an alias of itself
])
def test_texts_the_fast_path_declines_read_as_before(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "s.yaml").write_text(text)
    fast = _read(str(tmp_path))
    monkeypatch.setattr(yamlcompose, "_fast_compose", _slow)
    assert fast == _read(str(tmp_path))
    assert isinstance(fast, list) and all(m.startswith(str(tmp_path / "s.yaml") + ":") for m in fast), fast
