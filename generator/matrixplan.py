"""The failure matrix's rows with their derived auto-actions: the spec's scenarios, or rows
derived from the units alone when the spec has no matrix (generator/semantics.py has the rules)."""

from __future__ import annotations

from . import layout
from .docmodels import HOST_EVENTS, SERVER_EVENTS
from .facts import enable_units
from .hosts import across_hosts
from .models import Event, Spec
from .redisconf import LossFact, data_loss
from .redisplan import DATA_DIR
from .semantics import AutoAction, auto_action, crash_loop_seconds, max_failed_start_seconds, server_action
from .views import ComponentView, HealthcheckView, MatrixView, ScenarioView, ServiceView, UnitFacts

__all__ = ["DERIVED_EVENTS", "matrix_rows", "unit_facts"]


def unit_facts(spec: Spec) -> dict[str, UnitFacts]:
    """Restart and stop facts of every unit the matrix may name, by spec name: the services and
    the external units (their ``gives_up_after``/``max_start`` from generator/semantics.py)."""
    out = {
        n: UnitFacts(n, s.title, f"{s.unit}.service", s.restart, s.stop, crash_loop_seconds(s.restart),
                     max_start=max_failed_start_seconds(s.restart),
                     condition_wait=spec.healthchecks[s.exec_condition].wait_sec if s.exec_condition else 0)
        for n, s in spec.services.items()
    }
    out |= {
        n: UnitFacts(n, e.title, f"{e.unit}.service", e.restart, None, crash_loop_seconds(e.restart), e,
                     max_failed_start_seconds(e.restart))
        for n, e in spec.external_units.items()
    }
    return out


DERIVED_EVENTS: tuple[Event, ...] = ("crash", "killed", "oom", "clean_exit", "hang", "crash_loop")
"""Events every generated service's derived rows cover; condition_skip/condition_error with an
exec_condition, dependency_stopped with requires. External units: crash, killed, crash_loop."""


def _derived_loss(facts: UnitFacts, event: str) -> LossFact | None:
    """What ``event`` loses, when the unit is a Redis the tree configures (generator/redisconf.py)."""
    redis = facts.external.redis if facts.external else None
    return data_loss(redis, event) if redis else None


def _derived(spec: Spec, units: dict[str, UnitFacts]) -> tuple[MatrixView, dict[str, list[ScenarioView]]]:
    comps = {n: ComponentView(u.title, n) for n, u in units.items()}
    out: dict[str, list[ScenarioView]] = {}
    for name, facts in units.items():
        svc = spec.services.get(name)
        events: list[Event] = list(DERIVED_EVENTS) if svc else ["crash", "killed", "crash_loop"]
        if svc and svc.exec_condition:
            events += ["condition_skip", "condition_error"]
        if svc and svc.requires:
            events.append("dependency_stopped")
        out[name] = [
            ScenarioView(None, auto_action(e, facts.restart, facts.stop, facts.condition_wait), None, e,
                         _derived_loss(facts, e))
            for e in events
        ]
    return MatrixView(False, comps, [], []), out


JOURNAL_DIR = "/var/log/journal"
"""Where journald stores what services log to the journal (systemd-journald.service(8), persistent)."""


def _server_action(spec: Spec, services: list[ServiceView], event: Event) -> AutoAction:
    """The auto-action of an event of the whole server, from the services' views (their After=
    unit files, where their output goes) and the units the server enables at boot."""
    enabled = [u for u in enable_units(spec) if u.endswith(".service")]  # timers wait for no service
    after = dict.fromkeys(enabled, list[str]()) | {sv.unit_file: sv.after for sv in services}
    paths = list(dict.fromkeys([
        *(spec.project.logs_dir if sv.log_files and spec.project.logs_dir else JOURNAL_DIR for sv in services),
        *(p for sv in services for p in sv.svc.hardening.writable_paths),
        *([DATA_DIR] if any(e.redis for e in spec.external_units.values()) else []),
    ]))
    tmpfiles = layout.tmpfiles_path(spec.project.name) if services else None  # as planner._artifacts
    return server_action(event, after, tmpfiles, paths)


def matrix_rows(
    spec: Spec, units: dict[str, UnitFacts], hcs: dict[str, HealthcheckView], services: list[ServiceView]
) -> tuple[MatrixView, dict[str, list[ScenarioView]]]:
    """The matrix the docs show and its rows by component (generator/semantics.py derives each
    auto-action). Without ``failure_matrix`` in the spec: rows of :data:`DERIVED_EVENTS` per unit.
    Rows about another host (``host_down``, ``partition``) appear only where units talk across
    hosts; an event of the server (``reboot``, ``disk_full``) takes its action from every unit the
    server enables. Raises nothing for a validated spec."""
    fm = spec.failure_matrix
    if fm is None:
        return _derived(spec, units)
    view = MatrixView(
        True, {n: ComponentView(c.title, c.unit) for n, c in fm.components.items()}, fm.principles, fm.design_decisions
    )
    out: dict[str, list[ScenarioView]] = {c: [] for c in fm.components}
    for sc in fm.scenarios:
        if sc.event in HOST_EVENTS and not across_hosts(spec):
            continue  # one server: losing it is the backup runbook's "server lost", not a matrix row
        unit_name = fm.components[sc.component].unit
        action, loss = None, None
        if sc.event in SERVER_EVENTS:
            action = _server_action(spec, services, sc.event)
        elif unit_name is not None and sc.event is not None:
            facts = units[unit_name]
            action = auto_action(sc.event, facts.restart, facts.stop, facts.condition_wait)
            loss = _derived_loss(facts, sc.event)
        hc = hcs[sc.healthcheck.check] if sc.healthcheck else None
        out[sc.component].append(ScenarioView(sc, action, hc, sc.event, loss))
    return view, out
