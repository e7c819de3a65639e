"""A real logrotate run of the rendered zachot-api file, in a sandbox, on 16 simulated days."""

from __future__ import annotations

import dataclasses
import datetime as dt
import gzip
from pathlib import Path

import pytest
from helpers import REPO, edited_spec, run_cli

from generator import load_spec
from generator.rotation import RotationRun, rotate_in_sandbox, rotation_findings

RUNS = 16  # rotate 14 + 2: the two oldest must have been removed


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RotationRun, Path]:
    work = tmp_path_factory.mktemp("rotate")
    return rotate_in_sandbox(load_spec(REPO / "spec"), "api", work, RUNS), work


def _logs_dir(work: Path) -> Path:
    return work / "root/opt/zachot/logs"


def test_logrotate_reports_no_error(run: tuple[RotationRun, Path]) -> None:
    assert run[0].errors == []


def test_dated_names_gzip_delaycompress_and_retention(run: tuple[RotationRun, Path]) -> None:
    names = sorted(p.name for p in _logs_dir(run[1]).iterdir() if p.name.startswith("api.log-"))

    def name(day: int) -> str:  # dateformat -%Y-%m-%d-%s; each simulated run is at 12:00 (TZ UTC)
        return f"api.log-2026-01-{day:02d}-{int(dt.datetime(2026, 1, day, 12, tzinfo=dt.UTC).timestamp())}"

    # days 2026-01-01 .. 2026-01-16; rotate 14 keeps 01-03 .. 01-16; the newest is not compressed yet
    assert names == [f"{name(d)}.gz" for d in range(3, 16)] + [name(16)]
    assert gzip.decompress((_logs_dir(run[1]) / f"{name(15)}.gz").read_bytes()).startswith(b"api.log batch 14 ")


def test_an_archive_named_for_another_day_or_log_is_a_finding(run: tuple[RotationRun, Path]) -> None:
    """The names are matched against the policy's dateformat per day (``-%Y-%m-%d-%s``, the
    seconds any digits): the real run passes; the same files with one archive renamed do not."""
    assert rotation_findings(run[0], "root/etc/logrotate.d/zachot-api") == []
    newest = max(n for n in run[0].files if n.startswith("api.log-"))
    for wrong in (newest.replace("2026-01-16", "2026-01-17"), newest.replace("-2026", "-x2026"),
                  newest.replace("api.log-", "api.err-"), newest + ".gz"):
        files = {(wrong if n == newest else n): mode for n, mode in run[0].files.items()}
        found = rotation_findings(dataclasses.replace(run[0], files=files), "root/etc/logrotate.d/zachot-api")
        said = [f.message for f in found if f.tool == "rotation" and "expected" in f.message]
        assert len(said) == 1 and said[0].startswith("api.log: rotated files "), (wrong, found)
        assert r"'api\\.log\\-2026\\-01\\-16\\-\\d+'" in said[0], said[0]  # the patterns, as before


def test_writer_keeps_writing_into_the_live_file(run: tuple[RotationRun, Path]) -> None:
    live = (_logs_dir(run[1]) / "api.log").read_text().splitlines()
    assert live == [f"api.log batch {RUNS} line {j}" for j in range(3)]


def test_no_line_lost_or_repeated(run: tuple[RotationRun, Path]) -> None:
    found = run[0].lines["api.log"]
    expected = [f"api.log batch {i} line {j}" for i in range(RUNS - 14, RUNS + 1) for j in range(3)]
    assert found == expected


def test_rotated_files_keep_owner_mode(run: tuple[RotationRun, Path]) -> None:
    assert {oct(p.stat().st_mode & 0o777) for p in _logs_dir(run[1]).iterdir()} == {"0o640"}


def test_maxage_removes_archives_older_than_its_days(tmp_path: Path) -> None:
    """shared_logs' worker policy made rotate 14, maxage 7. After daily runs on 2026-01-01 .. 01-16
    the archives of 01-09 .. 01-16 remain (at most 7 whole days older than the last run); rotate
    alone would keep 14 (logrotate.conf(5) maxage)."""
    spec, _ = edited_spec(tmp_path, "shared_logs", ("    owner: shop-worker\n", "    owner: shop-worker\n    rotate: 14\n"))
    text = (spec / "spec.yaml").read_text()
    i = text.index("    owner: shop-worker\n")
    (spec / "spec.yaml").write_text(text[:i] + text[i:].replace("    rotate: 7\n", "", 1))
    work = tmp_path / "work"
    work.mkdir()
    run = rotate_in_sandbox(load_spec(spec), "worker", work, RUNS)
    assert run.errors == []
    names = sorted(n for n in run.files if n.startswith("worker.err-"))
    assert names == [f"worker.err-202601{d:02d}.gz" for d in range(9, 16)] + ["worker.err-20260116"]
    assert run.lines["worker.err"] == [f"worker.err batch {i} line {j}" for i in range(8, RUNS + 1) for j in range(3)]


@pytest.mark.parametrize(("dateformat", "said"), [
    ("_%Y%m%d", "must begin with - or ."),
    ("%Y%m%d", "must begin with - or ."),
    ("-%d%m%Y", "does not sort by date"),
    ("-%Y%d%m", "does not sort by date"),
    ("-%Y%m%d-%M%H", "does not sort by date"),
    ("-%Y%j", "%j is not a logrotate dateformat specifier"),
    ("-%G%V", "%G is not a logrotate dateformat specifier"),
    ("-old", "names every archive alike"),
])
def test_a_dateformat_logrotate_cannot_keep_in_order_is_a_spec_error(
    tmp_path: Path, dateformat: str, said: str
) -> None:
    """logrotate.conf(5): only %Y %m %d %H %M %S %V %s, stamps that sort lexically (it removes
    the archives that sort first); and zachot-gen tells archives by the - or . they begin with."""
    spec, text = edited_spec(tmp_path, "single_api_en", ("dateformat: -%Y-%m-%d", f'dateformat: "{dateformat}"'))
    result = run_cli("check", "--spec", spec, "--build", tmp_path / "build")
    assert result.returncode == 2, result.stdout + result.stderr
    line = text.splitlines().index(f'    dateformat: "{dateformat}"') + 1
    assert f"spec.yaml:{line}:" in result.stderr and said in result.stderr, result.stderr


@pytest.mark.parametrize("dateformat", ["-%Y.%m.%d", ".%Y%m%d", "-%Y%m%d.%s", "-%s", "-%Y%V-%s", "-%Y%m%d%H%M%S"])
def test_dateformats_with_dots_or_seconds_rotate_in_order(tmp_path: Path, dateformat: str) -> None:
    """Archives are read oldest first by name, as logrotate sorts them: a dot in the stamp is
    not a rotation number (``api.log-2026.01.03`` is not ``api.log.3``)."""
    spec, _ = edited_spec(tmp_path, "single_api_en", ("dateformat: -%Y-%m-%d", f'dateformat: "{dateformat}"'))
    work = tmp_path / "work"
    work.mkdir()
    service = next(iter(load_spec(spec).services))
    run = rotate_in_sandbox(load_spec(spec), service, work, 9)
    assert run.errors == []
    assert rotation_findings(run, "root/etc/logrotate.d/x") == []
