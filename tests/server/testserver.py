"""A throwaway Debian 12 server, booted with systemd-nspawn, that the server tests deploy zachot on.

Layers (all under :data:`CACHE_DIR`, each keyed by a hash of what it is made from):

* ``base-<key>/root``: ``debootstrap --variant=minbase --include=<PACKAGES> bookworm`` -- the
  Debian packages a server has before zachot (systemd as PID 1, dbus, redis-server, logrotate,
  python3-venv, sudo). Built once (~1 min), then reused.
* ``venv-<key>/layer``: ``/opt/zachot/envs/prod`` made by the runbook's own venv command
  (parsed from build/docs/README.md, run inside the base root with the host's network, since the
  booted server has none). Keyed by the base, that command, pyproject.toml and the Python packages.

A session stacks both read-only under an overlayfs upper dir in :data:`WORK_DIR`, adds what the
runbook adds by hand (the checkout at ``/opt/zachot/repo``, the env file), boots it with
``systemd-nspawn -b --private-network --register=no --keep-unit`` and runs the runbook's install
block *inside* the booted server. The host has no system bus, so ``machinectl`` cannot reach the
container: commands enter it with ``nsenter -t <container PID 1> -a``; HTTP and Redis go through
:mod:`forward` (Unix sockets on the host, TCP inside the container's network namespace).

Nothing here writes into the repository.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import csv
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis

REPO = Path(__file__).resolve().parents[2]
STAGING = "build/staging"
"""The repo spec's one-server environment: the tree the server tests install and drill (its runbook
names build/staging/root/...); spec/env/staging.yaml."""
HERE = Path(__file__).resolve().parent
CACHE_DIR = Path(os.environ.get("ZACHOT_SERVER_CACHE", "/var/cache/zachot-test-server"))
WORK_DIR = Path(os.environ.get("ZACHOT_SERVER_WORKDIR", "/var/tmp"))
SUITE = "bookworm"
MIRROR = os.environ.get("ZACHOT_SERVER_MIRROR", "http://deb.debian.org/debian")
#: What a plain Debian 12 server running zachot has from Debian (besides minbase).
PACKAGES = sorted([
    "systemd", "systemd-sysv", "dbus",  # systemd 252 as PID 1, with a system bus inside
    "redis-server",                     # the external unit the spec describes (redis-server.service)
    "logrotate",                        # Debian's logrotate.service/.timer rotate the generated files
    "python3-venv",                     # the runbook's `python3 -m venv`
    "sudo",                             # the runbook's commands run verbatim, `sudo` included
    "procps", "curl",                   # ps/pgrep/kill and the doc's `curl -m 5 .../healthz`
])
#: Bump when the recipe of the base root changes in a way the package list does not show.
BASE_RECIPE = "2"
HOSTNAME = "zachot-test"
PATH_INSIDE = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CA_BUNDLE_INSIDE = "/var/tmp/zachot-build-ca.crt"


class ServerError(RuntimeError):
    """The test server could not be built, booted or reached."""


def log(msg: str) -> None:
    """Progress line on stderr (shown with ``pytest -s``, and in the captured log on failure)."""
    print(f"[server {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _run_host(cmd: list[str], *, timeout: float, log_file: Path | None = None, **kw: Any) -> None:
    """Run a host command; on failure raise ServerError with the tail of its output."""
    out = open(log_file, "ab") if log_file else subprocess.PIPE  # noqa: SIM115
    try:
        p = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False, **kw)
    finally:
        if log_file:
            out.close()  # type: ignore[union-attr]
    if p.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:] if log_file else (p.stdout or b"").decode()[-3000:]
        raise ServerError(f"{shlex.join(cmd)} exited {p.returncode}:\n{tail}")


# --------------------------------------------------------------------------------------------
# What the docs say: the install runbook and the manifest
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Runbook:
    """The install section of build/docs/README.md, as commands."""

    heading: str
    clone_command: str
    """The inline `git clone ...` (the tests copy the checkout instead: no network to the forge)."""
    venv_command: str
    """The inline `python3 -m venv ... && .../pip install ...`, run verbatim in the base root."""
    block: list[str]
    """The lines of the ```bash block, run verbatim inside the booted server."""
    apt_packages: list[str] = field(default_factory=list)
    """Packages of the inline `apt-get install ...`, if the section has one (put into the base root)."""
    required_env: list[tuple[str, str]] = field(default_factory=list)
    """(name, example) of the env-file table rows marked required."""


_REQUIRED_WORDS = {"да", "yes", "required"}


def parse_runbook(readme: str) -> Runbook:
    """Find the section with the ```bash block that ends in `systemctl enable` and split it up.

    Raises:
        ServerError: no such section, or its paragraph lacks the clone/venv commands.
    """
    sections = re.split(r"^(?=## )", readme, flags=re.M)
    for sec in sections:
        m = re.search(r"```bash\n(.*?)```", sec, flags=re.S)
        if not m or "systemctl enable" not in m.group(1):
            continue
        prose = sec[: m.start()]
        spans = re.findall(r"`([^`\n]+)`", prose)
        clone = next((s for s in spans if s.startswith("git clone")), None)
        venv = next((s for s in spans if " -m venv " in s), None)
        if clone is None or venv is None:
            raise ServerError(f"runbook section {sec.splitlines()[0]!r}: no `git clone` / `python3 -m venv` command")
        apt = next((s for s in spans if re.match(r"(sudo )?apt(-get)? install ", s)), "")
        packages = [w for w in apt.split()[apt.split().index("install") + 1:] if not w.startswith("-")] if apt else []
        required = []
        for row in re.findall(r"^\|(.+)\|\s*$", prose, flags=re.M):
            cells = [c.strip() for c in row.split("|")]
            if len(cells) >= 3 and cells[0].startswith("`") and cells[1].lower() in _REQUIRED_WORDS:
                name = cells[0].strip("`")
                example = re.findall(r"`([^`]*)`", cells[-1])
                required.append((name, example[0] if example else ""))
        lines = [ln.strip() for ln in m.group(1).splitlines() if ln.strip() and not ln.strip().startswith("#")]
        return Runbook(sec.splitlines()[0].lstrip("# ").strip(), clone, venv, lines, packages, required)
    raise ServerError("build/docs/README.md has no install section (```bash block with `systemctl enable`)")


def read_manifest(path: Path) -> list[dict[str, str]]:
    """build/manifest.tsv as a list of rows (build_path, server_path, owner, group, mode).

    The first line, ``# zachot-gen tree; sha256 of the rows below: ...``, is a comment
    (zachot-gen's mark on the tree) and is skipped, as is any other leading ``#`` line.
    """
    with path.open(newline="") as f:
        lines = f.readlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return list(csv.DictReader(lines, delimiter="\t"))


def checkout_files() -> list[str]:
    """The files of this checkout a clone would have, plus uncommitted ones (read-only git)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode()
    return sorted(f for f in out.split("\0") if f and (REPO / f).is_file())


def copy_checkout(dest: Path) -> None:
    """Copy the checkout's files (modes kept, owner root) to ``dest``."""
    for rel in checkout_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target, follow_symlinks=False)


# --------------------------------------------------------------------------------------------
# Cache: base root and venv layer
# --------------------------------------------------------------------------------------------

def _digest(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\0")
    return h.hexdigest()[:16]


@contextlib.contextmanager
def _cache_lock() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prune(prefix: str, keep: Path, max_age_days: float = 7) -> None:
    """Remove cache entries of one kind not used for ``max_age_days`` (never ``keep``)."""
    for d in CACHE_DIR.glob(f"{prefix}-*"):
        if d != keep and d.is_dir() and time.time() - d.stat().st_mtime > max_age_days * 86400:
            shutil.rmtree(d, ignore_errors=True)


def base_packages(extra: list[str]) -> list[str]:
    return sorted(set(PACKAGES) | set(extra))


def base_key(packages: list[str], suite: str = SUITE) -> str:
    return _digest(BASE_RECIPE, suite, "minbase", *packages)


def ensure_base(timings: dict[str, float], extra_packages: list[str] = (),  # type: ignore[assignment]
                suite: str = SUITE, packages: list[str] | None = None) -> tuple[Path, str]:
    """The cached Debian root (built with debootstrap if missing); returns (root dir, key).

    ``extra_packages`` (the runbook's own `apt-get install` list) are installed too; ``suite``
    and ``packages`` (instead of :data:`PACKAGES`) make another release's root (bullseye).
    """
    packages = sorted(packages) if packages is not None else base_packages(list(extra_packages))
    key = base_key(packages, suite)
    entry = CACHE_DIR / f"base-{key}"
    with _cache_lock():
        if not (entry / ".complete").exists():
            t0 = time.monotonic()
            tmp = CACHE_DIR / f".base-{key}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            log(f"debootstrap {suite} into {tmp} (cold cache; ~1-2 min)")
            _run_host(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite,
                       str(tmp / "root"), MIRROR], timeout=1200, log_file=tmp / "debootstrap.log")
            root = tmp / "root"
            (root / "etc/hostname").write_text(HOSTNAME + "\n")
            hosts = (root / "etc/hosts").read_text() if (root / "etc/hosts").exists() else ""
            (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost\n"
                                            + "".join(ln + "\n" for ln in hosts.splitlines()
                                                      if ln and "localhost" not in ln and HOSTNAME not in ln))
            for deb in (root / "var/cache/apt/archives").glob("*.deb"):
                deb.unlink()
            (tmp / ".complete").write_text(json.dumps({"packages": packages, "suite": suite, "mirror": MIRROR}))
            shutil.rmtree(entry, ignore_errors=True)
            tmp.rename(entry)
            timings["debootstrap"] = time.monotonic() - t0
            log(f"base root ready in {timings['debootstrap']:.0f} s")
        os.utime(entry)
        _prune("base", entry)
    return entry / "root", key


def _venv_inputs() -> list[str]:
    return [f for f in checkout_files()
            if f in ("pyproject.toml", "setup.py", "setup.cfg") or f.startswith(("app/", "generator/"))]


def _host_ca_bundle() -> Path | None:
    for name in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        v = os.environ.get(name)
        if v and Path(v).is_file():
            return Path(v)
    p = Path("/etc/ssl/certs/ca-certificates.crt")
    return p if p.is_file() else None


def mount_overlay(lowers: list[Path], scratch: Path) -> Path:
    """Mount ``lowers`` (first = top) under a writable upper in ``scratch``; returns the merged dir.

    Falls back to copying the layers when overlayfs cannot be mounted (e.g. nested overlays).
    """
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    p = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        log(f"overlayfs failed ({p.stderr.strip()}); copying the layers instead")
        for layer in reversed(lowers):
            _run_host(["cp", "-a", f"{layer}/.", str(merged)], timeout=600)
    return merged


def unmount_and_remove(scratch: Path) -> None:
    merged = scratch / "merged"
    if merged.exists() and os.path.ismount(merged):
        r = subprocess.run(["umount", str(merged)], capture_output=True, check=False)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)
    shutil.rmtree(scratch, ignore_errors=True)


NSPAWN_COMMON = ["--register=no", "--keep-unit", "--link-journal=no", "--timezone=off"]


def ensure_venv(base_root: Path, bkey: str, runbook: Runbook, timings: dict[str, float]) -> Path:
    """The cached venv layer made by the runbook's venv command; returns the layer dir."""
    files = _venv_inputs()
    key = _digest(bkey, runbook.venv_command, *files, *((REPO / f).read_bytes() for f in files))
    entry = CACHE_DIR / f"venv-{key}"
    with _cache_lock():
        if not (entry / ".complete").exists():
            t0 = time.monotonic()
            tmp = CACHE_DIR / f".venv-{key}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            scratch = Path(tempfile.mkdtemp(prefix="zachot-venv-build-", dir=WORK_DIR))
            (scratch / OWNER_FILE).write_text(str(os.getpid()))
            try:
                merged = mount_overlay([base_root], scratch)
                copy_checkout(merged / "opt/zachot/repo")
                setenv = ["--setenv=PIP_DISABLE_PIP_VERSION_CHECK=1", "--setenv=PIP_NO_CACHE_DIR=1"]
                ca = _host_ca_bundle()
                if ca:  # a TLS-intercepting proxy between the host and PyPI: trust what the host trusts
                    shutil.copy(ca, merged / CA_BUNDLE_INSIDE.lstrip("/"))
                    setenv.append(f"--setenv=PIP_CERT={CA_BUNDLE_INSIDE}")
                for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_TRUSTED_HOST", "PIP_DEFAULT_TIMEOUT"):
                    v = os.environ.get(name, "")
                    if v and "file:" not in v:
                        setenv.append(f"--setenv={name}={v}")
                log(f"runbook venv command in the base root: {runbook.venv_command}")
                _run_host(["systemd-nspawn", "-q", *NSPAWN_COMMON, "-D", str(merged), "--pipe",
                           f"--machine=zachot-venv-{os.getpid()}", *setenv,
                           "/bin/sh", "-ec", runbook.venv_command],
                          timeout=900, log_file=scratch / "venv.log", stdin=subprocess.DEVNULL)
                venv = merged / "opt/zachot/envs/prod"
                if not (venv / "bin/python").exists():
                    raise ServerError(f"the runbook's venv command made no {venv}/bin/python")
                (tmp / "layer/opt/zachot/envs").mkdir(parents=True)
                _run_host(["cp", "-a", str(venv), str(tmp / "layer/opt/zachot/envs/prod")], timeout=300)
            finally:
                unmount_and_remove(scratch)
            (tmp / ".complete").write_text(json.dumps({"command": runbook.venv_command, "inputs": files}))
            shutil.rmtree(entry, ignore_errors=True)
            tmp.rename(entry)
            timings["venv"] = time.monotonic() - t0
            log(f"venv layer ready in {timings['venv']:.0f} s")
        os.utime(entry)
        _prune("venv", entry)
    return entry / "layer"


# --------------------------------------------------------------------------------------------
# The booted server
# --------------------------------------------------------------------------------------------

_LIVE: set[Server] = set()
OWNER_FILE = "owner.pid"


def reap_stale() -> None:
    """Kill containers and remove roots left by an earlier run that died (its owner PID is gone)."""
    for d in [*WORK_DIR.glob("zachot-server-*"), *WORK_DIR.glob("zachot-venv-build-*")]:
        try:
            owner = int((d / OWNER_FILE).read_text())
        except (OSError, ValueError):
            owner = 0
        if owner and _alive(owner):
            continue
        for pid_s in os.listdir("/proc"):
            if not pid_s.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmd = open(f"/proc/{pid_s}/cmdline", "rb").read().split(b"\0")
                if cmd[0].endswith(b"systemd-nspawn") and str(d).encode() in b" ".join(cmd):
                    log(f"reaping a stale container of {d} (nspawn PID {pid_s})")
                    for c in _children(int(pid_s)):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(c, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid_s), signal.SIGKILL)
        time.sleep(0.2)
        unmount_and_remove(d)


@atexit.register
def _kill_leftovers() -> None:
    for s in list(_LIVE):
        with contextlib.suppress(Exception):
            s.destroy(graceful=False)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(x) for x in f.read().split()]
    return out


def _nspid(pid: int) -> list[int]:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    return []


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@dataclass
class Server:
    """One session's server: an overlay root, booted and rebooted with systemd-nspawn."""

    root: Path
    scratch: Path
    api_port: int = 8000
    redis_port: int = 6379
    machine: str = field(default_factory=lambda: f"zachot-test-{os.getpid()}")
    network: list[str] = field(default_factory=lambda: ["--private-network"])
    """systemd-nspawn's network options (a fleet machine: ``--network-bridge=<bridge>``)."""
    launcher: list[str] = field(default_factory=list)
    """A command prefix nspawn runs under (a fleet: ``nsenter --net=<its namespace> --``; not `ip netns exec`, which remounts /sys without the cgroup mounts)."""
    cgroups: list[Path] = field(default_factory=list)
    """cgroup folders nspawn is started in (one per hierarchy), so that machines do not share one."""
    proc: subprocess.Popen[bytes] | None = None
    leader: int | None = None
    boots: int = 0
    _fwd: subprocess.Popen[str] | None = None
    _http: httpx.Client | None = None

    def __hash__(self) -> int:
        return id(self)

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def console_log(self) -> Path:
        return self.scratch / "console.log"

    def boot(self, timeout: float = 120) -> float:
        """Start systemd-nspawn -b and wait for `systemctl is-system-running` running/degraded.

        Returns the seconds from starting nspawn to a running system.
        """
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError("already booted")
        t0 = time.monotonic()
        self.boots += 1
        with open(self.console_log, "ab") as out:
            out.write(f"\n===== boot {self.boots} =====\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                [*self.launcher, "systemd-nspawn", "-b", "-D", str(self.root), f"--machine={self.machine}",
                 *self.network, *NSPAWN_COMMON, "--console=read-only"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=self._enter_cgroups if self.cgroups else None)
        _LIVE.add(self)
        deadline = t0 + timeout
        self.leader = None
        while self.leader is None:
            if self.proc.poll() is not None:
                raise ServerError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.console_tail()}")
            for c in _children(self.proc.pid):
                if _nspid(c)[-1:] == [1]:
                    self.leader = c
            if time.monotonic() > deadline:
                raise ServerError("container PID 1 did not appear")
            time.sleep(0.05)
        state = ""
        while time.monotonic() < deadline:
            r = self.run(["systemctl", "is-system-running"], check=False, timeout=10)
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                break
            if self.proc.poll() is not None:
                raise ServerError(f"systemd-nspawn exited {self.proc.returncode}:\n{self.console_tail()}")
            time.sleep(0.2)
        else:
            raise ServerError(f"system not running after {timeout} s (state {state!r}):\n"
                              + self.run(["systemctl", "--failed", "--no-legend"], check=False).stdout
                              + self.console_tail())
        if state == "degraded":
            log("booted degraded; failed units:\n" + self.run(["systemctl", "--failed", "--no-legend"]).stdout)
        self._start_forwarder()
        took = time.monotonic() - t0
        log(f"boot {self.boots}: {state} in {took:.1f} s (container PID 1 = host PID {self.leader})")
        return took

    def _enter_cgroups(self) -> None:
        """In the forked child, before exec: move into :attr:`cgroups` (cgroup.procs of each)."""
        for cg in self.cgroups:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    def console_tail(self, n: int = 4000) -> str:
        try:
            return self.console_log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def wait_exit(self, timeout: float) -> int | None:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def reboot(self, timeout: float = 120) -> tuple[int | None, float, float]:
        """`systemctl reboot` inside, wait for nspawn to exit (133), boot the same root again.

        Returns (nspawn exit code, seconds to shut down, seconds to boot).
        """
        assert self.proc is not None
        t0 = time.monotonic()
        self._stop_forwarder()
        self.run(["systemctl", "reboot"], check=False, timeout=30)
        rc = self.wait_exit(timeout)
        if rc is None:
            raise ServerError("the container did not shut down for the reboot")
        down = time.monotonic() - t0
        _LIVE.discard(self)
        return rc, down, self.boot(timeout)

    def destroy(self, graceful: bool = True, timeout: float = 30) -> None:
        """Power the container off (SIGTERM to nspawn), SIGKILL whatever is left, drop the root."""
        self._stop_forwarder()
        if self.proc is not None:
            if self.proc.poll() is None and graceful:
                self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
                self.wait_exit(timeout)
            if self.proc.poll() is None:
                if _alive(self.leader) and self.leader is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(self.leader, signal.SIGKILL)  # PID 1 of the namespace: takes all with it
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.wait_exit(10)
        _LIVE.discard(self)
        unmount_and_remove(self.scratch)

    # -- commands inside --------------------------------------------------------------------

    def run(self, cmd: list[str] | str, *, check: bool = True, timeout: float = 60,
            input: str | None = None, cwd: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` (argv, or a bash script) inside the server as root with a clean env (+ ``env``)."""
        if not _alive(self.leader):
            raise ServerError("the server is not running")
        argv = ["bash", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        if cwd:
            argv = ["bash", "-c", f"cd {shlex.quote(cwd)} && exec \"$@\"", "-", *argv]
        full = ["nsenter", "-t", str(self.leader), "-a", "env", "-i", f"PATH={PATH_INSIDE}", "LANG=C.UTF-8",
                "HOME=/root", "TERM=dumb", "SYSTEMD_COLORS=0", "SYSTEMD_PAGER=cat", "SYSTEMD_LESS=",
                *(f"{k}={v}" for k, v in (env or {}).items()), *argv]
        try:
            p = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as e:
            raise ServerError(f"timed out after {timeout} s inside the server: {argv}") from e
        if check and p.returncode != 0:
            raise ServerError(f"inside the server: {shlex.join(argv)} exited {p.returncode}\n"
                              f"stdout: {p.stdout[-2000:]}\nstderr: {p.stderr[-2000:]}")
        return p

    def systemctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(["systemctl", "--no-pager", *args], check=check, timeout=timeout)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.systemctl("show", unit, *(f"--property={p}" for p in props)).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def prop(self, unit: str, name: str) -> str:
        return self.show(unit, name).get(name, "")

    def mono(self, unit: str, name: str) -> float | None:
        """A unit's ``*TimestampMonotonic`` in seconds of CLOCK_MONOTONIC (shared with the host)."""
        v = int(self.prop(unit, name) or 0)
        return v / 1e6 if v else None

    def active_state(self, unit: str) -> str:
        return self.systemctl("is-active", unit, check=False).stdout.strip()

    def main_pid(self, unit: str) -> int:
        return int(self.prop(unit, "MainPID") or 0)

    def children_of(self, pid: int) -> list[int]:
        """Child PIDs (container namespace) of ``pid`` in the container."""
        out = self.run(["pgrep", "-P", str(pid)], check=False).stdout
        return [int(x) for x in out.split()]

    def journal_cursor(self) -> str | None:
        out = self.run(["journalctl", "-q", "-n", "0", "--show-cursor"], check=False).stdout
        m = re.search(r"-- cursor: (\S+)", out)
        return m.group(1) if m else None

    def journal(self, cursor: str | None, *units: str) -> list[dict[str, Any]]:
        """Journal entries after ``cursor`` (of ``units``, or all), as JSON objects."""
        cmd = ["journalctl", "-q", "--no-pager", "-o", "json"]
        cmd += [f"--after-cursor={cursor}"] if cursor else []
        out = self.run(cmd, check=False, timeout=30).stdout
        entries = []
        for line in out.splitlines():
            with contextlib.suppress(ValueError):
                e = json.loads(line)
                # filtered here: `journalctl -u` (252, in this container) misses PID 1's "Stopping ..." line
                if not units or {e.get("UNIT"), e.get("_SYSTEMD_UNIT"), e.get("OBJECT_SYSTEMD_UNIT")} & set(units):
                    entries.append(e)
        return entries

    def journal_text(self, cursor: str | None, *units: str) -> str:
        return "\n".join(str(e.get("MESSAGE", "")) for e in self.journal(cursor, *units))

    def file_stat(self, path: str) -> tuple[str, str, str, int]:
        """(owner, group, octal mode, size) of ``path`` inside the server."""
        owner, group, mode, size = self.run(["stat", "-c", "%U %G %a %s", path]).stdout.split()
        return owner, group, mode.zfill(4), int(size)

    def read(self, path: str) -> bytes:
        """The bytes of ``path`` inside the server."""
        return base64.b64decode(self.run(["base64", "-w0", path]).stdout)

    # -- network: HTTP and Redis through the forwarder ----------------------------------------

    @property
    def api_sock(self) -> Path:
        return self.scratch / "api.sock"

    @property
    def redis_sock(self) -> Path:
        return self.scratch / "redis.sock"

    def _start_forwarder(self) -> None:
        self._stop_forwarder()
        assert self.leader is not None
        self._fwd = subprocess.Popen(
            ["nsenter", f"--net=/proc/{self.leader}/ns/net", "--", sys.executable, str(HERE / "forward.py"),
             f"{self.api_sock}=127.0.0.1:{self.api_port}", f"{self.redis_sock}=127.0.0.1:{self.redis_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        assert self._fwd.stdout is not None
        if self._fwd.stdout.readline().strip() != "ready":
            raise ServerError("the socket forwarder did not start")
        self._http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.api_sock)),
                                  base_url=f"http://127.0.0.1:{self.api_port}", timeout=10)

    def _stop_forwarder(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self._fwd is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._fwd.pid, signal.SIGKILL)
            self._fwd.wait(5)
            self._fwd = None

    @property
    def http(self) -> httpx.Client:
        if self._http is None:
            raise ServerError("the server is not running")
        return self._http

    def http_client(self, **kw: Any) -> httpx.Client:
        """A new HTTP client to the server's API (for threads: httpx clients are not shared)."""
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.api_sock)),
                            base_url=f"http://127.0.0.1:{self.api_port}", **({"timeout": 10} | kw))

    def redis(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.redis_sock), socket_timeout=5, socket_connect_timeout=5,
                           decode_responses=True)


def wait_for(pred: Callable[[], Any], timeout: float, what: str | Callable[[], str], interval: float = 0.1) -> Any:
    """Poll ``pred`` until it returns a truthy value (returned); AssertionError after ``timeout`` s.

    ``what`` describes the awaited state; a callable is called at the time-out (current state).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (ServerError, httpx.HTTPError, redis.RedisError, OSError) as e:
            last_exc = e
        if time.monotonic() > deadline:
            desc = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout:g} s waiting for {desc}"
                                 + (f" (last error: {last_exc})" if last_exc else ""))
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# Jobs over HTTP, and an SSE client that reconnects with Last-Event-ID
# --------------------------------------------------------------------------------------------

def submit_job(http: httpx.Client, steps: int, step_seconds: float) -> str:
    r = http.post("/jobs", json={"steps": steps, "step_seconds": step_seconds})
    if r.status_code != 202:
        raise AssertionError(f"POST /jobs -> {r.status_code} {r.text[:300]}")
    return str(r.json()["id"])


def job_status(http: httpx.Client, job_id: str) -> dict[str, Any] | None:
    r = http.get(f"/jobs/{job_id}")
    if r.status_code == 404:
        return None
    r.raise_for_status()
    return dict(r.json())


@dataclass
class SseEvent:
    seq: int
    event: str
    data: dict[str, Any]
    connection: int
    at: float


class SseFollower(threading.Thread):
    """Follows ``/jobs/<id>/events`` like a browser's EventSource: on a closed stream or a
    failed connection it waits the server's ``retry:`` and reconnects with ``Last-Event-ID``,
    until the ``done``/``failed`` event or ``timeout``."""

    def __init__(self, server: Server, job_id: str, timeout: float = 300) -> None:
        super().__init__(daemon=True)
        self.server, self.job_id, self.timeout = server, job_id, timeout
        self.events: list[SseEvent] = []
        self.connections = 0
        self.errors: list[str] = []
        self.finished = threading.Event()
        self.retry_ms = 3000
        self.stop_flag = threading.Event()

    @property
    def last_id(self) -> int:
        return self.events[-1].seq if self.events else 0

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            while time.monotonic() < deadline and not self.stop_flag.is_set():
                if self._connect_once():
                    return
                self.stop_flag.wait(self.retry_ms / 1000)
        finally:
            self.finished.set()

    def _connect_once(self) -> bool:
        headers = {"Accept": "text/event-stream"}
        if self.events:
            headers["Last-Event-ID"] = str(self.last_id)
        try:
            with self.server.http_client(timeout=httpx.Timeout(5, read=30)) as c, \
                    c.stream("GET", f"/jobs/{self.job_id}/events", headers=headers) as r:
                if r.status_code != 200:
                    self.errors.append(f"HTTP {r.status_code}")
                    return False
                self.connections += 1
                fields: dict[str, str] = {}
                for line in r.iter_lines():
                    if self.stop_flag.is_set():
                        return True
                    if line == "":
                        if "data" in fields:
                            ev = SseEvent(int(fields.get("id", "0")), fields.get("event", "message"),
                                          json.loads(fields["data"]), self.connections, time.monotonic())
                            self.events.append(ev)
                            if ev.event in ("done", "failed"):
                                return True
                        fields = {}
                        continue
                    if line.startswith(":"):
                        continue
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "retry":
                        self.retry_ms = int(value)
                    elif name == "data" and "data" in fields:
                        fields["data"] += "\n" + value
                    else:
                        fields[name] = value
        except (httpx.HTTPError, OSError, ValueError) as e:
            self.errors.append(f"{type(e).__name__}: {e}")
        return False

    def check_exactly_once(self, steps: int) -> list[str]:
        """Problems with the received events: each of 1..steps once, then ``done`` at steps+1."""
        seqs = [e.seq for e in self.events]
        problems = []
        if seqs != list(range(1, steps + 2)):
            problems.append(f"event ids {seqs}, want 1..{steps + 1} each once")
        if not self.events or self.events[-1].event != "done":
            problems.append(f"last event {self.events[-1].event if self.events else None!r}, want 'done'")
        return problems
