"""Failure reports (generator/alerts.py): every generated unit names the report in OnFailure=,
the report writes a crit journal line or runs the spec's command with the failed unit and its
result. That it fires once per crash loop and once per failed healthcheck run is drilled on the
booted server (tests/server/test_drills.py)."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from helpers import REPO, SPEC_CASES, edited_spec, line_of, run_cli

from generator import build, build_files

UNITS = "root/etc/systemd/system/"


def _ini(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_every_generated_unit_names_the_report_and_the_report_names_none() -> None:
    files = build(REPO / "spec", env="staging").files
    units = {p: t for p, t in files.items() if p.startswith(UNITS) and (p.endswith(".service") or p.endswith(".conf"))}
    report = units.pop(f"{UNITS}zachot-on-failure@.service")
    assert sorted(units) == [
        f"{UNITS}redis-server@zachot.service.d/zachot.conf",  # the drop-in: Debian's unit gets it too
        f"{UNITS}zachot-api.service",
        f"{UNITS}zachot-worker-healthcheck.service",
        f"{UNITS}zachot-worker.service",
    ]
    for path, text in units.items():
        assert _ini(text).get("Unit", "OnFailure") == "zachot-on-failure@%n.service", path
    ini = _ini(report)
    assert not ini.has_option("Unit", "OnFailure")  # a failing report must not report itself
    # the default: one line at crit under zachot-alert, naming the unit (%i) and systemd's MONITOR_* result
    assert ini.get("Service", "ExecStart") == (
        '/bin/echo "сбой %i: ${MONITOR_SERVICE_RESULT} (выход ${MONITOR_EXIT_CODE} ${MONITOR_EXIT_STATUS})"')
    assert (ini.get("Service", "SyslogLevel"), ini.get("Service", "SyslogIdentifier")) == ("crit", "zachot-alert")
    assert ini.get("Service", "DynamicUser") == "yes" and not ini.has_option("Service", "EnvironmentFile")
    assert "\nOnFailure=" not in files[f"{UNITS}zachot-worker-healthcheck.timer"]


def test_a_spec_command_runs_with_its_words_literal_and_the_unit_and_result_appended(tmp_path: Path) -> None:
    spec, _ = edited_spec(tmp_path, "gunicorn_command", (
        "  repo_url: git@git.example.com:acme/ledger.git\n",
        "  repo_url: git@git.example.com:acme/ledger.git\n"
        "  on_failure:\n    command: [notify-ops, --url, 'https://hooks.example.com/x?a=1%2', --token, $$TOKEN]\n",
    ))
    files = build_files(spec)
    ini = _ini(files[f"{UNITS}ledger-on-failure@.service"])
    # a plain name from the venv; % and $ of the spec doubled (literal); the specifier and variable not
    assert ini.get("Service", "ExecStart") == (
        '/srv/ledger/venv/bin/notify-ops --url "https://hooks.example.com/x?a=1%%2" --token "$$TOKEN" '
        "%i ${MONITOR_SERVICE_RESULT}")
    assert ini.get("Service", "EnvironmentFile") == "-/etc/ledger/ledger.env"  # optional: a Redis-only host has none
    readme = files["docs/README.md"]
    assert "The report runs `notify-ops --url" in readme and "journalctl -p crit -t ledger-alert" in readme


@pytest.mark.parametrize(("argv", "message"), [
    ("[./notify]", r"argv\[0\] \(the program\) is an absolute path"),
    ("[]", r"at least 1 item"),
    ("[/usr/bin/curl, \"a\\nExecStartPre=/bin/sh\"]", r"one line without control characters"),
])
def test_a_bad_command_is_located(tmp_path: Path, argv: str, message: str) -> None:
    spec, text = edited_spec(tmp_path, "gunicorn_command", (
        "  repo_url: git@git.example.com:acme/ledger.git\n",
        f"  repo_url: git@git.example.com:acme/ledger.git\n  on_failure:\n    command: {argv}\n",
    ))
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert not (tmp_path / "build").exists()
    line = line_of(text, "    command: ")
    assert re.search(rf"^spec/spec\.yaml:{line}:\d+: project\.on_failure\.command.*: .*{message}", result.stderr,
                     re.M), result.stderr


def test_a_redis_only_host_gets_the_report_its_drop_in_names() -> None:
    files = build_files(SPEC_CASES["fleet"])
    redis = [p for p in files if p.startswith("production/redis1/root/etc/systemd/system/")]
    assert "production/redis1/root/etc/systemd/system/shop-on-failure@.service" in redis
    dropin = next(p for p in redis if p.endswith(".service.d/shop.conf"))
    assert "\nOnFailure=shop-on-failure@%n.service\n" in files[dropin]
