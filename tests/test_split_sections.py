"""A section of named entries may be spread over ``spec/<section>.d/*.yaml`` (generator/yamlsource.py
``SPLIT_SECTIONS``): a spec of thousands of services fits in files below the per-file cap, the
tree is the same as from one file, and an entry written twice is refused where it is repeated."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import line_of

from generator import SpecError, build_files


def _split_services(spec: Path) -> None:
    """Move each service of spec/services.yaml into spec/services.d/<name>.yaml, dedented."""
    text = (spec / "services.yaml").read_text()
    head, rest = text.split("services:\n", 1)
    body, tail = rest.split("\nexternal_units:\n", 1)
    (spec / "services.yaml").write_text(head + "external_units:\n" + tail)
    parts = spec / "services.d"
    parts.mkdir()
    chunks = body.split("\n  worker:\n")
    (parts / "api.yaml").write_text("\n".join(ln[2:] for ln in chunks[0].splitlines()) + "\n")
    (parts / "worker.yaml").write_text("worker:\n" + "\n".join(ln[2:] for ln in chunks[1].splitlines()) + "\n")


def test_services_spread_over_a_folder_give_the_same_tree(zachot_spec: Path) -> None:
    whole = build_files(zachot_spec)
    _split_services(zachot_spec)
    assert "  api:" not in (zachot_spec / "services.yaml").read_text()
    assert build_files(zachot_spec) == whole


def test_an_entry_written_twice_is_refused_at_the_repeat(zachot_spec: Path) -> None:
    _split_services(zachot_spec)
    extra = zachot_spec / "services.d" / "zz-again.yaml"
    extra.write_text("# a second api\napi:\n  title: API again\n")
    with pytest.raises(SpecError) as exc:
        build_files(zachot_spec)
    first = zachot_spec / "services.d" / "api.yaml"
    msgs = [str(p) for p in exc.value.problems]
    assert any(m.startswith(f"{extra}:2:1: services.api: 'api' is also defined in {first} "
                            f"(line {line_of(first.read_text(), 'api:')})") for m in msgs), msgs


def test_a_part_that_is_not_a_mapping_of_entries_is_refused(zachot_spec: Path) -> None:
    _split_services(zachot_spec)
    bad = zachot_spec / "services.d" / "list.yaml"
    bad.write_text("- api\n")
    with pytest.raises(SpecError) as exc:
        build_files(zachot_spec)
    assert any(str(p).startswith(f"{bad}:1:1: ") for p in exc.value.problems), exc.value.problems


@pytest.mark.parametrize("make", ["project.d", "service.d", "link", "file"])
def test_a_folder_of_entries_that_would_be_ignored_is_refused(zachot_spec: Path, tmp_path: Path, make: str) -> None:
    """A typo, a section that cannot be split, a link or a plain file named <section>.d would drop
    its entries without a word: each is refused at its path."""
    if make == "link":
        real = tmp_path / "real"
        real.mkdir()
        (zachot_spec / "services.d").symlink_to(real)
        where = zachot_spec / "services.d"
    elif make == "file":
        where = zachot_spec / "healthchecks.d"
        where.write_text("x: 1\n")
    else:
        where = zachot_spec / make
        where.mkdir()
        (where / "x.yaml").write_text("name: other\n")
    with pytest.raises(SpecError) as exc:
        build_files(zachot_spec)
    want = (f"{where}:1:1: not a folder of entries zachot-gen reads: only services.d/, external_units.d/, "
            "log_policies.d/, healthchecks.d/, each a plain folder")
    msgs = [str(p) for p in exc.value.problems]
    assert msgs and all(m.startswith(want) for m in msgs), msgs  # once per environment
