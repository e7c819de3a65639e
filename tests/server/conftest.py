"""Server tests: deploy build/ on a booted Debian 12 (systemd 252 as PID 1) and run the failure drills.

Marker ``server`` (registered in pyproject.toml). They run as root: debootstrap, overlayfs, systemd-nspawn.
Missing host tools are installed with scripts/server/install-host-deps.sh. The only way to skip
them is explicit: ``ZACHOT_SKIP_SERVER=1`` (or deselect with ``-m "not server"``).

The session fixture :func:`deployment` builds (or reuses) the cached Debian root and venv
(:mod:`testserver`), copies the checkout to the repo path the spec names, writes the env file,
boots the server and runs the install runbook of build/staging/docs/README.md inside it, verbatim.
Expected behaviour comes from the generator's own plan (``generator.build(spec).plan``), never
from numbers written here. After the run a table of the drills is printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from drill_env import Env, restore
from fleet_delivery import Delivery, deliver_fleet
from server_support import FLEET_ROW_ATTR, ROW_ATTR, Deployment, Drill, Facts, deploy
from testserver import REPO, Server, log

from generator import Tree, build, build_tree

SKIP_ENV = "ZACHOT_SKIP_SERVER"
INSTALL_HOST_DEPS = REPO / "scripts" / "server" / "install-host-deps.sh"


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_DRILLS] = []
    config.stash[_TIMINGS] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        skip = pytest.mark.skip(reason=f"{SKIP_ENV}={os.environ[SKIP_ENV]}: server tests skipped on request")
        for item in items:
            if item.get_closest_marker("server"):
                item.add_marker(skip)


# --------------------------------------------------------------------------------------------
# Facts from the generator
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def facts() -> Facts:
    return Facts(build(REPO / "spec", env="staging"))  # the environment the server tests install


# --------------------------------------------------------------------------------------------
# The deployed server
# --------------------------------------------------------------------------------------------

def _ensure_host_tools() -> None:
    if os.geteuid() != 0:
        pytest.fail(f"server tests need root (debootstrap, mount, systemd-nspawn); run them as root or set "
                    f"{SKIP_ENV}=1 to skip them", pytrace=False)
    if not all(shutil.which(t) for t in ("debootstrap", "systemd-nspawn", "nsenter")):
        log(f"installing host tools: {INSTALL_HOST_DEPS}")
        subprocess.run([str(INSTALL_HOST_DEPS)], check=True, timeout=600)


@pytest.fixture(scope="session")
def deployment(facts: Facts, pytestconfig: pytest.Config) -> Iterator[Deployment]:
    """A booted server with zachot installed by the runbook; powered off and removed at the end."""
    _ensure_host_tools()
    # A CI time-out or `kill` sends SIGTERM: turn it into KeyboardInterrupt so pytest still runs
    # this fixture's teardown and powers the container off (atexit is the last resort).
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_term)
    try:
        with deploy(facts, pytestconfig.stash[_TIMINGS]) as dep:
            yield dep
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def server(deployment: Deployment) -> Server:
    return deployment.server


@pytest.fixture(scope="session")
def fleet_delivery(pytestconfig: pytest.Config) -> Iterator[Delivery]:
    """The production fleet (one booted machine per host), nothing installed yet: test_fleet.py
    installs, upgrades and rolls back; test_fleet_drills.py drills host failures on it."""
    _ensure_host_tools()
    with deliver_fleet(pytestconfig.stash[_TIMINGS]) as d:
        yield d


# --------------------------------------------------------------------------------------------
# Drills and their table
# --------------------------------------------------------------------------------------------

_DRILLS = pytest.StashKey[list["Drill"]]()
_TIMINGS = pytest.StashKey[dict[str, float]]()
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    item.stash.setdefault(_REPORTS, {})[rep.when] = rep


@pytest.fixture
def env(deployment: Deployment) -> Iterator[Env]:
    """The server brought back to the installed state before the drill (and after it)."""
    e = Env(deployment)
    restore(e)
    yield e
    restore(e)


@pytest.fixture
def d(request: pytest.FixtureRequest, facts: Facts) -> Iterator[Drill]:
    """The :class:`Drill` of the failure-matrix row the test is marked with (``@row``); after the
    test its outcome is set for the drill table."""
    component, key = getattr(request.function, ROW_ATTR)
    yield from _tracked(request, Drill(facts.scenario(component, key), component))


@pytest.fixture(scope="session")
def production() -> Tree:
    """The repo spec's trees (the fleet drills' expectations: production/<host>'s plan)."""
    return build_tree(REPO / "spec")


@pytest.fixture
def fd(request: pytest.FixtureRequest, production: Tree) -> Iterator[Drill]:
    """Like :func:`d`, for a fleet drill marked ``@fleet_row(host, component, event)``: the row
    of that host's failure matrix in production (build/production/<host>/docs/failure_matrix.md)."""
    host, component, key = getattr(request.function, FLEET_ROW_ATTR)
    facts = Facts(production.builds[f"production/{host}"])
    yield from _tracked(request, Drill(facts.scenario(component, key), f"{host}: {component}"))


def _tracked(request: pytest.FixtureRequest, drill: Drill) -> Iterator[Drill]:
    request.config.stash[_DRILLS].append(drill)
    log(f"DRILL {drill.row}  (expected: {drill.expected})")
    t0 = time.monotonic()
    yield drill
    rep = request.node.stash.get(_REPORTS, {}).get("call")
    if rep is not None and rep.passed and not drill.verified:
        drill.outcome = "ERROR"
        drill.verify()  # a drill that forgot to: its mismatches still fail the run (at teardown)
    if rep is None:
        drill.outcome = "error"
    elif rep.passed:
        drill.outcome = "PASS"
    elif any(not c.ok for c in drill.checks):
        drill.outcome = "FAIL"
    else:
        drill.outcome = "ERROR"
        drill.notes.append(str(rep.longrepr).strip().splitlines()[-1][:200] if rep.longrepr else "error")
    log(f"drill test took {time.monotonic() - t0:.1f} s")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    drills: list[Drill] = config.stash.get(_DRILLS, [])
    timings: dict[str, float] = config.stash.get(_TIMINGS, {})
    if not drills and not timings:
        return
    tr = terminalreporter
    tr.section("zachot test server: failure drills")
    if timings:
        tr.write_line("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    if drills:
        def cell(s: str) -> str:
            return s.replace("|", "\\|").replace("\n", " ")

        tr.write_line("")
        # English throughout: the row by its spec keys (its title, in the docs' language, is in the docs)
        tr.write_line("| row (component / event) | expected (doc/plan) | observed | result | recovered, s after the fault |")
        tr.write_line("|---|---|---|---|---|")
        for d in drills:
            rec = f"{d.recover_s:.1f}" if d.recover_s is not None else "—"
            obs = d.observed + (f" [{d.mechanism}]" if d.mechanism else "")
            tr.write_line(f"| {cell(d.key)} | {cell(d.expected)} | {cell(obs)} | {d.outcome} | {rec} |")
        notes = [(d.key, n) for d in drills for n in d.notes]
        if notes:
            tr.write_line("")
            tr.write_line("notes:")
            for row, n in notes:  # keyed like the table
                tr.write_line(f"  - {row}: {n}")
