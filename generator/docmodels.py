"""pydantic models of the docs-only sections: the failure matrix and the backup plan.

What systemd does in each row is derived (:mod:`generator.semantics`); these models hold
what only people know: symptoms, detection, manual actions, backup methods, recovery times.
Both sections are optional in a spec (:class:`generator.models.Spec`).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .spectypes import AbsPath, Name, Text
from .spectypes import SpecModel as _Model

__all__ = [
    "Backup",
    "BackupTarget",
    "Component",
    "DesignDecision",
    "DisasterScenario",
    "Event",
    "FailureMatrix",
    "HealthSignal",
    "NotBackedUp",
    "Principle",
    "Scenario",
]


class Principle(_Model):
    component: Name
    text: Text


class Component(_Model):
    """A row group of the failure matrix."""

    title: Text
    unit: Name | None = None
    """The service or external unit behind it (by spec name); null when it has none (the queue)."""


Event = Literal[
    "crash",
    "killed",
    "oom",
    "clean_exit",
    "manual_stop",
    "manual_restart",
    "hang",
    "condition_skip",
    "condition_error",
    "dependency_stopped",
    "crash_loop",
    "host_down",
    "partition",
    "env_file_missing",
    "maxmemory",
    "reboot",
    "disk_full",
    "bad_deploy",
]
"""What happens to a unit. ``host_down``: the host it runs on loses power or is powered off;
``partition``: that host is cut off from the others (packets dropped) while its processes run on.
Both are rows of an environment with several hosts only (:data:`HOST_EVENTS`).
``env_file_missing``: the unit's ``EnvironmentFile=`` is gone or unreadable, so systemd fails every
start before the process runs (Result: resources). ``maxmemory``: a Redis the tree configures
reaches its ``maxmemory`` and refuses writes (``OOM command not allowed``) while it runs on.
``reboot``, ``disk_full`` and ``bad_deploy`` are events of the server, for a component without a
unit (:data:`SERVER_EVENTS`): the server is rebooted; its disk (logs, Redis data) is full; a new
version or build/ was deployed that does not start or work and must be rolled back."""

HOST_EVENTS: frozenset[str] = frozenset({"host_down", "partition"})
"""Events of a host, not of a unit: rows about them exist only where units talk across hosts."""

SERVER_EVENTS: frozenset[str] = frozenset({"reboot", "disk_full", "bad_deploy"})
"""Events of the whole server: the row's component has no unit, and the auto-action is derived
from every unit the server runs (generator/semantics.py ``server_action``)."""


class HealthSignal(_Model):
    """What a healthcheck returns in a scenario."""

    check: Name
    exit: int


class Scenario(_Model):
    """One row of the failure matrix."""

    component: Name
    failure: Text
    event: Event | None = None
    """What systemd sees; the "systemd auto-action" column is derived from it and the unit's settings."""
    auto_action: Text | None = None
    """Only for components without a unit (e.g. the queue): what happens by itself."""
    symptoms: Text
    detection: Text
    healthcheck: HealthSignal | None = None
    manual_action: Text
    data_loss: Literal["Yes", "No", "Partial"] | None = None
    """Whether the failure loses data. Omitted: derived for a Redis the tree configures
    (generator/redisconf.py ``data_loss``); required for everything else."""
    comment: Text


class DesignDecision(_Model):
    title: Text
    decision: Text
    tradeoff: Text


class FailureMatrix(_Model):
    components: Annotated[dict[Name, Component], Field(min_length=1)]
    principles: list[Principle]
    scenarios: Annotated[list[Scenario], Field(min_length=1)]
    design_decisions: list[DesignDecision] = []


class BackupTarget(_Model):
    """Something that is backed up; its paths are derived from the spec where possible."""

    title: Text
    covers: Literal["env_file", "units", "logs", "paths"]
    """`env_file`, `units`, `logs`: the paths come from the spec; `paths`: listed below."""
    paths: list[AbsPath] = []
    methods: Annotated[list[Text], Field(min_length=1)]
    frequency: Text
    rto: Text
    """Recovery time objective, as text (e.g. "5-10 минут")."""
    notes: list[Text] = []


class NotBackedUp(_Model):
    what: Text
    why: Text


class DisasterScenario(_Model):
    title: Text
    when: Text
    steps: Annotated[list[Text], Field(min_length=1)]
    rto: Text


class Backup(_Model):
    goal: Text
    philosophy: list[Text]
    targets: Annotated[dict[Name, BackupTarget], Field(min_length=1)]
    not_backed_up: list[NotBackedUp]
    disasters: Annotated[dict[Name, DisasterScenario], Field(min_length=1)]
