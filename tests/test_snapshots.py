"""Every rendered file of every spec case matches its reviewed snapshot.

One readable snapshot file per artifact, with the artifact's own extension
(tests/__snapshots__/test_snapshots/...). Update with `pytest --snapshot-update` and
review the diff like code.
"""

from __future__ import annotations

from functools import cache
from pathlib import PurePosixPath

import pytest
from helpers import SPEC_CASES
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from generator import build_files
from generator.delivery import STATIC


def _extension(suffix: str) -> type[SingleFileSnapshotExtension]:
    return type(
        f"{suffix.title()}Snapshot",
        (SingleFileSnapshotExtension,),
        {"_write_mode": WriteMode.TEXT, "file_extension": suffix},
    )


_EXTENSIONS = {s: _extension(s) for s in ("service", "timer", "conf", "md", "tsv", "logrotate", "example", "yml", "cfg", "json")}


def _extension_for(path: str) -> type[SingleFileSnapshotExtension]:
    if "root/etc/logrotate.d/" in path:
        return _EXTENSIONS["logrotate"]
    return _EXTENSIONS[PurePosixPath(path).suffix.lstrip(".")]


@cache
def _render(case: str) -> dict[str, str]:
    return build_files(SPEC_CASES[case])


def _kept(case: str, path: str) -> bool:
    """Whether ``path`` of ``case`` has a snapshot: a playbook file copied as it is (the same for
    every spec, generator.delivery.STATIC) has one only for the repo's production environment."""
    if any(path.endswith(f"/ansible/{name}") for name in STATIC):
        return case == "zachot" and path.startswith("production/")
    return True


_PARAMS = [(case, path) for case in SPEC_CASES for path in sorted(_render(case)) if _kept(case, path)]


@pytest.mark.parametrize(("case", "path"), _PARAMS, ids=[f"{c}--{p.replace('/', '.')}" for c, p in _PARAMS])
def test_artifact_matches_snapshot(case: str, path: str, snapshot) -> None:  # type: ignore[no-untyped-def]
    assert _render(case)[path] == snapshot(extension_class=_extension_for(path))


@pytest.mark.parametrize("case", list(SPEC_CASES))
def test_render_is_deterministic(case: str) -> None:
    first = build_files(SPEC_CASES[case])
    _render.cache_clear()
    assert build_files(SPEC_CASES[case]) == first
