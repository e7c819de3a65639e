"""A `target: {distro: debian-11}` render installed and started on a booted Debian 11 (systemd 247).

tests/fixtures/specs/bullseye_command: Debian's own python3 serving a folder, as a `command`
runner, logs in two `append:` files, an env file value with a space. The fixture's runbook runs
verbatim on a bare bullseye root (debootstrap, cached like the Debian 12 one). What only a real
systemd 247 can say: every setting of the units is one it knows (no "Unknown key name" in its
journal, `systemd-analyze verify` silent), the env file reads as written, the unit runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from server_support import FixtureDeployment, deploy_fixture
from testserver import REPO, Server, wait_for

pytestmark = pytest.mark.server

SPEC = REPO / "tests/fixtures/specs/bullseye_command"
REPO_INSIDE = "/srv/bulletin/app"
"""project.repo of the fixture: the folder the runner serves."""
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "sudo", "logrotate", "procps"]
"""A minimal Debian 11 server for the fixture: systemd 247 as PID 1, the runner, the runbook's sudo."""


@pytest.fixture(scope="module")
def bullseye() -> Iterator[FixtureDeployment]:
    if os.geteuid() != 0:
        pytest.fail("server tests need root", pytrace=False)

    def index_page(s: Server) -> None:
        s.run(["sh", "-c", f"echo '<h1>board</h1>' > {REPO_INSIDE}/index.html"])

    with deploy_fixture(SPEC, 8000, ("bullseye", PACKAGES), index_page) as d:
        unit = d.tree.plan.services[0].unit_file
        wait_for(lambda: d.server.active_state(unit) == "active", 60, f"{unit} active")
        wait_for(lambda: d.server.http.get("/").status_code == 200, 30, "GET / 200")
        yield d


def test_the_server_runs_systemd_247(bullseye: FixtureDeployment) -> None:
    s, b = bullseye.server, bullseye.tree
    assert s.run(["systemctl", "--version"]).stdout.split()[:2] == ["systemd", "247"]
    assert b.plan.spec.project.target.distro == "debian-11"


def test_systemd_247_knows_every_setting_of_the_units(bullseye: FixtureDeployment) -> None:
    s, b, cursor = bullseye.server, bullseye.tree, bullseye.cursor
    units = [a.server_path for a in b.plan.artifacts if a.server_path and a.server_path.startswith("/etc/systemd/")]
    said = s.journal_text(cursor)
    unknown = [ln for ln in said.splitlines() if "Unknown" in ln or "Ignoring" in ln]
    assert unknown == [], unknown
    r = s.run(["systemd-analyze", "verify", *units], check=False)
    assert (r.returncode, r.stdout + r.stderr) == (0, "")


def test_the_env_file_and_the_logs(bullseye: FixtureDeployment) -> None:
    s, b = bullseye.server, bullseye.tree
    sv = b.plan.services[0]
    environ = s.run(["cat", f"/proc/{s.main_pid(sv.unit_file)}/environ"]).stdout.split("\0")
    assert "BULLETIN_GREETING=hello world" in environ
    assert "<h1>board</h1>" in s.http.get("/").text
    assert sv.stderr_path is not None and sv.policy is not None
    wait_for(lambda: '"GET / HTTP/1.1" 200' in s.read(sv.stderr_path).decode(), 10, "http.server's request log")
    for path in sv.log_files:
        assert s.file_stat(path)[:3] == (sv.policy.owner, sv.policy.group, sv.policy.mode)
    assert sv.logrotate_path is not None
    r = s.run(["logrotate", "-f", sv.logrotate_path], check=False)
    assert r.returncode == 0 and "error" not in r.stdout + r.stderr, r.stdout + r.stderr
