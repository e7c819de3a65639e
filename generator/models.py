"""pydantic models of the spec: the validated facts every artifact is rendered from.

Field docstrings are the user-facing documentation (they feed the JSON Schema).
Cross-references between sections are checked in :mod:`generator.crossref`, which
reports each dangling name at the exact place it was written.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, Strict

__all__ = [
    "AbsPath",
    "Backup",
    "BackupTarget",
    "Check",
    "Component",
    "DesignDecision",
    "DisasterScenario",
    "DramatiqRunner",
    "Event",
    "ExitCode",
    "ExternalUnit",
    "FailureMatrix",
    "Hardening",
    "HardeningException",
    "Healthcheck",
    "HealthSignal",
    "LogPolicy",
    "Logs",
    "NotBackedUp",
    "NotChecked",
    "Principle",
    "Project",
    "Restart",
    "Runner",
    "Scenario",
    "Service",
    "Spec",
    "Stop",
    "UvicornRunner",
    "Watchdog",
]

_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
# systemd's "strict" user/group name rule (systemd.exec(5) User=, and the
# "User/Group Name Syntax" doc): ASCII letters, digits, '_' and '-', not starting
# with a digit or '-', at most 31 characters.
_USER = r"^[a-zA-Z_][a-zA-Z0-9_-]{0,30}$"
# Characters allowed in paths: no whitespace, quotes, '%' (a systemd specifier),
# '$' (an environment expansion), '\\' or glob characters, so a path means the same in a
# unit file, a logrotate file, tmpfiles.d and a shell snippet in the docs.
_PATH_CHARS = re.compile(r"[A-Za-z0-9._/@+-]+")
# What a repository URL may hold: no whitespace, quotes, backticks, backslashes or shell
# redirections; it is shown in a `git clone` command (shell-quoted all the same).
_REPO_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:|/)[^\s\"'`\\|<>{}^]+")


def _abs_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path (start with '/')")
    return _clean_path(value)


def _rel_path(value: str) -> str:
    if value.startswith("/"):
        raise ValueError("must be relative to the repo checkout, not absolute")
    return _clean_path(value)


def _clean_path(value: str) -> str:
    if not _PATH_CHARS.fullmatch(value):
        raise ValueError("may only contain letters, digits and . _ / @ + - (no spaces, quotes, %, $, globs)")
    parts = value.strip("/").split("/")
    if value != "/" and (value.endswith("/") or "" in parts or "." in parts or ".." in parts):
        raise ValueError("must be normalised: no '//', '/./', '/../' and no trailing '/'")
    if len(value) > 1024 or any(len(p) > 255 for p in parts):
        raise ValueError("too long: at most 1024 characters, and 255 per folder or file name (NAME_MAX)")
    return value


def _repo_url(value: str) -> str:
    if not _REPO_URL.fullmatch(value):
        raise ValueError(
            "must be a repository URL (https://..., ssh://..., git@host:path, or an absolute path) "
            "without spaces, quotes, backticks, backslashes, '|', '<', '>'"
        )
    return value


def _unit_text(value: str) -> str:
    if re.search(r"[\x00-\x1f\x7f]", value):
        raise ValueError("lands in a unit file: must be one line without control characters (newline, tab)")
    if value.endswith("\\"):
        raise ValueError("lands in a unit file: a trailing backslash would join the next line")
    return value


def _not_root(value: str) -> str:
    if value == "root":
        raise ValueError("the services must not run as root; name a system user (sysusers.d creates it)")
    return value


def _file_name(value: str) -> str:
    if "/" in value or value in {".", ".."} or value.startswith(".") or not _PATH_CHARS.fullmatch(value):
        raise ValueError("must be a plain, non-hidden file name (no '/', no leading '.')")
    return value


def _mode_not_number(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f'write the mode quoted, e.g. "0640": YAML reads 0640 unquoted as the number {value}')
    return value


def _octal_mode(value: str) -> str:
    if not re.fullmatch(r"0[0-7]{3}", value):
        raise ValueError('must be a 4-digit octal mode written as a string, e.g. "0640"')
    return value


AbsPath = Annotated[str, AfterValidator(_abs_path)]
"""An absolute, normalised path that needs no quoting in any artifact."""
RelPath = Annotated[str, AfterValidator(_rel_path)]
FileName = Annotated[str, AfterValidator(_file_name)]
Mode = Annotated[str, BeforeValidator(_mode_not_number), AfterValidator(_octal_mode)]
Name = Annotated[str, Field(pattern=_NAME)]
UserName = Annotated[str, Field(pattern=_USER)]
Text = Annotated[str, Field(min_length=1)]
UnitText = Annotated[str, Field(min_length=1), AfterValidator(_unit_text)]
"""Free text written into a unit file (Description=, Environment= values): one line."""
ServiceUser = Annotated[str, Field(pattern=_USER), AfterValidator(_not_root)]
Flag = Annotated[bool, Strict()]
"""true or false, nothing else (not 1, not "yes")."""
RepoUrl = Annotated[str, Field(max_length=2048), AfterValidator(_repo_url)]
Seconds = Annotated[float, Field(ge=0.000001, le=86400 * 7)]
"""A time span in seconds, > 0 at systemd's resolution of one microsecond, at most 7 days."""


def _stop_timeout(value: object) -> float | str:
    if value == "infinity":
        return "infinity"
    if isinstance(value, int | float) and not isinstance(value, bool) and 0.000001 <= value <= 86400 * 7:
        return float(value)
    raise ValueError(
        "want seconds (at least 0.000001, at most 7 days) or `infinity`; a packaged TimeoutStopSec=0 (no stop "
        "timeout, systemd.service(5)) is written `infinity`"
    )


StopTimeout = Annotated[float | Literal["infinity"], PlainValidator(_stop_timeout)]
"""TimeoutStopSec=: seconds, or `infinity` (systemd never sends the final SIGKILL)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False)


class EnvVar(_Model):
    """A variable of the env file; the docs list it, the file itself is never generated."""

    description: Text
    example: Annotated[str, Field(pattern=r"^[^\x00-\x1f\x7f]*$")]
    """A value shown in the docs (never a real secret)."""
    required: Flag = False
    secret: Flag = False
    """Secret values are shown as `<secret>` in the docs."""


class Project(_Model):
    """Facts about the deployment as a whole."""

    name: Name
    """Project name; prefixes the generated file names (`<name>.conf`)."""
    title: UnitText
    """Human name used in the docs' headings and the service user's GECOS (one line)."""
    language: Literal["ru", "en"]
    """Language of the generated docs: labels come from templates/i18n/<language>.yaml."""
    user: ServiceUser
    """System user the services run as (User=); not root."""
    group: ServiceUser
    """Primary group of that user (Group=)."""
    root: AbsPath
    """Root folder of the installation, e.g. /opt/zachot."""
    venv: AbsPath
    """The Python virtualenv the services run from; its bin/ holds python, uvicorn, dramatiq."""
    env_file: AbsPath
    """The environment file every unit loads (EnvironmentFile=); holds secrets, never generated."""
    env_vars: dict[Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], EnvVar] = {}
    """What the env file holds, for the docs and the install runbook."""
    env_file_mode: Mode = "0640"
    """Mode of the env file (owner root, group `group`): the manager reads it as root;
    the group lets a manual healthcheck run read it."""
    repo: AbsPath
    """Checkout of the application repository (WorkingDirectory=)."""
    repo_url: RepoUrl
    """Where the code lives; the docs tell to restore it from here instead of backing it up."""
    extras: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$", max_length=64)]] = []
    """Extras of the application's package that the install step installs with it
    (`pip install '<repo>[app]'`; PEP 508 extra names). Empty: the package alone."""
    source: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    """This spec's own checkout of that code, relative to the spec folder (e.g. `..`): when set,
    lint checks that every healthcheck script and runner module the units name exists there."""
    logs_dir: AbsPath
    """Folder of the services' log files, owned by `user`:`group`."""
    logs_dir_mode: Mode = "0750"
    """Mode of the logs folder."""


class Restart(_Model):
    """Restart policy: systemd.service(5) Restart=, RestartSec=; systemd.unit(5) StartLimit*=."""

    policy: Literal["no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"]
    """Restart=: which exits make systemd start the service again."""
    delay_sec: Seconds
    """RestartSec=: seconds between the exit and the restart."""
    start_limit_interval_sec: Annotated[int, Field(ge=0, le=86400)]
    """StartLimitIntervalSec= (in [Unit]): the window start attempts are counted in, seconds."""
    start_limit_burst: Annotated[int, Field(ge=1, le=1000)]
    """StartLimitBurst= (in [Unit]): starts allowed in that window before the unit is left failed."""
    ride_out_sec: Annotated[int, Field(ge=1, le=86400)] | None = None
    """The longest outage (of Redis, say) the service must survive by restarting: lint fails
    when a crash loop would hit the start limit sooner. Null: no such promise."""


class Stop(_Model):
    """How systemd stops the service: systemd.kill(5) KillSignal=, KillMode=; TimeoutStopSec=."""

    signal: Literal["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP"] = "SIGTERM"
    """KillSignal=: the first signal sent on stop."""
    timeout_sec: Seconds
    """TimeoutStopSec=: seconds systemd waits after KillSignal= before SIGKILL."""
    kill_mode: Literal["control-group", "mixed", "process"] = "control-group"
    """KillMode=: `mixed` sends KillSignal= to the main process only (it forwards it to its
    children), the final SIGKILL to all."""


class UvicornRunner(_Model):
    """The API process: uvicorn serving an ASGI app."""

    kind: Literal["uvicorn"]
    app: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", max_length=255)]
    """ASGI app as `module:attribute`."""
    host: Annotated[str, Field(pattern=r"^[0-9a-fA-F.:]+$|^localhost$")]
    """Address to bind (--host)."""
    port: Annotated[int, Field(ge=1, le=65535)]
    """TCP port (--port)."""
    graceful_shutdown_sec: Annotated[int, Field(ge=1, le=3600)]
    """--timeout-graceful-shutdown: seconds uvicorn waits for open connections (SSE streams) after SIGTERM."""


class DramatiqRunner(_Model):
    """The worker process: the dramatiq CLI consuming queues."""

    kind: Literal["dramatiq"]
    module: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$", max_length=255)]
    """Module that declares the broker and the actors."""
    queues: Annotated[list[Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")]], Field(min_length=1)]
    """--queues: the queues this worker consumes."""
    processes: Annotated[int, Field(ge=1, le=64)]
    """--processes."""
    threads: Annotated[int, Field(ge=1, le=256)]
    """--threads (per process)."""
    shutdown_timeout_sec: Annotated[int, Field(ge=1, le=86400)]
    """--worker-shutdown-timeout (given in seconds here, passed in milliseconds): how long
    dramatiq waits for running actors after SIGTERM."""


Runner = Annotated[UvicornRunner | DramatiqRunner, Field(discriminator="kind")]


class Logs(_Model):
    """Where the service's output goes: StandardOutput=append:, StandardError=append:."""

    policy: Name
    """Name of a `log_policies` entry."""
    stdout: FileName
    """File in `project.logs_dir` that receives stdout."""
    stderr: FileName
    """File in `project.logs_dir` that receives stderr."""


class Watchdog(_Model):
    """Whether WatchdogSec= is used, and why (not)."""

    enabled: Literal[False]
    """Only `false` is supported: the apps do not send sd_notify heartbeats."""
    reasons: Annotated[list[Text], Field(min_length=1)]
    """Why the watchdog is not used; rendered into the docs."""


class HardeningException(_Model):
    """A relaxation of one preset directive, with the reason it is needed."""

    value: Annotated[str, AfterValidator(_unit_text)]
    """The value used instead of the preset's; empty to leave the directive out."""
    reason: Text
    """Why the preset value breaks this service; shown in the docs."""


class Hardening(_Model):
    """Sandboxing of one unit: the preset (generator/hardening.py) minus recorded exceptions."""

    exceptions: dict[str, HardeningException] = {}
    """Preset directives relaxed for this unit, by directive name (e.g. `ProtectProc`)."""
    writable_paths: list[AbsPath] = []
    """Extra paths the service writes besides its logs (state); become ReadWritePaths=."""
    exposure: Annotated[float, Field(ge=0, le=10)] | None = None
    """The overall exposure `systemd-analyze security --offline=true` reports for the unit;
    `zachot-gen validate` fails when the tool disagrees. Null: not measured (not shown)."""


class Service(_Model):
    """A service whose unit zachot-gen generates."""

    title: Text
    """Display name in the docs (API, Worker)."""
    description: UnitText
    """Description= of the unit."""
    unit: Name
    """Unit name without `.service`."""
    runner: Runner
    """What ExecStart= runs."""
    restart: Restart
    stop: Stop
    after: list[Name] = []
    """Units (by spec name) this one starts after (After=)."""
    wants: list[Name] = []
    """Weak dependencies (Wants=): started with this unit, their failure does not stop it."""
    requires: list[Name] = []
    """Hard dependencies (Requires=): stopping them stops this unit."""
    exec_condition: Name | None = None
    """A healthcheck with role `exec_condition` run as ExecCondition= before every start."""
    logs: Logs
    environment: dict[
        Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], Annotated[str, AfterValidator(_unit_text)]
    ] = {}
    """Non-secret Environment= variables; secrets belong in the env file."""
    in_memory_state: list[Text] = []
    """What lives only in this process's memory and is lost on every restart."""
    watchdog: Watchdog | None = None
    hardening: Hardening = Hardening()


class ExternalUnit(_Model):
    """A unit the system provides (e.g. Debian's redis-server.service); zachot-gen only refers to it."""

    title: Text
    unit: Name
    """Unit name without `.service`."""
    provided_by: Text
    """Where the unit file comes from (a package)."""
    restart: Restart
    """Its restart settings as packaged, used to derive the failure matrix."""
    stop_timeout_sec: StopTimeout | None = None
    """TimeoutStopSec= as packaged (seconds), or `infinity` when systemd never sends the final
    SIGKILL (systemd.service(5); the packaged `TimeoutStopSec=0` means the same). Quoted in
    prose as ``${<name>.stop_timeout}``."""
    persistence: Text
    """What survives a restart of it (e.g. Redis RDB/AOF settings)."""


class LogPolicy(_Model):
    """Log file ownership and rotation, logrotate.conf(5) directive by directive."""

    owner: UserName
    group: UserName
    mode: Mode
    """Mode of the live and rotated log files."""
    frequency: Literal["daily", "weekly", "monthly"]
    rotate: Annotated[int, Field(ge=1, le=3650)]
    """`rotate`: rotated files kept."""
    compress: Flag
    """`compress` (gzip)."""
    delaycompress: Flag
    """`delaycompress`: the newest rotated file stays uncompressed one more cycle."""
    dateext: Flag
    dateformat: Annotated[str, Field(pattern=r"^[-._A-Za-z0-9%]+$")] = "-%Y%m%d"
    """`dateformat` (only %Y %m %d %H %M %S %V %s are understood by logrotate)."""
    copytruncate: Flag
    """`copytruncate`: copy then truncate in place, so the writer keeps its file descriptor."""
    missingok: Flag = True
    notifempty: Flag = True


class ExitCode(_Model):
    """What one exit code of a healthcheck means."""

    status: Annotated[str, Field(pattern=r"^[A-Z][A-Z_]*$")]
    """Short status word (OK, DEGRADED, DOWN, SKIP, BROKEN)."""
    meaning: Text


class Check(_Model):
    """One check of a healthcheck script."""

    id: Name
    title: Text
    description: Text
    fails_as: int
    """Exit code the script returns when this check fails."""


class NotChecked(_Model):
    what: Text
    why: Text


class Healthcheck(_Model):
    """A healthcheck program of the app and how it is wired into systemd."""

    title: UnitText
    script: RelPath
    """Path of the script inside the repo checkout; run with the venv's python."""
    service: Name
    """The service it checks."""
    role: Literal["exec_condition", "monitor"]
    """`exec_condition`: run by systemd before each start; `monitor`: run by people and by a timer."""
    description: Text
    checks: list[Check] = []
    exit_codes: Annotated[dict[int, ExitCode], Field(min_length=1)]
    timeout_sec: Annotated[int, Field(ge=1, le=600)]
    """Hard limit of one run, seconds."""
    every_sec: Annotated[int, Field(ge=10, le=86400)] | None = None
    """For `monitor`: run by a systemd timer this often (OnUnitActiveSec=); null for no timer."""
    not_checked: list[NotChecked] = []
    hardening: Hardening = Hardening()
    """Sandboxing of the timer's oneshot unit (role `monitor` with every_sec)."""


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
]


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
    data_loss: Literal["Yes", "No", "Partial"]
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


class Spec(_Model):
    """The whole deployment: every spec/*.yaml file's top-level sections merged."""

    project: Project
    services: Annotated[dict[Name, Service], Field(min_length=1)]
    external_units: dict[Name, ExternalUnit] = {}
    log_policies: Annotated[dict[Name, LogPolicy], Field(min_length=1)]
    healthchecks: dict[Name, Healthcheck] = {}
    failure_matrix: FailureMatrix
    backup: Backup
