"""validate rotates every service with as many simulated days in one logrotate call per day
(generator/rotation.py ``rotate_services``); each service must still see only its own logs,
and an error must still be pinned on its own logrotate file (generator/validate.py)."""

from __future__ import annotations

from pathlib import Path

from helpers import REPO

from generator import load_spec
from generator.rotation import Sandbox, may_share_a_run, rotate_service, rotate_services, rotation_findings, sandbox
from generator.validate import _rotations

RUNS = 16


def _box(tmp_path: Path) -> Sandbox:
    return sandbox(load_spec(REPO / "spec"), tmp_path / "root")


def test_rotating_together_observes_what_rotating_alone_does(tmp_path: Path) -> None:
    box = _box(tmp_path)
    assert may_share_a_run(box, ["api", "worker"])
    (tmp_path / "both").mkdir()
    both = rotate_services(box, ["api", "worker"], tmp_path / "both", RUNS)
    for name in ("api", "worker"):
        (tmp_path / name).mkdir()
        alone = rotate_service(box, name, tmp_path / name, RUNS)
        together = both[name]
        assert together.errors == alone.errors == []
        assert sorted(together.lines) == [f"{name}.err", f"{name}.log"]  # its own logs only
        assert (together.files, together.lines, together.live, together.written, together.days) == (
            alone.files, alone.lines, alone.live, alone.written, alone.days)
        assert rotation_findings(together, name) == []


def test_an_error_in_one_file_of_a_shared_run_is_pinned_on_that_file(tmp_path: Path) -> None:
    """logrotate's message does not say which service it belongs to when all files go in one
    call, so validate rotates the group again one service at a time."""
    box = _box(tmp_path)
    worker = next(sv for sv in box.plan.services if sv.name == "worker")
    broken = dict(box.files)
    key = f"root{worker.logrotate_path}"
    broken[key] = broken[key].replace("    rotate 14\n", "    rotate 14\n    no_such_directive\n")
    assert broken[key] != box.files[key]
    (tmp_path / "scratch").mkdir()
    runs = _rotations(Sandbox(box.plan, broken), list(box.plan.services), tmp_path / "scratch")
    assert runs["api"].errors == []
    assert runs["worker"].errors and all("logrotate" in e or "error" in e for e in runs["worker"].errors)
    assert sorted(p.name for p in (tmp_path / "scratch").iterdir()) == ["rotate-all", "rotate-one"]
    assert rotation_findings(runs["api"], "api") == []
