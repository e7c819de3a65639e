"""The command lines of the rendered units (build/) run the app: the units and the app agree.

Each Exec*= line is read from build/root/etc/systemd/system/*.service with the venv and
repo paths pointed at this checkout (and the API's port at a free one); nothing else is
changed. A renamed module, script or option in the app breaks this test.
"""

from __future__ import annotations

import configparser
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest
from apptest_support import VENV_BIN, Api, ProcessManager, RedisServer, app_env, free_port, wait_until, worker_ids
from test_app_api import check_sequence, create_job, read_events

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
UNITS = REPO / "build/staging/root/etc/systemd/system"  # the one-server environment


def _exec(unit: str, key: str) -> list[str]:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNITS / unit)
    line = parser.get("Service", key)
    line = line.replace("/opt/zachot/envs/prod/bin/", f"{VENV_BIN}/").replace("/opt/zachot/repo/", f"{REPO}/")
    return shlex.split(line)


def test_rendered_unit_commands_run_the_whole_flow(procs: ProcessManager, redis_server: RedisServer) -> None:
    env = app_env(redis_server.url)
    precheck = subprocess.run(_exec("zachot-worker.service", "ExecCondition"), env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=30)
    assert precheck.returncode == 0, precheck.stdout + precheck.stderr

    r = redis_server.client()
    worker = procs.start("worker", _exec("zachot-worker.service", "ExecStart"), env)
    wait_until(lambda: worker_ids(r) or not worker.alive(), 30, "the worker's first heartbeat")
    assert worker.alive(), worker.log()

    port = free_port()
    argv = _exec("zachot-api.service", "ExecStart")
    argv[argv.index("--port") + 1] = str(port)
    api = Api(procs.start("api", argv, env), f"http://127.0.0.1:{port}")
    with httpx.Client(base_url=api.base_url, timeout=10) as c:
        wait_until(lambda: c.get("/readyz").status_code == 200, 30, "/readyz")
        job = create_job(c, steps=5, step_seconds=0.05)
        check_sequence(read_events(c, f"/jobs/{job}/events"), 1, 5)

    health = subprocess.run(_exec("zachot-worker-healthcheck.service", "ExecStart"), env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stdout + health.stderr
    r.close()
