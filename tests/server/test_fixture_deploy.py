"""A spec of another shape installed and started on a booted Debian 12: tests/fixtures/specs/zachot_split.

zachot's own app (so the cached venv layer serves), but the API and the worker run as users of
their own, both in the group that owns a root-owned, setgid, group-writable log folder; the API
writes one file for both streams, the worker logs to the journal; the env file starts as
build/env/<name>.example. The fixture's runbook is run verbatim, like zachot's. Expectations
come from the fixture's plan (users, groups, paths, modes), never from numbers written here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import testserver as ts
from server_support import TREE_INSIDE, booted_server, run_runbook
from testserver import REPO, Server, log, wait_for

from generator import Tree, render_to

pytestmark = pytest.mark.server

SPEC = REPO / "tests/fixtures/specs/zachot_split"


@contextlib.contextmanager
def _deployed() -> Iterator[tuple[Server, Tree, str]]:
    work = Path(tempfile.mkdtemp(prefix="zachot-fixture-tree-"))
    try:
        b = render_to(SPEC, work / "build")
        runbook = ts.parse_runbook((work / "build/docs/README.md").read_text())
        project = b.plan.spec.project
        api = next(s for s in b.plan.services if s.name == "api").svc.runner
        with booted_server(runbook, project.repo, api.port, {}, work / "build", f"zachot-fixture-{os.getpid()}") as (
            server,
            _,
        ):
            t0 = time.monotonic()
            output, workarounds = run_runbook(server, runbook, TREE_INSIDE)
            log(f"fixture zachot_split installed by its runbook in {time.monotonic() - t0:.1f} s")
            assert not workarounds, workarounds
            yield server, b, output
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def split() -> Iterator[tuple[Server, Tree, str]]:
    if os.geteuid() != 0:
        pytest.fail("server tests need root", pytrace=False)
    with _deployed() as deployed:
        s, b, _ = deployed
        units = [sv.unit_file for sv in b.plan.services] + ["redis-server.service"]
        wait_for(lambda: all(s.active_state(u) == "active" for u in units), 60, f"{', '.join(units)} active")
        wait_for(lambda: s.http.get("/readyz").status_code == 200, 60, "GET /readyz 200")
        yield deployed


def test_each_service_runs_as_its_own_user_with_the_shared_group(split: tuple[Server, Tree, str]) -> None:
    s, b, _ = split
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


def test_shared_folder_one_file_and_the_journal(split: tuple[Server, Tree, str]) -> None:
    s, b, _ = split
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


def test_logrotate_rotates_the_shared_folder_as_its_owner_and_group(split: tuple[Server, Tree, str]) -> None:
    s, b, _ = split
    api = next(sv for sv in b.plan.services if sv.name == "api")
    assert api.logrotate_path is not None and api.stdout_path is not None
    r = s.run(["logrotate", "-f", api.logrotate_path], check=False)
    assert r.returncode == 0 and "error" not in r.stdout + r.stderr, r.stdout + r.stderr
    rotated = [n for n in s.run(["ls", b.plan.spec.project.logs_dir]).stdout.split() if n.startswith("api.log-")]
    assert len(rotated) == 1, rotated
    s.http.get("/healthz")  # the writer keeps its descriptor: new lines land in the live file
    assert s.file_stat(api.stdout_path)[:3] == (api.policy.owner, api.policy.group, api.policy.mode)  # type: ignore[union-attr]


def test_the_env_file_started_as_the_example(split: tuple[Server, Tree, str]) -> None:
    s, b, output = split
    p = b.plan.spec.project
    assert f"build/env/{Path(p.env_file).name}.example {p.env_file}" in output
    assert s.file_stat(p.env_file)[:3] == ("root", p.group, p.env_file_mode)
