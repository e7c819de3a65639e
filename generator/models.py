"""pydantic models of the spec: the validated facts every artifact is rendered from.

Field docstrings are the user-facing documentation (they feed the JSON Schema).
Cross-references between sections are checked in :mod:`generator.crossref`, which
reports each dangling name at the exact place it was written.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict

from .alerts import OnFailure
from .checkmodels import Check, ExitCode, NotChecked
from .docmodels import (
    Backup,
    BackupTarget,
    Component,
    DesignDecision,
    DisasterScenario,
    Event,
    FailureMatrix,
    HealthSignal,
    NotBackedUp,
    Principle,
    Scenario,
)
from .hostmodels import Host
from .limits import Limits
from .redisconf import RedisSettings
from .runners import DramatiqRunner, Runner, UvicornRunner
from .spectypes import (
    LINE_BREAKING,
    AbsPath,
    DateFormat,
    DirMode,
    FileName,
    Flag,
    Mode,
    Name,
    RelPath,
    RepoUrl,
    Seconds,
    ServiceUser,
    StopTimeout,
    Text,
    UnitText,
    UserName,
    unit_text,
)
from .spectypes import SpecModel as _Model

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

def _private(value: str) -> str:
    if int(value, 8) & 0o007:
        raise ValueError(f"{value} lets every local user read the secrets (or set LD_PRELOAD for every service); "
                         'give others nothing, e.g. "0640"')
    return value


def _one_line(value: str) -> str:
    if LINE_BREAKING.search(value):
        raise ValueError("must be one line without control characters (newline, tab)")
    return value


class EnvVar(_Model):
    """A variable of the env file; the docs list it, the file itself is never generated."""

    description: Text
    example: Annotated[str, AfterValidator(_one_line)]
    """A value shown in the docs (never a real secret)."""
    required: Flag = False
    secret: Flag = False
    """Secret values are shown as `<secret>` in the docs."""


class Target(_Model):
    """The servers' systemd: a distribution release (its packaged systemd) or an explicit version."""

    distro: Literal[
        "debian-10", "debian-11", "debian-12", "debian-13", "ubuntu-20.04", "ubuntu-22.04", "ubuntu-24.04"
    ] = "debian-12"
    """The distribution release the tree is installed on."""
    systemd: Annotated[int, Strict(), Field(ge=200, le=999)] | None = None
    """The systemd version when it is not the distribution's own (a backport); null: the distro's."""


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
    env_prefix: Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]*_$", max_length=64)] | None = None
    """Prefix of the app's own variables (e.g. `ZACHOT_`): with `source` set, every string of that
    form in the app's code counts as a variable it reads, and lint requires it in `env_vars`
    (besides direct `os.environ`/`os.getenv` reads, which are always checked)."""
    env_file_mode: Annotated[Mode, AfterValidator(_private)] = "0640"
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
    target: Target = Target()
    """Where the tree runs: the preset keeps only directives that systemd knows, and a setting it
    lacks (ExecCondition= needs 243) is an error. Default: Debian 12 (systemd 252)."""
    logs_dir: AbsPath | None = None
    """Folder of the services' log files (tmpfiles.d creates it); needed when a service logs to files."""
    logs_dir_mode: DirMode = "0750"
    """Mode of the logs folder, e.g. "0750", or "2770" for a folder two service users share."""
    logs_dir_owner: UserName | None = None
    """Owner of the logs folder: `root` or a service's user. Default: `user`. logrotate rotates
    as this owner and `logs_dir_group` (its `su` line), since renaming needs the folder."""
    logs_dir_group: UserName | None = None
    """Group of the logs folder (created by sysusers.d unless it is root or adm). Default: `group`."""
    on_failure: OnFailure | None = None
    """What reports a failed unit (OnFailure=, generator/alerts.py). Null: one journal line at
    priority crit, identifier `<name>-alert`."""


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


class Logs(_Model):
    """Where the service's output goes (systemd.exec(5) StandardOutput=, StandardError=).

    `target: files` (the default): stdout to `stdout`, stderr to `stderr` (`append:`), both in
    `project.logs_dir` and rotated by the `policy`; leave `stderr` out for one file holding both
    streams (StandardError=inherit). `target: journal`: both streams to the journal
    (journalctl -u <unit>), kept by journald's own limits, so no policy and no logrotate file.
    """

    target: Literal["files", "journal"] = "files"
    """`files` (append: to files in `project.logs_dir`) or `journal`."""
    policy: Name | None = None
    """Name of a `log_policies` entry (target `files` only)."""
    stdout: FileName | None = None
    """File in `project.logs_dir` that receives stdout (target `files` only)."""
    stderr: FileName | None = None
    """File that receives stderr; absent: the stdout file gets both streams (StandardError=inherit)."""


class Watchdog(_Model):
    """Whether WatchdogSec= is used, and why (not)."""

    enabled: Literal[False]
    """Only `false` is supported: the apps do not send sd_notify heartbeats."""
    reasons: Annotated[list[Text], Field(min_length=1)]
    """Why the watchdog is not used; rendered into the docs."""


class HardeningException(_Model):
    """A relaxation of one preset directive, with the reason it is needed."""

    value: Annotated[str, AfterValidator(unit_text)]
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
    user: ServiceUser | None = None
    """User= of this service (sysusers.d creates it). Default: `project.user`."""
    group: ServiceUser | None = None
    """Group= (its primary group; sysusers.d creates it). Default: `project.group`."""
    supplementary_groups: list[ServiceUser] = []
    """SupplementaryGroups=, e.g. the group of a folder shared with another service's user;
    sysusers.d adds the user to each (`m` lines)."""
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
        Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")], Annotated[str, AfterValidator(unit_text)]
    ] = {}
    """Non-secret Environment= variables; secrets belong in the env file."""
    in_memory_state: list[Text] = []
    """What lives only in this process's memory and is lost on every restart."""
    watchdog: Watchdog | None = None
    hardening: Hardening = Hardening()
    limits: Limits = Limits()
    """LimitNOFILE=, TasksMax=, MemoryMax=, OOMScoreAdjust=; unset ones derived from the runner
    (generator/limits.py)."""
    network_online: Flag = False
    """After= and Wants= network-online.target: the service reaches another host at start (a
    Redis elsewhere). Set by zachot-gen on a host whose dependency runs on another host."""


class ExternalUnit(_Model):
    """A unit the system provides (e.g. Debian's redis-server.service). zachot-gen refers to it, and
    with ``redis`` set configures it: an instance of Debian's ``redis-server@.service`` whose config
    and drop-in the tree writes (generator/redisconf.py)."""

    title: Text
    unit: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}(@[a-z0-9][a-z0-9_-]{0,62})?$")]
    """Unit name without `.service`; an instance of a template unit is `name@instance`
    (e.g. `redis-server@zachot`)."""
    provided_by: Text
    """Where the unit file comes from (a package), in words for the docs."""
    package: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9+.-]+$")] | None = None
    """The Debian package that provides it (e.g. `redis-server`): the install step installs it on
    the hosts that run this unit. Null: nothing to install."""
    restart: Restart
    """Its restart settings as packaged (with ``redis``: as the tree's drop-in sets them), used to
    derive the failure matrix."""
    stop_timeout_sec: StopTimeout | None = None
    """TimeoutStopSec= as packaged (seconds), or `infinity` when systemd never sends the final
    SIGKILL (systemd.service(5); the packaged `TimeoutStopSec=0` means the same); with ``redis``,
    what the drop-in sets, which must be finite. Quoted in prose as ``${<name>.stop_timeout}``."""
    persistence: Text | None = None
    """What survives a restart of it, in words (e.g. Redis RDB/AOF settings as packaged). Derived,
    and so not written, when ``redis`` is set."""
    redis: RedisSettings | None = None
    """Set: the tree configures this Redis (config file and drop-in; generator/redisconf.py), and the
    failure matrix's data-loss column for it is derived from these settings."""


class LogPolicy(_Model):
    """Log file ownership and rotation, logrotate.conf(5) directive by directive."""

    owner: UserName
    group: UserName
    mode: Mode
    """Mode of the live and rotated log files."""
    frequency: Literal["daily", "weekly", "monthly"]
    rotate: Annotated[int, Field(ge=1, le=3650)]
    """`rotate`: rotated files kept (a count of rotations, not of days)."""
    maxage: Annotated[int, Field(ge=1, le=3650)] | None = None
    """`maxage`: rotated files older than this many days are removed. logrotate.conf(5): the age
    is only checked when the log is rotated, so with `notifempty` a log that stays empty keeps
    its archives; null: no age limit."""
    compress: Flag
    """`compress` (gzip)."""
    delaycompress: Flag
    """`delaycompress`: the newest rotated file stays uncompressed one more cycle."""
    dateext: Flag
    dateformat: DateFormat = "-%Y%m%d"
    """`dateformat`: begins with - or .; only %Y %m %d %H %M %S %V %s, in an order that sorts by
    date (logrotate.conf(5))."""
    copytruncate: Flag
    """`copytruncate`: copy then truncate in place, so the writer keeps its file descriptor."""
    missingok: Flag = True
    notifempty: Flag = True

    @property
    def one_per_day(self) -> bool:
        """Whether ``dateext`` names two rotations of one day alike (``dateformat`` without ``%s`` or
        ``%S``): a second ``logrotate -f`` that day then fails ("destination ... already exists")."""
        return self.dateext and "%s" not in self.dateformat and "%S" not in self.dateformat


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
    wait_sec: Annotated[int, Field(ge=0, le=600)] = 0
    """For `exec_condition`: how long a start waits for the check to pass, seconds (0: one try).
    The unit runs the script with ``--wait <wait_sec>``: the script retries while its answer is
    "skip" (e.g. a Redis on a host still booting) and gives that answer after ``wait_sec``;
    TimeoutStartSec= is raised to cover it (systemd.service(5): the start timeout spans
    ExecCondition=)."""
    not_checked: list[NotChecked] = []
    hardening: Hardening = Hardening()
    """Sandboxing of the timer's oneshot unit (role `monitor` with every_sec)."""


class Spec(_Model):
    """The whole deployment: every spec/*.yaml file's top-level sections merged."""

    project: Project
    services: Annotated[dict[Name, Service], Field(min_length=1)]
    external_units: dict[Name, ExternalUnit] = {}
    log_policies: dict[Name, LogPolicy] = {}
    healthchecks: dict[Name, Healthcheck] = {}
    hosts: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,62}$")], Host] = {}
    """The servers (usually per environment, in env/<name>.yaml); empty: one server runs everything.
    Each host gets its own tree, build/<env>/<host>/ (generator/hosts.py)."""
    failure_matrix: FailureMatrix | None = None
    """What people know about each failure; absent: the docs carry the rows systemd's behaviour
    gives for each unit, marked as not yet described."""
    backup: Backup | None = None
    """The backup plan; absent: the docs list what the tree says must be kept, marked as not yet described."""
