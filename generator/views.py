"""The views the templates and docs read, computed once by the planner: a generated service,
a healthcheck, a unit's restart facts, and the failure matrix's rows and groups."""

from __future__ import annotations

from dataclasses import dataclass

from .accounts import Identity
from .hardening import Directive
from .limits import Limit
from .models import DesignDecision, ExternalUnit, Healthcheck, LogPolicy, Principle, Restart, Scenario, Service, Stop
from .redisconf import LossFact
from .semantics import AutoAction

__all__ = ["ComponentView", "HealthcheckView", "MatrixView", "ScenarioView", "ServiceView", "UnitFacts"]


@dataclass(frozen=True)
class ServiceView:
    """A generated service with everything its unit and the docs need."""

    name: str
    svc: Service
    unit_file: str
    identity: Identity
    exec_start: list[str]
    exec_condition: list[str] | None
    after: list[str]
    wants: list[str]
    requires: list[str]
    log_target: str
    """``files`` (stdout and stderr apart), ``file`` (both streams in the stdout file) or ``journal``."""
    stdout_path: str | None
    """The file stdout is appended to; None for the journal."""
    stderr_path: str | None
    """The file stderr is appended to; None for the journal or when it shares the stdout file."""
    policy: LogPolicy | None
    logrotate_path: str | None
    """Server path of its logrotate file; None for the journal."""
    gives_up_after: float | None
    hardening: list[Directive]
    limits: list[Limit]
    """LimitNOFILE=, TasksMax=, MemoryMax=, OOMScoreAdjust= lines (generator/limits.py)."""
    log_config: str | None = None
    """Server path of its uvicorn logging config (generator/logconfig.py); None for other runners."""
    start_timeout: int | None = None
    """TimeoutStartSec= (seconds) when its ExecCondition= check waits; None: systemd's default."""

    @property
    def log_files(self) -> list[str]:
        """The files the unit appends to, stdout's first (empty for the journal)."""
        return [f for f in (self.stdout_path, self.stderr_path) if f is not None]


@dataclass(frozen=True)
class HealthcheckView:
    """A healthcheck program, its command line and, for monitors, its timer unit."""

    name: str
    hc: Healthcheck
    command: list[str]
    run: list[str]
    """``command`` as the service would run it (systemd-run as the user, with the env file)."""
    script_path: str
    timer_unit: str | None
    hardening: list[Directive]


@dataclass(frozen=True)
class ScenarioView:
    """A failure-matrix row with its derived auto-action (None: the spec's text is used).

    ``sc`` is None for a row derived without a spec'd matrix: only ``event`` and the
    auto-action are known, every other column is "not yet described"."""

    sc: Scenario | None
    action: AutoAction | None
    healthcheck: HealthcheckView | None
    event: str | None = None
    loss: LossFact | None = None
    """The data-loss claim derived from a configured Redis's settings (generator/redisconf.py);
    None: the spec's ``data_loss`` is shown."""


@dataclass(frozen=True)
class ComponentView:
    """A row group of the failure matrix: its title and the unit behind it (spec name, or None)."""

    title: str
    unit: str | None


@dataclass(frozen=True)
class MatrixView:
    """The failure matrix the docs show: the spec's, or one derived from the units alone."""

    described: bool
    components: dict[str, ComponentView]
    principles: list[Principle]
    design_decisions: list[DesignDecision]


@dataclass(frozen=True)
class UnitFacts:
    """Restart and stop settings of any unit in the matrix, generated or external."""

    name: str
    title: str
    unit_file: str
    restart: Restart
    stop: Stop | None
    gives_up_after: float | None
    external: ExternalUnit | None = None
    max_start: float | None = None
    """Seconds one failed start may take for a crash loop to still hit the start limit."""
    condition_wait: int = 0
    """Seconds its ExecCondition= check retries a "skip" before the start is skipped."""
