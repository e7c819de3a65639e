"""What systemd does by itself when a unit meets an event: the failure matrix's
"systemd auto-action" column, derived from the unit's settings instead of written by hand.

Rules, with their sources:

* Restart= decides by the exit cause, per the table "Exit causes and the effect of the
  Restart= settings" in systemd.service(5): a clean exit code or signal (0, SIGHUP,
  SIGINT, SIGTERM, SIGPIPE) restarts only with `always`/`on-success`; an unclean exit code
  with `always`/`on-failure`; an unclean signal (SIGKILL, also the OOM killer's) with
  `always`/`on-failure`/`on-abnormal`/`on-abort`.
* A stop or restart asked for by a human (systemctl) never triggers Restart=.
* ExecCondition= (systemd.service(5)): exit 1-254 skips the start without marking the unit
  failed, so Restart= is not triggered; exit 255 or a signal fails the unit like any other
  failed start command, so Restart= applies as for an unclean exit code.
* Restarts count against StartLimitBurst= starts within StartLimitIntervalSec=
  (systemd.unit(5)); past it the unit is left `failed` with result `start-limit-hit`
  until `systemctl reset-failed`.
* A process that hangs without exiting is invisible to systemd without WatchdogSec=.
* A start that fails before the process runs (an ``EnvironmentFile=`` without the ``-`` prefix
  that is missing or unreadable: "Failed to load environment files") ends with Result=resources;
  src/core/service.c ``service_shall_restart()`` restarts every result but success (and a skipped
  condition) with `on-failure`, and every result but success and an exit code with `on-abnormal`.
* At boot systemd starts every enabled unit (WantedBy=), each after the units in its After=
  (systemd.unit(5)); systemd-tmpfiles-setup.service runs before them (sysinit.target), so a
  tmpfiles.d line re-creates what is missing (tmpfiles.d(5)). Restart= plays no part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .filters import seconds
from .models import Event, Restart, Stop

__all__ = [
    "AutoAction",
    "auto_action",
    "boot_order",
    "condition_outcome",
    "crash_loop_seconds",
    "max_failed_start_seconds",
    "restarts_on",
    "server_action",
]

# systemd.service(5), "Exit causes and the effect of the Restart= settings".
_RESTARTS: dict[str, frozenset[str]] = {
    "clean": frozenset({"always", "on-success"}),
    "unclean_code": frozenset({"always", "on-failure"}),
    "unclean_signal": frozenset({"always", "on-failure", "on-abnormal", "on-abort"}),
    "resources": frozenset({"always", "on-failure", "on-abnormal"}),
}

_CAUSE: dict[str, str] = {
    "crash": "unclean_code",
    "crash_loop": "unclean_code",
    "condition_error": "unclean_code",
    "killed": "unclean_signal",
    "oom": "unclean_signal",
    "clean_exit": "clean",
    "env_file_missing": "resources",
}


@dataclass(frozen=True)
class AutoAction:
    """A derived auto-action: a catalog ``key`` and the numbers its sentence needs.

    ``key`` is one of: ``restart``, ``restart_then_limit``, ``no_restart``, ``inactive_no_restart``
    (a clean exit Restart= does not cover: the unit is inactive, not failed), ``stop_only``,
    ``stop_start``, ``nothing``, ``skip``, ``fail_then_restart``, ``fail_no_restart``,
    ``stopped_with_dependency``, ``host_down``, ``partition``, ``resources_then_limit``,
    ``resources_forever``, ``resources_no_restart`` (a start refused before the process runs),
    ``unseen`` (the process runs and answers; what fails is not visible to systemd), and for the
    server's own events (:func:`server_action`) ``boot``, ``boot_plain``, ``disk_full`` and
    ``bad_deploy``. ``params`` hold seconds as floats and
    counts as ints.
    """

    key: str
    params: dict[str, object] = field(default_factory=dict)

    @property
    def params_text(self) -> dict[str, str]:
        """``params`` as text for a sentence: seconds without a useless fraction (5.0 -> "5")."""
        return {k: seconds(v) if isinstance(v, float) else str(v) for k, v in self.params.items()}


def restarts_on(policy: str, event: Event) -> bool:
    """Whether Restart=``policy`` restarts the unit after ``event`` (see the module rules)."""
    cause = _CAUSE.get(event)
    return cause is not None and policy in _RESTARTS[cause]


def crash_loop_seconds(restart: Restart) -> float | None:
    """Seconds of crash-looping after which the start limit leaves the unit failed.

    A unit crashing at once after each start is started every ``delay_sec``; the start
    limit is hit when more than ``start_limit_burst`` starts fall within
    ``start_limit_interval_sec``. Returns the time from the first start to the refused
    one, or ``None`` when the starts are spaced too far apart to ever hit the limit
    (or the limit is off: interval 0).
    """
    if restart.start_limit_interval_sec == 0:
        return None
    span = restart.start_limit_burst * restart.delay_sec  # first start .. the (burst+1)-th
    return span if span <= restart.start_limit_interval_sec else None


def max_failed_start_seconds(restart: Restart) -> float | None:
    """How long (seconds, rounded down to 0.1) one failed start may take for a crash loop to still
    reach the start limit; ``None`` when it never does (see :func:`crash_loop_seconds`).

    The limit needs ``start_limit_burst`` + 1 starts within ``start_limit_interval_sec``
    (systemd.unit(5), StartLimitIntervalSec=/StartLimitBurst=); starts come ``delay_sec`` plus the
    failed start's own duration apart, so that duration may be at most interval / burst - delay.
    """
    if crash_loop_seconds(restart) is None:
        return None
    return math.floor((restart.start_limit_interval_sec / restart.start_limit_burst - restart.delay_sec) * 10) / 10


def _limit_params(restart: Restart) -> dict[str, object]:
    loop = crash_loop_seconds(restart)
    return {
        "policy": restart.policy,
        "delay": restart.delay_sec,
        "burst": restart.start_limit_burst,
        "interval": restart.start_limit_interval_sec,
        "gives_up_after": None if loop is None else math.ceil(loop),
        "max_start": max_failed_start_seconds(restart),
    }


def auto_action(event: Event, restart: Restart, stop: Stop | None = None, condition_wait: int = 0) -> AutoAction:
    """Derive what systemd does after ``event`` for a unit with ``restart`` and ``stop``.

    Inputs: the event, the unit's Restart settings, its Stop settings (needed for the
    manual events; ``None`` for units whose stop settings are not modelled), and how long its
    ExecCondition= check retries a "skip" (seconds, ``Healthcheck.wait_sec``). Output: an
    :class:`AutoAction`. Raises nothing.
    """
    params = _limit_params(restart)
    if stop is not None:
        params |= {"signal": stop.signal, "stop_timeout": stop.timeout_sec, "kill_mode": stop.kill_mode}
    if event == "hang":
        return AutoAction("nothing", params)
    if event == "manual_stop":
        return AutoAction("stop_only", params)
    if event == "manual_restart":
        return AutoAction("stop_start", params)
    if event == "condition_skip":
        return AutoAction("skip_after_wait", params | {"wait": condition_wait}) if condition_wait else \
            AutoAction("skip", params)
    if event == "dependency_stopped":
        return AutoAction("stopped_with_dependency", params)
    if event in ("host_down", "partition"):
        return AutoAction(event, params)  # systemd on that host is gone, or sees nothing wrong
    if event == "maxmemory":
        return AutoAction("unseen", params)
    if event in ("reboot", "disk_full"):
        raise ValueError(f"{event!r} is an event of the server, not of one unit: use server_action()")
    if not restarts_on(restart.policy, event):
        key = {"condition_error": "fail_no_restart", "clean_exit": "inactive_no_restart",
               "env_file_missing": "resources_no_restart"}.get(event, "no_restart")
        return AutoAction(key, params)
    if event == "env_file_missing":
        limited = params["gives_up_after"] is not None
        return AutoAction("resources_then_limit" if limited else "resources_forever", params)
    if event == "condition_error":
        return AutoAction("fail_then_restart", params)
    if event == "crash_loop":
        return AutoAction("restart_then_limit" if params["gives_up_after"] is not None else "restart_forever", params)
    return AutoAction("restart", params)


def boot_order(after: dict[str, list[str]]) -> list[list[str]]:
    """The order systemd starts ``after``'s units at boot, as layers: each unit comes in the layer
    after the last of the units it names in After= (only those in ``after`` count; others are
    ordered elsewhere). Inputs: unit file name -> the unit files in its After=. Output: layers of
    unit names, each sorted; units in a layer start side by side. A cycle (which systemd breaks
    by dropping a job, systemd.unit(5)) puts the remaining units in one last layer."""
    layer: dict[str, int] = {}
    pending = dict(after)
    while pending:
        ready = {u: deps for u, deps in pending.items() if all(d in layer or d not in after for d in deps)}
        if not ready:  # a cycle: systemd breaks it somewhere; say the rest start together, last
            last = 1 + max(layer.values(), default=-1)
            layer |= dict.fromkeys(pending, last)
            break
        for u, deps in ready.items():
            layer[u] = 1 + max((layer[d] for d in deps if d in layer), default=-1)
            del pending[u]
    out: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for u, n in layer.items():
        out[n].append(u)
    return [sorted(x) for x in out]


def server_action(event: Event, after: dict[str, list[str]], tmpfiles: str | None, paths: list[str]) -> AutoAction:
    """What systemd does by itself after an event of the whole server (docmodels.SERVER_EVENTS).

    Inputs: ``after``, the server's enabled units (unit file -> its After= units, see
    :func:`boot_order`); ``tmpfiles``, the tmpfiles.d file that re-creates the logs at boot (None on
    a server without one: ``boot_plain``);
    ``paths``, the folders the services write (logs, Redis data). Output: ``boot`` with the start
    ``order`` (layers joined by " → ") and ``tmpfiles``, ``disk_full`` with the ``paths``, or
    ``bad_deploy`` (systemd runs what is installed and rolls nothing back).
    Raises ValueError for an event of one unit.
    """
    if event == "reboot":
        order = " → ".join(", ".join(layer) for layer in boot_order(after))
        if tmpfiles is None:
            return AutoAction("boot_plain", {"order": order})
        return AutoAction("boot", {"order": order, "tmpfiles": tmpfiles})
    if event == "disk_full":
        return AutoAction("disk_full", {"paths": ", ".join(paths)})
    if event == "bad_deploy":
        return AutoAction("bad_deploy", {})
    raise ValueError(f"{event!r} is an event of one unit, not of the server: use auto_action()")


def condition_outcome(code: int) -> str:
    """What an ExecCondition= exit ``code`` does (systemd.service(5), ExecCondition=).

    Returns ``"0"`` (the start goes on), ``"skip"`` (1-254: skipped, unit not failed,
    Restart= not triggered) or ``"fail"`` (255 and anything else: the unit fails).
    """
    if code == 0:
        return "0"
    return "skip" if 1 <= code <= 254 else "fail"
