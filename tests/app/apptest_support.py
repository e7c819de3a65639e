"""Helpers for the app tests: real redis-server, dramatiq worker and uvicorn processes.

The fixtures that use them live in ``conftest.py``.

Every process is started in its own session (process group) and the whole
group is SIGKILLed at teardown, also when the test fails. Logs go to files
under the test's tmp_path; their tails are printed at teardown (pytest shows
them for failing tests).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import redis

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
VENV_BIN = Path(PYTHON).parent
INSTALL_HINT = "redis-server is not on PATH: run scripts/install-system-deps.sh (installs Debian's redis-server)"

#: Broker settings the tests use so dead-worker recovery takes ~3 s, not minutes.
FAST_RECOVERY_ENV = {
    "ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS": "3000",
    "ZACHOT_BROKER_MAINTENANCE_CHANCE": "1000000",
}

T = TypeVar("T")

#: A synchronous redis-py client. Typed as Any because redis-py 7 annotates every
#: sync command as ``Awaitable[T] | T`` (shared with redis.asyncio).
SyncRedis = Any


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(fn: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``fn`` until it returns a truthy value (returned) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # the condition may raise while things start
            last_exc = exc
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what} (last error: {last_exc!r})")
        time.sleep(interval)


def clean_env(**extra: str) -> dict[str, str]:
    """Return os.environ without any ZACHOT_* variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZACHOT_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class ManagedProcess:
    """A subprocess in its own process group with its output in ``log_path``."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """PID of the process (also its process-group id)."""
        return self.popen.pid

    def alive(self) -> bool:
        """True while the process has not exited."""
        return self.popen.poll() is None

    def signal_main(self, sig: int) -> None:
        """Send ``sig`` to the main process only (like systemd's KillMode=mixed)."""
        os.kill(self.pid, sig)

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (like KillMode=control-group)."""
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def wait(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for exit; return the exit code."""
        return self.popen.wait(timeout=timeout)

    def log(self) -> str:
        """Return the process's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class ProcessManager:
    """Starts processes for one test and kills all their process groups at teardown."""

    tmp: Path
    procs: list[ManagedProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> ManagedProcess:
        """Start ``argv`` with ``env`` in the repo root, in a new session."""
        log_path = self.tmp / f"{name}-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            popen = subprocess.Popen(argv, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        proc = ManagedProcess(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def cleanup(self) -> None:
        """SIGKILL every process group still alive and print each log's tail."""
        for p in self.procs:
            p.signal_group(signal.SIGKILL)
            try:
                p.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for p in self.procs:
            tail = "\n".join(p.log().splitlines()[-40:])
            print(f"----- {p.name} (pid {p.pid}, exit {p.popen.returncode}) {p.log_path}\n{tail}")


@dataclass
class RedisServer:
    """A real redis-server on a free port, without persistence."""

    port: int
    workdir: Path
    manager: ProcessManager
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """redis:// URL of this server (db 0)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kw: Any) -> SyncRedis:
        """A new ``redis.Redis`` client (str responses) for this server."""
        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5, **kw)

    def start(self) -> None:
        """Start (or restart on the same port) and wait until it answers PING."""
        self.proc = self.manager.start("redis", [
            shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
        ], clean_env())
        c = self.client(socket_connect_timeout=1)
        wait_until(c.ping, 10, f"redis-server on port {self.port} to answer PING")
        c.close()

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM) and wait for it to exit."""
        if self.proc and self.proc.alive():
            self.proc.signal_main(signal.SIGTERM)
            self.proc.wait(10)

    def kill(self) -> None:
        """Kill the server with SIGKILL and wait for it to exit."""
        if self.proc and self.proc.alive():
            self.proc.signal_main(signal.SIGKILL)
            self.proc.wait(10)


def app_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for app processes: ZACHOT_REDIS_URL, fast dead-worker recovery, ``extra``."""
    return clean_env(ZACHOT_REDIS_URL=redis_url, **FAST_RECOVERY_ENV, **extra)


def worker_ids(r: SyncRedis) -> set[str]:
    """Broker ids of zachot workers present in dramatiq's heartbeat zset."""
    return {m for m in r.zrange("dramatiq:__heartbeats__", 0, -1) if m.startswith("zachot-worker-")}


@dataclass
class Api:
    """A running uvicorn serving app.api:app."""

    proc: ManagedProcess
    base_url: str

    def client(self, timeout: float = 10.0) -> httpx.Client:
        """An httpx client for this API."""
        return httpx.Client(base_url=self.base_url, timeout=timeout)


@dataclass
class SilentServer:
    """A TCP server that accepts connections and never answers (a hung Redis)."""

    sock: socket.socket
    conns: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        """redis:// URL pointing at the silent port."""
        return f"redis://127.0.0.1:{self.sock.getsockname()[1]}/0"


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, str]]:
    """Parse SSE lines into dicts with ``id``/``event``/``data``/``retry`` or ``comment`` keys."""
    current: dict[str, str] = {}
    for line in lines:
        if line == "":
            if current:
                yield current
            current = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            current[name] = current[name] + "\n" + value if name in current else value
    if current:
        yield current
