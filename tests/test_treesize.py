"""The rendered tree's bound (generator/treesize.py) grows with the spec's entries as well as its
bytes: a terse honest spec of thousands of services renders to ~30 bytes per byte."""

from __future__ import annotations

import sys
from pathlib import Path

from helpers import REPO

from generator import treesize
from generator.loader import load

sys.path.insert(0, str(REPO))  # bench/ is a folder of the repo, not an installed package
from bench.synth import write_spec  # noqa: E402


def test_the_bound_allows_each_entry_its_output_and_no_more(tmp_path: Path) -> None:
    spec_dir = write_spec(tmp_path / "spec", 200)
    loaded = load(spec_dir)
    spec_bytes = sum(f.stat().st_size for f in loaded.files)
    entries = len(loaded.spec.services) + len(loaded.spec.external_units) + len(loaded.spec.log_policies)
    assert entries == 202  # 200 services, one Redis, one log policy
    per_byte = treesize.BASE_BYTES + treesize.BYTES_PER_SPEC_BYTE * spec_bytes
    limit = per_byte + treesize.BYTES_PER_ENTRY * entries
    # what 200 of these services render to at ~30 bytes per spec byte would pass a per-byte bound
    # only up to per_byte; each entry's allowance carries the rest, and one byte more is refused
    assert treesize.tree_size_problem(loaded, {"docs/README.md": "x" * limit}, spec_bytes) is None
    problem = treesize.tree_size_problem(loaded, {"docs/README.md": "x" * (limit + 1)}, spec_bytes)
    assert problem is not None and f"the limit for this spec is {limit} bytes" in str(problem)
