"""Fixtures for the app tests: real redis-server, dramatiq worker and uvicorn subprocesses.

Helpers and the process classes are in ``apptest_support.py``. Every process
a test starts is SIGKILLed (whole process group) at teardown, pass or fail.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from apptest_support import (
    INSTALL_HINT,
    PYTHON,
    VENV_BIN,
    Api,
    ManagedProcess,
    ProcessManager,
    RedisServer,
    SilentServer,
    app_env,
    free_port,
    wait_until,
    worker_ids,
)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[ProcessManager]:
    """A ProcessManager whose processes are killed at teardown."""
    manager = ProcessManager(tmp_path)
    try:
        yield manager
    finally:
        manager.cleanup()


@pytest.fixture
def redis_server(procs: ProcessManager, tmp_path: Path) -> RedisServer:
    """A started redis-server; ``.stop()``/``.kill()``/``.start()`` control it mid-test."""
    if shutil.which("redis-server") is None:
        pytest.fail(INSTALL_HINT)
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(free_port(), workdir, procs)
    server.start()
    return server


@pytest.fixture
def start_worker(procs: ProcessManager, redis_server: RedisServer) -> Callable[..., ManagedProcess]:
    """Start ``dramatiq app.actors --queues default --processes 1 --threads 2`` and wait until it polls Redis.

    Call as ``start_worker(via_script=False, **env)``; ``via_script=True`` runs
    the venv's ``dramatiq`` script (the systemd command line) instead of
    ``python -m dramatiq``.
    """

    def start(via_script: bool = False, **extra: str) -> ManagedProcess:
        head = [str(VENV_BIN / "dramatiq")] if via_script else [PYTHON, "-m", "dramatiq"]
        r = redis_server.client()
        before = worker_ids(r)
        proc = procs.start("worker", head + ["app.actors", "--queues", "default", "--processes", "1",
                                             "--threads", "2"], app_env(redis_server.url, **extra))
        wait_until(lambda: worker_ids(r) - before or not proc.alive(), 30, "the worker's first heartbeat")
        assert proc.alive(), f"worker exited early:\n{proc.log()}"
        r.close()
        return proc

    return start


@pytest.fixture
def start_api(procs: ProcessManager, redis_server: RedisServer) -> Callable[..., Api]:
    """Start ``uvicorn app.api:app`` on a free port and wait until /healthz answers."""

    def start(**extra: str) -> Api:
        port = free_port()
        proc = procs.start("api", [PYTHON, "-m", "uvicorn", "app.api:app", "--host", "127.0.0.1", "--port",
                                   str(port), "--timeout-graceful-shutdown", "20"],
                           app_env(redis_server.url, **extra))
        api = Api(proc, f"http://127.0.0.1:{port}")
        with api.client(timeout=2) as c:
            wait_until(lambda: c.get("/healthz").status_code == 200 or not proc.alive(), 30, "uvicorn /healthz")
        assert proc.alive(), f"uvicorn exited early:\n{proc.log()}"
        return api

    return start


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    """A listening socket with a backlog: connects succeed, reads time out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = SilentServer(sock)
    try:
        yield server
    finally:
        sock.close()

