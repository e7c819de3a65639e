"""Where each artifact is installed on the server and where it lands in build/ (and where the
templates it is rendered from are: :data:`TEMPLATES_DIR`).

The one place that knows file names: the planner uses it to place artifacts, the facts
(`${api.unit_path}` in spec prose) and the docs use it to name them, so a doc cannot
point at a path the tree does not hold.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path, PurePosixPath

__all__ = [
    "TEMPLATES_DIR",
    "ANSIBLE_DIR",
    "ANSIBLE_GROUPS",
    "ANSIBLE_RUNS_PREFIX",
    "DOCS_DIR",
    "MANIFEST",
    "ROOT_DIR",
    "docs_file",
    "env_example",
    "logrotate_path",
    "release_state",
    "SETTLE_SEC",
    "SYSCTL_UNIT",
    "log_config_path",
    "sysctl_path",
    "sysusers_path",
    "tmpfiles_path",
    "unit_path",
]

TEMPLATES_DIR = Path(str(resources.files("generator.templates")))
"""The default templates folder: the package data of ``generator.templates`` (the checkout's
templates/ in an editable install, site-packages/generator/templates in a wheel install; wheels
are installed unpacked, so this is a real folder)."""

ROOT_DIR = "root"
"""build/root/ mirrors the server's filesystem: copy it onto `/` as it is."""
DOCS_DIR = "docs"
"""build/docs/ holds the generated Markdown docs."""
MANIFEST = "manifest.tsv"
"""build/manifest.tsv lists owner, group and mode of every file under build/root/."""
ANSIBLE_DIR = "ansible"
"""build/<env>/ansible/ holds the environment's Ansible inventory and playbook."""
ANSIBLE_GROUPS = ("all", "ungrouped", "data", "services")
"""Groups of the generated inventory (Ansible's own two, then the playbook's plays); with the
``runs_<name>`` groups, names no host may have (a host and a group of one name are ambiguous)."""
ANSIBLE_RUNS_PREFIX = "runs_"


def release_state(project: str) -> str:
    """Folder on a host where the delivery keeps the record of the release it installed there
    (release.json) and that release's manifest.tsv, e.g. ``/var/lib/zachot-gen/zachot``
    (FHS 5.8: /var/lib holds state an application keeps between runs)."""
    return f"/var/lib/zachot-gen/{project}"


def unit_path(unit: str, suffix: str = "service") -> str:
    """Server path of a unit file, e.g. ``/etc/systemd/system/zachot-api.service``.

    Admin-installed units go to /etc/systemd/system (systemd.unit(5), "Unit File Load Path").
    """
    return str(PurePosixPath("/etc/systemd/system") / f"{unit}.{suffix}")


def healthcheck_unit(project: str, healthcheck: str) -> str:
    """Name (no suffix) of the oneshot service and timer running a monitor healthcheck,
    e.g. ``zachot-worker-healthcheck`` for ``worker_healthcheck``."""
    return f"{project}-{healthcheck.replace('_', '-')}"


def logrotate_path(unit: str) -> str:
    """Server path of a service's logrotate file: /etc/logrotate.d/<unit> (logrotate(8), `include`)."""
    return str(PurePosixPath("/etc/logrotate.d") / unit)


def tmpfiles_path(project: str) -> str:
    """Server path of the tmpfiles.d(5) file that creates the log folder and files."""
    return str(PurePosixPath("/etc/tmpfiles.d") / f"{project}.conf")


def sysusers_path(project: str) -> str:
    """Server path of the sysusers.d(5) file that creates the service user and group."""
    return str(PurePosixPath("/etc/sysusers.d") / f"{project}.conf")


SETTLE_SEC = 5
"""Seconds a started unit must stay active with no restart before a delivery or a deploy goes on: a
Type=exec unit is active the moment its program runs, and a broken release (an import error, a bad
env file) crashes within this time (systemd.service(5), Type=exec)."""

SYSCTL_UNIT = "systemd-sysctl.service"
"""The unit that applies every sysctl.d file; restarting it applies a changed one (systemd-sysctl.service(8))."""


def sysctl_path(project: str) -> str:
    """Server path of the sysctl.d(5) file with the kernel settings a Redis of the tree needs. Named
    after the project, it sorts after Debian's ``99-sysctl.conf``, so its values are the ones applied."""
    return str(PurePosixPath("/etc/sysctl.d") / f"{project}-redis.conf")


def log_config_path(unit: str) -> str:
    """Server path of a uvicorn service's logging config (generator/logconfig.py):
    /etc/<unit>/logging.json, a folder of the unit's own (made 0755), so that no other step (e.g. a
    root-only secrets folder under /etc/<project>) decides whether the service may read it."""
    return str(PurePosixPath("/etc") / unit / "logging.json")


def env_example(env_file: str) -> str:
    """Path in build/ of the env file's example, e.g. ``env/zachot.env.example``: outside
    root/, so copying root/ onto a server never overwrites the real env file and its secrets."""
    return f"env/{PurePosixPath(env_file).name}.example"


def docs_file(name: str) -> str:
    """Path of a doc inside build/, e.g. ``docs/failure_matrix.md``."""
    return f"{DOCS_DIR}/{name}"
