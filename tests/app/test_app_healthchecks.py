"""Both healthchecks, run by path as subprocesses (as systemd runs them)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from apptest_support import (
    PYTHON,
    REPO_ROOT,
    ManagedProcess,
    RedisServer,
    SilentServer,
    clean_env,
    free_port,
    wait_until,
)

from app.healthchecks import redis_check, worker_healthcheck

pytestmark = pytest.mark.slow  # real redis-server / worker / uvicorn processes

WORKER_HC = REPO_ROOT / "app" / "healthchecks" / "worker_healthcheck.py"
REDIS_CHECK = REPO_ROOT / "app" / "healthchecks" / "redis_check.py"


def run(script: Path, env: dict[str, str], *args: str, python_flags: tuple[str, ...] = (),
        cwd: Path = Path("/")) -> tuple[int, list[str], float]:
    """Run ``script`` by path from ``cwd``; return (exit code, stdout lines, elapsed seconds)."""
    t0 = time.monotonic()
    p = subprocess.run([PYTHON, *python_flags, str(script), *args], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout.splitlines(), time.monotonic() - t0


TIMED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ")


def untimed(lines: list[str]) -> list[str]:
    """The precheck's lines without their leading time, which every line must have."""
    assert lines and all(TIMED.match(x) for x in lines), lines
    return [TIMED.sub("", x) for x in lines]


def line(lines: list[str], name: str) -> str:
    return next(x for x in lines if x.split(":", 1)[0].split()[-1] == name)


def test_worker_healthcheck_ok_with_redis_and_worker(redis_server: RedisServer,
                                                     start_worker: Callable[..., ManagedProcess]) -> None:
    worker = start_worker(via_script=True)  # the systemd command line: <venv>/bin/dramatiq app.actors ...
    code, lines, _ = run(WORKER_HC, clean_env(ZACHOT_REDIS_URL=redis_server.url,
                                              ZACHOT_BROKER_HEARTBEAT_TIMEOUT_MS="3000"))
    assert code == worker_healthcheck.EXIT_OK, lines
    assert len(lines) == 5 and lines[-1] == "overall: OK (exit 0)"
    assert all(x.startswith("OK   ") for x in lines[:4]), lines
    assert str(worker.pid) in line(lines, "dramatiq_processes")
    assert "live worker heartbeats=1" in line(lines, "queue_default")
    assert "pending=0" in line(lines, "queue_default")


def test_worker_healthcheck_degraded_without_worker(redis_server: RedisServer) -> None:
    r = redis_server.client()
    r.rpush("dramatiq:default", "m1")  # a waiting message (as dramatiq stores it) and nobody to take it
    r.hset("dramatiq:default.msgs", "m1", "{}")
    code, lines, _ = run(WORKER_HC, clean_env(ZACHOT_REDIS_URL=redis_server.url))
    assert code == worker_healthcheck.EXIT_DEGRADED, lines
    assert line(lines, "redis").startswith("OK")
    q = line(lines, "queue_default")
    assert q.startswith("FAIL") and "pending=1" in q and "no live worker heartbeat" in q
    assert lines[-1].startswith("overall: DEGRADED (exit 1)")


def test_worker_healthcheck_down_without_redis(redis_server: RedisServer,
                                               start_worker: Callable[..., ManagedProcess]) -> None:
    start_worker()
    redis_server.stop()
    code, lines, _ = run(WORKER_HC, clean_env(ZACHOT_REDIS_URL=redis_server.url))
    assert code == worker_healthcheck.EXIT_DOWN, lines
    assert line(lines, "dramatiq_processes").startswith("OK")
    assert line(lines, "redis").startswith("FAIL") and line(lines, "queue_default").startswith("FAIL")
    assert lines[-1].startswith("overall: DOWN (exit 2)")


def test_worker_healthcheck_wrong_key_type_is_down(redis_server: RedisServer) -> None:
    redis_server.client().set("dramatiq:default", "not a list")
    code, lines, _ = run(WORKER_HC, clean_env(ZACHOT_REDIS_URL=redis_server.url))
    assert code == worker_healthcheck.EXIT_DOWN, lines
    assert "dramatiq:default is string, expected list" in line(lines, "queue_default")


def test_worker_healthcheck_hard_deadline(silent_server: SilentServer) -> None:
    code, lines, elapsed = run(WORKER_HC, clean_env(ZACHOT_REDIS_URL=silent_server.url), "--timeout", "1")
    assert code == worker_healthcheck.EXIT_DOWN, lines
    assert any(x.startswith("FAIL deadline:") for x in lines) and lines[-1] == "overall: DOWN (exit 2)"
    assert elapsed < 4


def test_worker_healthcheck_unknown_user(redis_server: RedisServer) -> None:
    code, lines, _ = run(WORKER_HC, clean_env(ZACHOT_REDIS_URL=redis_server.url, ZACHOT_USER="no-such-user-zz"))
    assert code == worker_healthcheck.EXIT_DOWN and "unknown user" in lines[0]


def test_healthchecks_do_not_import_app(redis_server: RedisServer, tmp_path: Path) -> None:
    """A broken ``app`` package on the path must not break either healthcheck."""
    broken = tmp_path / "shadow" / "app"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise RuntimeError('broken app')\n")
    env = clean_env(ZACHOT_REDIS_URL=redis_server.url, PYTHONPATH=str(broken.parent))
    assert run(REDIS_CHECK, env)[0] == redis_check.EXIT_OK
    assert run(WORKER_HC, env)[0] == worker_healthcheck.EXIT_DEGRADED  # no worker, but it ran


def test_redis_check_ok(redis_server: RedisServer) -> None:
    code, lines, _ = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=redis_server.url))
    lines = untimed(lines)
    assert code == redis_check.EXIT_OK == 0
    assert len(lines) == 1 and lines[0].startswith("OK redis:") and "PING" in lines[0]


def test_redis_check_skips_when_redis_down(redis_server: RedisServer) -> None:
    redis_server.kill()
    code, lines, elapsed = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=redis_server.url))
    lines = untimed(lines)
    assert code == redis_check.EXIT_SKIP == 1
    assert len(lines) == 1 and lines[0].startswith("SKIP redis:") and "unreachable" in lines[0]
    assert elapsed < 5


def test_redis_check_waits_for_a_redis_that_comes_up(redis_server: RedisServer) -> None:
    """--wait: a Redis that answers within the wait (its host still booting) lets the start go on."""
    redis_server.kill()
    proc = subprocess.Popen([PYTHON, str(REDIS_CHECK), "--wait", "20"], env=clean_env(ZACHOT_REDIS_URL=redis_server.url),
                            stdout=subprocess.PIPE, text=True)
    time.sleep(3)
    assert proc.poll() is None, "the check gave up before its wait was over"
    redis_server.start()
    out, _ = proc.communicate(timeout=30)
    lines = untimed(out.splitlines())
    assert proc.returncode == redis_check.EXIT_OK, lines
    assert lines[0].startswith("WAIT redis: up to 20 s") and "unreachable" in lines[0], lines
    assert lines[-1].startswith("OK redis:") and re.search(r"after \d+ tries in \d+ s", lines[-1]), lines


def test_redis_check_skips_when_redis_stays_down_for_the_whole_wait(redis_server: RedisServer) -> None:
    redis_server.kill()
    code, lines, elapsed = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=redis_server.url), "--wait", "4")
    lines = untimed(lines)
    assert code == redis_check.EXIT_SKIP, lines
    assert len(lines) == 2 and lines[0].startswith("WAIT redis") and lines[1].startswith("SKIP redis:"), lines
    assert 3 <= elapsed < 4 + redis_check.TOTAL_TIMEOUT_SECONDS + 1


@pytest.mark.parametrize("args", [("--wait",), ("--wait", "soon"), ("--wait", "-1"), ("--wait", "nan"), ("-w", "5")])
def test_redis_check_with_bad_arguments_is_broken_not_skip(redis_server: RedisServer, args: tuple[str, ...]) -> None:
    code, lines, _ = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=redis_server.url), *args)
    assert code == redis_check.EXIT_BROKEN and "usage" in untimed(lines)[0], lines


def test_redis_check_never_waits_when_the_check_itself_is_broken() -> None:
    code, lines, elapsed = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL="bogus://nowhere"), "--wait", "60")
    assert code == redis_check.EXIT_BROKEN and len(lines) == 1, lines
    assert elapsed < 5


def test_redis_check_skips_on_timeout(silent_server: SilentServer) -> None:
    code, lines, elapsed = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=silent_server.url))
    lines = untimed(lines)
    assert code == redis_check.EXIT_SKIP, lines
    assert lines[0].startswith("SKIP redis:") and "Timeout" in lines[0]
    assert elapsed < redis_check.TOTAL_TIMEOUT_SECONDS + 1


def test_redis_check_names_misconf_when_redis_cannot_save(tmp_path: Path) -> None:
    """A Redis whose snapshot fails refuses writes and PING with MISCONF: the precheck says so
    (skip, the real cause), not "check password/db" (issue 15)."""
    import shutil

    import redis as redis_py

    port = free_port()
    # /proc takes no new files, even for root: every BGSAVE fails as on a full disk
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                             "127.0.0.1", "--save", "3600 1", "--dir", "/proc", "--logfile", str(tmp_path / "r.log")])
    try:
        client = redis_py.Redis(port=port, socket_timeout=2)
        wait_until(client.ping, 10, "redis-server to answer PING")
        client.bgsave()
        wait_until(lambda: client.info("persistence")["rdb_last_bgsave_status"] == "err", 10, "BGSAVE to fail")
        code, lines, _ = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=f"redis://127.0.0.1:{port}/0"))
        lines = untimed(lines)
        assert code == redis_check.EXIT_SKIP, lines
        assert "MISCONF" in lines[0] and "vm.overcommit_memory" in lines[0] and "password" not in lines[0]
    finally:
        proc.kill()
        proc.wait(10)


def test_redis_check_broken_on_bad_url() -> None:
    for url in ("http://127.0.0.1:6379/0", "redis://127.0.0.1:notaport/0"):
        code, lines, _ = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=url))
        lines = untimed(lines)
        assert code == redis_check.EXIT_BROKEN == 255, (url, lines)
        assert len(lines) == 1 and lines[0].startswith("BROKEN"), lines


def test_redis_check_broken_on_wrong_password(redis_server: RedisServer) -> None:
    url = redis_server.url.replace("redis://", "redis://:secret@")
    code, lines, _ = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=url))
    lines = untimed(lines)
    assert code == redis_check.EXIT_BROKEN, lines
    assert "secret" not in lines[0] and ":***@" in lines[0]


def test_redis_check_broken_without_redis_module(redis_server: RedisServer) -> None:
    # -S: no site-packages, so `import redis` fails inside the check
    code, lines, _ = run(REDIS_CHECK, clean_env(ZACHOT_REDIS_URL=redis_server.url), python_flags=("-S",))
    lines = untimed(lines)
    assert code == redis_check.EXIT_BROKEN, lines
    assert "cannot import the redis module" in lines[0]


def test_redis_check_overall_deadline_counts_as_skip(silent_server: SilentServer,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The SIGALRM backstop: a check that outlives TOTAL_TIMEOUT_SECONDS reports SKIP (1), not a hang."""
    monkeypatch.setenv("ZACHOT_REDIS_URL", silent_server.url)
    monkeypatch.setattr(redis_check, "TOTAL_TIMEOUT_SECONDS", 0.3)  # below the 2 s socket timeouts
    t0 = time.monotonic()
    assert redis_check.main([]) == redis_check.EXIT_SKIP
    assert time.monotonic() - t0 < 1.5
