"""`project.target`: the preset keeps only directives the target's systemd knows, a spec setting it
lacks is a located error, and the docs say what was left out (generator/target.py).

Versions checked here are systemd's NEWS ("CHANGES WITH 243": ExecCondition=; 247: ProtectProc=,
ProcSubset=; 240: Type=exec, StandardOutput=append:), not values read back from the code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SPEC_CASES, edited_spec, line_of, run_cli

from generator import build_files


def _spec(tmp_path: Path, case: str, old: str, new: str) -> tuple[Path, str]:
    return edited_spec(tmp_path, case, (old, new))


def _directives(unit: str) -> set[str]:
    return {ln.split("=", 1)[0] for ln in unit.splitlines() if "=" in ln and not ln.startswith("#")}


def test_an_older_systemd_gets_the_preset_without_what_it_does_not_know(tmp_path: Path) -> None:
    spec, _ = _spec(tmp_path, "shared_logs", "  target: {distro: debian-11}\n", "  target: {distro: ubuntu-20.04}\n")
    files = build_files(spec)
    unit = _directives(files["root/etc/systemd/system/shop-api.service"])
    default = _directives(build_files(SPEC_CASES["shared_logs"])["root/etc/systemd/system/shop-api.service"])
    # debian-11's systemd 247 knows the whole preset; 245 has ProtectClock= (245), not these (247)
    assert default - unit == {"ProtectProc", "ProcSubset"}
    assert "Target: ubuntu-20.04 (systemd 245), `project.target`. Left out of the preset there" in files["docs/README.md"]
    assert "ProtectProc= (247), ProcSubset= (247)." in files["docs/README.md"]


@pytest.mark.parametrize(
    ("case", "old", "new", "needle", "message"),
    [
        (
            "worker_split_group",
            "  logs_dir_mode: \"0770\"\n",
            "  logs_dir_mode: \"0770\"\n  target: {distro: debian-10}\n",
            "    exec_condition: broker_up",
            "services.consumer.exec_condition: ExecCondition= needs systemd 243; the target is debian-10 (systemd 241)",
        ),
        (
            "single_api_en",
            "  logs_dir: /var/log/shop\n",
            "  logs_dir: /var/log/shop\n  target: {systemd: 239}\n",
            "  target: {systemd: 239}",
            "project.target.systemd: the tree needs systemd 240 or later (Type=exec, StandardOutput=append:); "
            "systemd 239 is older",
        ),
        (
            "worker_split_group",
            "  logs_dir_mode: \"0770\"\n",
            "  logs_dir_mode: \"0770\"\n  target: {distro: debian-10}\n",
            "  group: pipeline",
            "project.group: a primary group named unlike its user ('ingest' in 'pipeline') needs systemd-sysusers 245",
        ),
    ],
    ids=["exec-condition-on-debian-10", "below-the-floor", "sysusers-group-on-debian-10"],
)
def test_a_setting_the_target_lacks_is_a_located_error(
    tmp_path: Path, case: str, old: str, new: str, needle: str, message: str
) -> None:
    spec, text = _spec(tmp_path, case, old, new)
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "b")
    assert result.returncode == 2, result.stderr
    assert f"spec.yaml:{line_of(text, needle)}:" in result.stderr and message in result.stderr, result.stderr
    assert not (tmp_path / "b").exists()


def test_a_backported_systemd_overrides_the_distros(tmp_path: Path) -> None:
    spec, _ = _spec(tmp_path, "worker_split_group", "  logs_dir_mode: \"0770\"\n",
                    "  logs_dir_mode: \"0770\"\n  target: {distro: debian-10, systemd: 252}\n")
    files = build_files(spec)
    assert "ExecCondition=" in files["root/etc/systemd/system/ingest-consumer.service"]
    assert "Цель: systemd 252, `project.target`." in files["docs/README.md"]
