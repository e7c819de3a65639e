"""Shared by the server tests: the generator's facts, the deployment handle and drill records."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import testserver as ts
from testserver import REPO, STAGING, Runbook, Server, ServerError, log, wait_for

from generator import Build, Tree, render_to
from generator.environment import TEMPLATES_DIR
from generator.i18n import Catalog, load_catalog
from generator.planner import HealthcheckView, ScenarioView, ServiceView, UnitFacts


@dataclass
class Facts:
    """What the generator's plan says about the deployment (the tests' expectations)."""

    build: Build

    @property
    def plan(self) -> Any:
        return self.build.plan

    @property
    def project(self) -> Any:
        return self.plan.spec.project

    def service(self, name: str) -> ServiceView:
        return next(s for s in self.plan.services if s.name == name)

    def unit(self, name: str) -> UnitFacts:
        return self.plan.units[name]

    def unit_file(self, component: str) -> str:
        comp = self.plan.spec.failure_matrix.components[component]
        return str(self.plan.units[comp.unit].unit_file)

    @property
    def monitor(self) -> HealthcheckView:
        return next(h for h in self.plan.healthchecks if h.timer_unit)

    @property
    def precheck(self) -> HealthcheckView:
        return next(h for h in self.plan.healthchecks if h.hc.role == "exec_condition")

    def scenario(self, component: str, key: str) -> ScenarioView:
        """The failure-matrix row of ``component`` whose event (or failure text) is ``key``."""
        rows = [sv for sv in self.plan.scenarios[component] if key in (sv.sc.event, sv.sc.failure)]
        if len(rows) != 1:
            raise LookupError(f"{len(rows)} failure-matrix rows of {component!r} match {key!r}")
        return rows[0]


@dataclass
class Deployment:
    server: Server
    facts: Facts
    runbook: Runbook
    manifest: list[dict[str, str]]
    install_output: str
    timings: dict[str, float]
    env_file_lines: list[str] = field(default_factory=list)
    runbook_workarounds: list[str] = field(default_factory=list)


def wait_services_up(server: Server, facts: Facts, timeout: float = 60) -> None:
    """All enabled services active, /readyz 200 and a live worker heartbeat in Redis."""
    units = [facts.unit_file("redis"), *(s.unit_file for s in facts.plan.services)]
    wait_for(lambda: all(server.active_state(u) == "active" for u in units), timeout,
             f"{', '.join(units)} active")
    wait_for(lambda: server.http.get("/readyz").status_code == 200, timeout, "GET /readyz 200")
    wait_for(lambda: worker_heartbeat_age(server) is not None and worker_heartbeat_age(server) < 5,  # type: ignore[operator]
             timeout, "a live worker heartbeat")


def worker_heartbeat_age(server: Server) -> float | None:
    """Seconds since the newest ``zachot-worker-*`` dramatiq heartbeat, None if there is none."""
    from app.settings import DRAMATIQ_NAMESPACE, WORKER_ID_PREFIX
    r = server.redis()
    try:
        beats = r.zrange(f"{DRAMATIQ_NAMESPACE}:__heartbeats__", 0, -1, withscores=True)
        now_ms = float(r.time()[0]) * 1000 + float(r.time()[1]) / 1000
    finally:
        r.close()
    ws = [score for name, score in beats if str(name).startswith(WORKER_ID_PREFIX)]
    return (now_ms - max(ws)) / 1000 if ws else None


RISK_ORDER = {"No": 0, "Partial": 1, "Yes": 2}

ROW_ATTR = "drill_row"
"""Attribute the ``@row`` decorator sets on a drill test: (component, event or failure text)."""
FLEET_ROW_ATTR = "fleet_drill_row"
"""Attribute the ``@fleet_row`` decorator sets on a fleet drill: (host, component, event)."""


@functools.cache
def _english() -> Catalog:
    return load_catalog(REPO / "templates", "en")


def expected_action_text(sv: ScenarioView) -> str:
    """The doc's "systemd auto-action" sentence for the row, in English: the same label and
    parameters the failure-matrix template renders (templates/i18n/en.yaml, ``auto_action.*``)."""
    if sv.action is None:
        return f"(spec text) {sv.sc.auto_action}"
    return _english()(f"auto_action.{sv.action.key}", **sv.action.params_text)


@dataclass
class Check:
    name: str
    expected: str
    observed: str
    ok: bool


@dataclass
class Drill:
    """One failure-matrix row being reproduced: the plan's expectation and what was observed."""

    sv: ScenarioView
    component: str
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    recover_s: float | None = None
    outcome: str = "not run"
    mechanism: str = ""
    verified: bool = False

    @property
    def row(self) -> str:
        return str(self.sv.sc.failure)

    @property
    def key(self) -> str:
        """The row as ``component / event``: the spec's own keys, the same in every doc language."""
        return f"{self.component} / {self.sv.event or self.sv.sc.event or self.sv.sc.failure}"

    @property
    def expected(self) -> str:
        parts = [expected_action_text(self.sv)]
        if self.sv.sc.healthcheck:
            parts.append(f"hc→{self.sv.sc.healthcheck.exit}")
        parts.append(f"loss {self.doc_loss}")
        return "; ".join(parts)

    @property
    def doc_loss(self) -> str:
        """The row's data-loss claim: derived from the Redis settings, or the spec's own."""
        return self.sv.loss.value if self.sv.loss else str(self.sv.sc.data_loss)

    @property
    def observed(self) -> str:
        return "; ".join(f"{c.name}: {c.observed}" for c in self.checks)

    def check(self, name: str, expected: object, observed: object, ok: bool | None = None) -> bool:
        """Record one comparison (``ok`` defaults to expected == observed); never raises."""
        good = (expected == observed) if ok is None else ok
        self.checks.append(Check(name, str(expected), str(observed), bool(good)))
        log(f"  [{self.component}] {name}: expected {expected}; observed {observed} -> {'ok' if good else 'MISMATCH'}")
        return bool(good)

    def check_hc(self, observed_exit: int, reports: list[str] | None = None) -> None:
        """Detection by the healthcheck's exit code, as the row says (if it names one); with the
        failure ``reports`` that run caused, exactly one for a failed run and none for OK."""
        if self.sv.sc.healthcheck is not None:
            self.check("healthcheck exit", self.sv.sc.healthcheck.exit, observed_exit)
        if reports is not None:
            want = 0 if observed_exit == 0 else 1
            self.check("failure report (OnFailure=)", f"{want} journal line(s) at crit", f"{len(reports)}: {reports}",
                       len(reports) == want)

    def check_loss(self, observed: str, detail: str) -> None:
        """Data-loss risk: observed No/Partial/Yes must not exceed the doc's risk."""
        exp = self.doc_loss
        self.check("data loss", exp, f"{observed} ({detail})", RISK_ORDER[observed] <= RISK_ORDER[exp])

    def note(self, text: str) -> None:
        self.notes.append(text)
        log(f"  [{self.component}] note: {text}")

    def verify(self) -> None:
        """Raise AssertionError naming every check that disagreed with the doc."""
        self.verified = True
        bad = [c for c in self.checks if not c.ok]
        if bad:
            raise AssertionError(
                f"failure matrix row {self.row!r} does not match the server:\n"
                + "\n".join(f"  - {c.name}: doc/plan says {c.expected}; observed {c.observed}" for c in bad))


EDITOR_INSIDE = "/usr/local/bin/zachot-test-editor"


def _env_lines(runbook: ts.Runbook) -> list[str]:
    """What the human types into the env file: the variables the runbook's table marks required,
    with its examples (app/README.md: every other ZACHOT_* variable is optional)."""
    lines = [f"{name}={example}" for name, example in runbook.required_env]
    if not lines:
        raise ServerError("the runbook's env table marks no variable as required (want ZACHOT_REDIS_URL)")
    return lines


def _install_editor(root: Path, lines: list[str]) -> None:
    """The 'human' at the runbook's `sudoedit`: an $EDITOR that writes the env lines into the file."""
    editor = root / EDITOR_INSIDE.lstrip("/")
    editor.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{ln}\n" for ln in lines)
    editor.write_text(f"#!/bin/sh\n# zachot server tests: stands in for a person editing the env file\n"
                      f"printf '%s' {shlex.quote(body)} > \"$1\"\n")
    editor.chmod(0o755)


#: Work-arounds for runbook lines that fail, so the rest of the suite can still run. Each use is
#: recorded; test_install_runbook_runs_verbatim fails if any was needed.
_MISSING_DIR = re.compile(r"cannot create regular file '([^']+)': No such file or directory")


def run_runbook(server: Server, runbook: ts.Runbook, cwd: str) -> tuple[str, list[str]]:
    """Run the runbook block line by line, as a person pasting it would; returns (output, work-arounds)."""
    out, workarounds = [], []
    env = {"EDITOR": EDITOR_INSIDE, "VISUAL": EDITOR_INSIDE, "SUDO_EDITOR": EDITOR_INSIDE}
    for n, line in enumerate(runbook.block, 1):
        r = server.run(["bash", "-o", "pipefail", "-c", line], cwd=cwd, check=False, timeout=300, env=env)
        out.append(f"$ {line}\n{r.stdout}{r.stderr}")
        if r.returncode == 0:
            continue
        m = _MISSING_DIR.search(r.stderr)
        if m:
            parent = str(Path(m.group(1)).parent)
            workarounds.append(f"line {n} `{line}` failed ({r.stderr.strip()}); ran `mkdir -p {parent}` and "
                               f"the line again")
            server.run(["mkdir", "-p", parent])
            r = server.run(["bash", "-o", "pipefail", "-c", line], cwd=cwd, check=False, timeout=300, env=env)
            out.append(f"$ {line}  # again, after mkdir -p {parent}\n{r.stdout}{r.stderr}")
            if r.returncode == 0:
                continue
        raise ServerError(f"runbook line {n} failed (exit {r.returncode}): {line}\n" + "\n".join(out)[-4000:])
    return "\n".join(out), workarounds


@contextlib.contextmanager
def booted_server(runbook: Runbook, repo: str, api_port: int, timings: dict[str, float],
                  tree: Path | None = None, machine: str | None = None,
                  release: tuple[str, list[str]] | None = None) -> Iterator[tuple[Server, list[str]]]:
    """A fresh server on the cached base and venv layers of ``runbook``, the checkout copied to
    ``repo`` (the runbook's `git clone`), ``tree`` (a rendered build/, if given) copied to
    /root/tree/build, and the stand-in editor that types the runbook's required env lines; booted.
    ``release`` = (suite, packages): a bare root of that Debian release instead (no venv, an
    empty ``repo`` folder). Yields (server, env lines); powers it off and removes its root afterwards."""
    ts.reap_stale()
    if release is None:
        base, bkey = ts.ensure_base(timings, runbook.apt_packages)
        layers = [ts.ensure_venv(base, bkey, runbook, timings), base]
    else:
        layers = [ts.ensure_base(timings, suite=release[0], packages=release[1])[0]]
    scratch = Path(tempfile.mkdtemp(prefix="zachot-server-", dir=ts.WORK_DIR))
    (scratch / ts.OWNER_FILE).write_text(str(os.getpid()))
    server: Server | None = None
    try:
        root = ts.mount_overlay(layers, scratch)
        if release is None:
            ts.copy_checkout(root / repo.lstrip("/"))
        else:
            (root / repo.lstrip("/")).mkdir(parents=True)
        if tree is not None:
            shutil.copytree(tree, root / TREE_INSIDE.lstrip("/") / "build")
        env_lines = _env_lines(runbook)
        _install_editor(root, env_lines)
        server = Server(root, scratch, api_port=api_port, **({"machine": machine} if machine else {}))
        timings["boot"] = server.boot()
        yield server, env_lines
    finally:
        t0 = time.monotonic()
        if server is not None:
            server.destroy()
        else:
            ts.unmount_and_remove(scratch)
        timings["teardown"] = time.monotonic() - t0


@dataclass
class FixtureDeployment:
    """A fixture spec installed by its own runbook on a fresh server (:func:`deploy_fixture`)."""

    server: Server
    tree: Tree
    output: str
    """The runbook transcript."""
    cursor: str | None
    """The journal cursor just before the runbook ran."""


@contextlib.contextmanager
def deploy_fixture(spec: Path, api_port: int, release: tuple[str, list[str]] | None = None,
                   prepare: Callable[[Server], None] | None = None) -> Iterator[FixtureDeployment]:
    """Render ``spec`` (no environments) on the host, boot a fresh server (:func:`booted_server`,
    ``release`` as there), run ``prepare`` on it, then the tree's own runbook verbatim from
    :data:`TREE_INSIDE`; no work-around is allowed. Powers the server off afterwards."""
    work = Path(tempfile.mkdtemp(prefix="zachot-fixture-tree-"))
    try:
        tree = render_to(spec, work / "build")
        runbook = ts.parse_runbook((work / "build/docs/README.md").read_text())
        machine = f"zachot-{spec.name[:12].replace('_', '-')}-{os.getpid()}"
        with booted_server(runbook, tree.plan.spec.project.repo, api_port, {}, work / "build", machine,
                           release) as (server, _):
            if prepare is not None:
                prepare(server)
            cursor = server.journal_cursor()
            t0 = time.monotonic()
            output, workarounds = run_runbook(server, runbook, TREE_INSIDE)
            log(f"{spec.name} installed by its runbook in {time.monotonic() - t0:.1f} s")
            assert not workarounds, workarounds
            yield FixtureDeployment(server, tree, output, cursor)
    finally:
        shutil.rmtree(work, ignore_errors=True)


TREE_INSIDE = "/root/tree"
"""Where :func:`booted_server` puts a rendered tree's build/; a runbook run there finds build/..."""


@contextlib.contextmanager
def deploy(facts: Facts, timings: dict[str, float]) -> Iterator[Deployment]:
    """Build/reuse the caches, boot a fresh server and install zachot by the runbook; yields the
    :class:`Deployment`; powers the server off and removes its root afterwards."""
    t_start = time.monotonic()
    runbook = ts.parse_runbook((REPO / STAGING / "docs/README.md").read_text())
    manifest = ts.read_manifest(REPO / STAGING / "manifest.tsv")
    project = facts.project
    api = facts.service("api").svc.runner
    with booted_server(runbook, project.repo, api.port, timings) as (server, env_lines):
        t0 = time.monotonic()
        install_output, workarounds = run_runbook(server, runbook, project.repo)
        wait_services_up(server, facts)
        timings["install (runbook block)"] = time.monotonic() - t0
        timings["session set-up total"] = time.monotonic() - t_start
        log(f"installed by the runbook in {timings['install (runbook block)']:.1f} s"
            + (f"; work-arounds: {workarounds}" if workarounds else ""))
        yield Deployment(server, facts, runbook, manifest, install_output, timings, env_lines, workarounds)

def deploy_block(dep: Deployment) -> list[str]:
    """The ```bash block of the staging README's deploy section (``readme.deploy_title``), comment
    lines left out: the routine deploy and, with the previous build/, the rollback."""
    readme = (REPO / STAGING / "docs/README.md").read_text()
    title = load_catalog(TEMPLATES_DIR, dep.facts.project.language)("readme.deploy_title")
    section = readme.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, section
    return [ln for ln in block.group(1).splitlines() if ln.strip() and not ln.startswith("#")]
