"""A fleet of booted Debian 12 machines on a private bridge, reached over SSH by ansible-playbook.

What is known to work on these hosts is in ../shared/notes/fleet-on-nspawn.md; this follows it:

* Layers (cached in :data:`testserver.CACHE_DIR`): the server test's Debian root and venv, plus
  ``ssh-<key>/layer``: openssh-server and iproute2 installed into an overlay of the root (built
  once, ~10 s), systemd-networkd and ssh enabled, no host keys (each machine makes its own at
  boot: a drop-in runs ``ssh-keygen -A`` before sshd's own ``sshd -t``).
* Network: a network namespace of its own (``zfleet<pid>``) holding a bridge with the fleet's
  /24 (the environment's own addresses, e.g. production's 10.20.0.0/24) and the controller's
  address on it. Every machine is booted with ``--network-bridge`` inside that namespace and gets
  its spec address from a systemd-networkd file. Nothing in the namespace routes anywhere else:
  the only targets are the machines. ansible-playbook and ssh run inside the namespace too.
* cgroups: each nspawn starts in its own cgroup of every hierarchy (the host's PID 1 is not
  systemd; machines sharing the caller's cgroup would see each other's units).
* Faults: a power cut is SIGKILL to the machine's PID 1; a partition takes its veth down.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import testserver as ts
from testserver import CACHE_DIR, WORK_DIR, Server, log

SSH_RECIPE = "2"
SSH_PACKAGES = ["iproute2", "openssh-server", "python3-apt"]  # python3-apt: ansible.builtin.apt needs it
CGROUP_ROOTS = [Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified")]
BRIDGE = "zfbr0"
"""The bridge's name inside the fleet's own network namespace (so it cannot clash with the host's)."""


def ensure_ssh_layer(base_root: Path, bkey: str, timings: dict[str, float]) -> Path:
    """The cached layer with sshd and iproute2 on top of ``base_root``; returns the layer dir."""
    key = ts._digest("ssh", SSH_RECIPE, bkey, *SSH_PACKAGES)
    entry = CACHE_DIR / f"ssh-{key}"
    with ts._cache_lock():
        if not (entry / ".complete").exists():
            t0 = time.monotonic()
            tmp = CACHE_DIR / f".ssh-{key}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            scratch = Path(tempfile.mkdtemp(prefix="zachot-venv-build-", dir=WORK_DIR))
            (scratch / ts.OWNER_FILE).write_text(str(os.getpid()))
            try:
                merged = ts.mount_overlay([base_root], scratch)
                script = ("export DEBIAN_FRONTEND=noninteractive; apt-get update -q; "
                          f"apt-get install -y -q --no-install-recommends {' '.join(SSH_PACKAGES)}; "
                          "apt-get clean; rm -f /etc/ssh/ssh_host_*; systemctl enable systemd-networkd ssh")
                ts._run_host(["systemd-nspawn", "-q", *ts.NSPAWN_COMMON, "-D", str(merged), "--pipe",
                              f"--machine=zachot-ssh-{os.getpid()}", "/bin/sh", "-ec", script],
                             timeout=900, log_file=scratch / "ssh.log", stdin=subprocess.DEVNULL)
                tmp.mkdir(parents=True)
                ts._run_host(["cp", "-a", str(scratch / "upper"), str(tmp / "layer")], timeout=300)
            finally:
                ts.unmount_and_remove(scratch)
            (tmp / ".complete").write_text(" ".join(SSH_PACKAGES))
            shutil.rmtree(entry, ignore_errors=True)
            tmp.rename(entry)
            timings["ssh layer"] = time.monotonic() - t0
            log(f"ssh layer ready in {timings['ssh layer']:.0f} s")
        os.utime(entry)
        ts._prune("ssh", entry)
    return entry / "layer"


@dataclass
class Machine:
    """One host of the fleet: its spec name and address, and the booted server."""

    name: str
    address: str
    server: Server

    @property
    def veth(self) -> str:
        """The host side of its veth (in the fleet's namespace): systemd-nspawn names it vb-<machine>."""
        return f"vb-{self.name}"[:15]


@dataclass
class Fleet:
    """The booted machines, their namespace, and how to run the controller's commands there."""

    netns: str
    scratch: Path
    machines: dict[str, Machine] = field(default_factory=dict)
    cgroups: list[Path] = field(default_factory=list)

    def controller_env(self) -> dict[str, str]:
        """The operator's side: an ssh config naming the key, user root and known_hosts for the fleet's
        addresses (ssh reads ~/.ssh/config from the passwd home, not $HOME: given with -F through
        ANSIBLE_SSH_EXTRA_ARGS); PATH with the venv's ansible-playbook."""
        home = self.scratch / "home"
        return {"HOME": str(home), "PATH": f"{ts.REPO / '.venv/bin'}:{os.environ.get('PATH', '')}",
                "ANSIBLE_SSH_EXTRA_ARGS": f"-F {home}/.ssh/config", "ANSIBLE_NOCOLOR": "1", "LANG": "C.UTF-8"}

    def sh(self, line: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        """Run one shell line as the operator would, from ``cwd``, inside the fleet's namespace."""
        return subprocess.run(["nsenter", f"--net=/run/netns/{self.netns}", "--", "bash", "-o", "pipefail", "-c", line],
                              cwd=cwd, env=self.controller_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def power_cut(self, name: str) -> None:
        """SIGKILL the machine's PID 1: everything in it dies at once, as on a power loss."""
        srv = self.machines[name].server
        if srv.leader:
            with contextlib.suppress(ProcessLookupError):
                os.kill(srv.leader, signal.SIGKILL)
        srv.wait_exit(30)

    def partition(self, name: str, down: bool = True) -> None:
        """Take the machine's link to the bridge down (``down``) or up again."""
        ts._run_host(["ip", "-n", self.netns, "link", "set", self.machines[name].veth, "down" if down else "up"],
                     timeout=10)


def _netns_pids(netns: str) -> list[int]:
    try:
        want = os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return []
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{pid}/ns/net").st_ino == want:
                out.append(int(pid))
    return out


def reap_stale_fleets() -> None:
    """Delete namespaces and cgroups of fleets whose test process is gone."""
    for name in os.listdir("/run/netns") if os.path.isdir("/run/netns") else []:
        if name.startswith("zfleet") and name[6:].isdigit() and not ts._alive(int(name[6:])):
            for pid in _netns_pids(name):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
    for root in CGROUP_ROOTS:
        for cg in root.glob("zfleet*"):
            if cg.name[6:].split("-")[0].isdigit() and not ts._alive(int(cg.name[6:].split("-")[0])):
                _remove_cgroup(cg)


def _remove_cgroup(cg: Path) -> None:
    for sub in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        cg.rmdir()


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> None:
    f = root / path.lstrip("/")
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(text)
    f.chmod(mode)


@contextlib.contextmanager
def booted_fleet(hosts: dict[str, str], files: dict[str, dict[str, tuple[str, int]]], checkout: dict[str, str],
                 runbook: ts.Runbook, timings: dict[str, float]) -> Iterator[Fleet]:
    """Boot one machine per ``hosts`` entry (name -> address, all in one /24), each with the files
    ``files[name]`` (path -> (text, mode)) and, where ``checkout[name]`` names a folder, the checkout
    copied there; yields the :class:`Fleet` once sshd answers on each; tears everything down after."""
    ts.reap_stale()
    reap_stale_fleets()
    base, bkey = ts.ensure_base(timings, runbook.apt_packages)
    layers = [ensure_ssh_layer(base, bkey, timings), ts.ensure_venv(base, bkey, runbook, timings), base]
    net = ipaddress.ip_network(f"{next(iter(hosts.values()))}/24", strict=False)
    taken = {ipaddress.ip_address(a) for a in hosts.values()}
    controller = next(a for a in net.hosts() if a not in taken)
    fleet = Fleet(f"zfleet{os.getpid()}", Path(tempfile.mkdtemp(prefix="zachot-fleet-", dir=WORK_DIR)))
    t0 = time.monotonic()
    try:
        ts._run_host(["ip", "netns", "add", fleet.netns], timeout=10)
        for cmd in (["link", "set", "lo", "up"], ["link", "add", BRIDGE, "type", "bridge"],
                    ["addr", "add", f"{controller}/{net.prefixlen}", "dev", BRIDGE], ["link", "set", BRIDGE, "up"]):
            ts._run_host(["ip", "-n", fleet.netns, *cmd], timeout=10)
        home = fleet.scratch / "home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        key = home / ".ssh/id_ed25519"
        ts._run_host(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], timeout=30)
        (home / ".ssh/config").write_text(
            f"Host {' '.join(hosts.values())}\n  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
            f"  StrictHostKeyChecking accept-new\n  UserKnownHostsFile {home}/.ssh/known_hosts\n")
        pub = (home / ".ssh/id_ed25519.pub").read_text()
        for name, address in hosts.items():
            scratch = Path(tempfile.mkdtemp(prefix=f"zachot-server-fleet-{name}-", dir=WORK_DIR))
            (scratch / ts.OWNER_FILE).write_text(str(os.getpid()))
            root = ts.mount_overlay(layers, scratch)
            _write(root, "/etc/hostname", f"{name}\n")
            _write(root, "/etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost\n")
            _write(root, "/etc/machine-id", secrets.token_hex(16) + "\n", 0o444)
            _write(root, "/etc/systemd/network/10-host0.network",
                   f"[Match]\nName=host0\n\n[Network]\nAddress={address}/{net.prefixlen}\n"
                   "LinkLocalAddressing=no\nIPv6AcceptRA=no\n")
            # the layer has no host keys: each machine makes its own before sshd's own config test
            _write(root, "/etc/systemd/system/ssh.service.d/host-keys.conf",
                   "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n")
            (root / "root/.ssh").mkdir(parents=True, exist_ok=True, mode=0o700)
            _write(root, "/root/.ssh/authorized_keys", pub, 0o600)
            for path, (text, mode) in files.get(name, {}).items():
                _write(root, path, text, mode)
            if checkout.get(name):
                ts.copy_checkout(root / checkout[name].lstrip("/"))
            cgroups = []
            for cg_root in CGROUP_ROOTS:
                cg = cg_root / f"zfleet{os.getpid()}-{name}"
                cg.mkdir(exist_ok=True)
                cgroups.append(cg)
                fleet.cgroups.append(cg)
            srv = Server(root, scratch, machine=name, network=[f"--network-bridge={BRIDGE}"],
                         launcher=["nsenter", f"--net=/run/netns/{fleet.netns}", "--"], cgroups=cgroups)
            fleet.machines[name] = Machine(name, address, srv)
        errors: list[BaseException] = []

        def boot(m: Machine) -> None:
            try:
                m.server.boot()
                ts.wait_for(lambda: m.server.active_state("ssh.service") == "active"
                            and m.address in m.server.run(["ip", "-4", "-o", "addr", "show", "host0"],
                                                          check=False).stdout, 60, f"sshd and {m.address} on {m.name}")
            except BaseException as exc:  # noqa: BLE001 - reported below, for every machine
                errors.append(exc)

        threads = [threading.Thread(target=boot, args=(m,)) for m in fleet.machines.values()]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]
        timings["fleet boot"] = time.monotonic() - t0
        log(f"fleet of {len(hosts)} booted in {timings['fleet boot']:.1f} s")
        yield fleet
    finally:
        t1 = time.monotonic()
        for m in fleet.machines.values():
            with contextlib.suppress(Exception):
                m.server.destroy(graceful=False)
        for pid in _netns_pids(fleet.netns):  # ssh control masters, anything else left in there
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", fleet.netns], capture_output=True, check=False)
        for cg in fleet.cgroups:
            _remove_cgroup(cg)
        shutil.rmtree(fleet.scratch, ignore_errors=True)
        timings["fleet teardown"] = time.monotonic() - t1
