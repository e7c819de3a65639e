"""A spec of another shape installed and started on a booted Debian 12: tests/fixtures/specs/zachot_split.

zachot's own app (so the cached venv layer serves), but the API and the worker run as users of
their own, both in the group that owns a root-owned, setgid, group-writable log folder; the API
writes one file for both streams, the worker logs to the journal; the env file starts as
build/env/<name>.example. The fixture's runbook is run verbatim, like zachot's. Expectations
come from the fixture's plan (users, groups, paths, modes), never from numbers written here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from server_support import FixtureDeployment, deploy_fixture
from testserver import REPO, wait_for

pytestmark = pytest.mark.server

SPEC = REPO / "tests/fixtures/specs/zachot_split"


@pytest.fixture(scope="module")
def split() -> Iterator[FixtureDeployment]:
    if os.geteuid() != 0:
        pytest.fail("server tests need root", pytrace=False)
    with deploy_fixture(SPEC, 8000) as d:
        s = d.server
        units = [sv.unit_file for sv in d.tree.plan.services] + ["redis-server.service"]
        wait_for(lambda: all(s.active_state(u) == "active" for u in units), 60, f"{', '.join(units)} active")
        wait_for(lambda: s.http.get("/readyz").status_code == 200, 60, "GET /readyz 200")
        yield d


def test_each_service_runs_as_its_own_user_with_the_shared_group(split: FixtureDeployment) -> None:
    s, b = split.server, split.tree
    for sv in b.plan.services:
        pid = s.main_pid(sv.unit_file)
        status = s.run(["cat", f"/proc/{pid}/status"]).stdout
        uid = next(ln.split()[1] for ln in status.splitlines() if ln.startswith("Uid:"))
        groups = next(ln.split()[1:] for ln in status.splitlines() if ln.startswith("Groups:"))
        assert s.run(["id", "-u", sv.identity.user]).stdout.strip() == uid
        want = {s.run(["getent", "group", g]).stdout.split(":")[2] for g in sv.identity.supplementary}
        assert want <= set(groups), (sv.unit_file, groups)
        members = s.run(["id", "-nG", sv.identity.user]).stdout.split()
        assert set(sv.identity.supplementary) <= set(members)


def test_shared_folder_one_file_and_the_journal(split: FixtureDeployment) -> None:
    s, b = split.server, split.tree
    p = b.plan.spec.project
    owner, group = b.plan.rotate_as
    assert s.file_stat(p.logs_dir)[:3] == (owner, group, p.logs_dir_mode)
    api = next(sv for sv in b.plan.services if sv.name == "api")
    assert api.stderr_path is None and api.stdout_path is not None and api.policy is not None
    assert s.file_stat(api.stdout_path)[:3] == (api.policy.owner, api.policy.group, api.policy.mode)
    s.http.get("/healthz")
    # uvicorn's startup messages go to stderr, its access log to stdout: both in the one file
    wait_for(lambda: "Uvicorn running" in s.read(api.stdout_path).decode(errors="replace"), 30, "uvicorn's stderr")
    assert sorted(s.run(["ls", p.logs_dir]).stdout.split()) == ["api.log"]
    worker = next(sv for sv in b.plan.services if sv.name == "worker")
    assert worker.log_target == "journal"
    wait_for(lambda: "Worker process is ready" in s.journal_text(None, worker.unit_file), 60, "dramatiq in the journal")


def test_logrotate_rotates_the_shared_folder_as_its_owner_and_group(split: FixtureDeployment) -> None:
    s, b = split.server, split.tree
    api = next(sv for sv in b.plan.services if sv.name == "api")
    assert api.logrotate_path is not None and api.stdout_path is not None
    r = s.run(["logrotate", "-f", api.logrotate_path], check=False)
    assert r.returncode == 0 and "error" not in r.stdout + r.stderr, r.stdout + r.stderr
    rotated = [n for n in s.run(["ls", b.plan.spec.project.logs_dir]).stdout.split() if n.startswith("api.log-")]
    assert len(rotated) == 1, rotated
    s.http.get("/healthz")  # the writer keeps its descriptor: new lines land in the live file
    assert s.file_stat(api.stdout_path)[:3] == (api.policy.owner, api.policy.group, api.policy.mode)  # type: ignore[union-attr]


def test_the_env_file_started_as_the_example(split: FixtureDeployment) -> None:
    s, b, output = split.server, split.tree, split.output
    p = b.plan.spec.project
    assert f"build/env/{Path(p.env_file).name}.example {p.env_file}" in output
    assert s.file_stat(p.env_file)[:3] == ("root", p.group, p.env_file_mode)
