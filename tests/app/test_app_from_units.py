"""The command lines of the rendered units (build/) run the app: the units and the app agree.

Each Exec*= line is read from build/staging/root/etc/systemd/system/*.service with the venv and
repo paths pointed at this checkout (and the API's port at a free one); nothing else is
changed. A renamed module, script or option in the app breaks this test.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import redis
from apptest_support import (
    VENV_BIN,
    Api,
    ProcessManager,
    RedisServer,
    app_env,
    clean_env,
    free_port,
    wait_until,
    worker_ids,
)
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
    line = line.replace(" /etc/zachot-api/", f" {UNITS.parents[2]}/etc/zachot-api/")  # the tree's logging config
    return shlex.split(line)


def _whole_flow(procs: ProcessManager, r: redis.Redis, env: dict[str, str]) -> None:
    """The units' command lines with ``env``: the precheck passes, the worker beats, POST /jobs and
    its event stream work, the worker is still alive, and the healthcheck says OK."""
    precheck = subprocess.run(_exec("zachot-worker.service", "ExecCondition"), env=env, cwd=REPO,
                              capture_output=True, text=True, timeout=30)
    assert precheck.returncode == 0, precheck.stdout + precheck.stderr
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
    assert worker.alive(), worker.log()
    health = subprocess.run(_exec("zachot-worker-healthcheck.service", "ExecStart"), env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=30)
    assert health.returncode == 0, health.stdout + health.stderr


def test_rendered_unit_commands_run_the_whole_flow(procs: ProcessManager, redis_server: RedisServer) -> None:
    r = redis_server.client()
    _whole_flow(procs, r, app_env(redis_server.url))
    r.close()


def test_a_unix_socket_url_runs_the_whole_flow(procs: ProcessManager, tmp_path: Path) -> None:
    """``unix://`` is a ZACHOT_REDIS_URL form the docs list: the precheck, the worker's consumers,
    POST /jobs, the event stream and the healthcheck must all work over it (redis-py's unix socket
    connection takes no ``socket_keepalive``)."""
    sock = tmp_path / "redis.sock"
    procs.start("redis-unix", [shutil.which("redis-server") or "redis-server", "--port", "0", "--unixsocket", str(sock),
                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)], clean_env())
    wait_until(sock.exists, 10, "redis-server's unix socket")
    url = f"unix://{sock}?db=0"
    r = redis.Redis.from_url(url, decode_responses=True)
    wait_until(r.ping, 10, "redis-server to answer PING on its socket")
    _whole_flow(procs, r, app_env(url))
    r.close()


TIMED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[[\w.]+\] ")


def test_every_api_log_line_has_a_time_a_level_and_its_logger(tmp_path: Path) -> None:
    """Issue 15: under the unit's `append:` files no journald adds a time. The API run by its unit
    line (with the tree's --log-config) writes access lines to stdout, its own and the app's
    loggers (app.api at WARNING) to stderr, each line timed and named."""
    port = free_port()
    argv = _exec("zachot-api.service", "ExecStart")
    argv[argv.index("--port") + 1] = str(port)
    out, err = tmp_path / "api.log", tmp_path / "api.err"
    env = app_env(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens: Redis errors are logged
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=o, stderr=e)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            wait_until(lambda: c.get("/healthz").status_code == 200, 30, "/healthz")
            assert c.post("/jobs", json={"steps": 1, "step_seconds": 0}).status_code == 503
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    access, own = out.read_text().splitlines(), err.read_text().splitlines()
    assert access and own
    untimed = [ln for ln in access + own if not TIMED.match(ln)]
    assert not untimed, untimed
    assert any(ln.endswith('"POST /jobs HTTP/1.1" 503') and " INFO [uvicorn.access] " in ln for ln in access), access
    assert any(" WARNING [app.api] POST /jobs: Redis error" in ln for ln in own), own
    assert any(" INFO [uvicorn.error] Application startup complete." in ln for ln in own), own
