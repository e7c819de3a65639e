"""A Redis the tree configures (generator/redisconf.py, redisplan.py, redisrules.py): the config a
real redis-server accepts, the drop-in systemd-analyze checks, the rules on remote Redis and the
data-loss column derived from the settings."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from helpers import REPO, SPEC_CASES, line_of

from generator import SpecError, build, build_tree
from generator.realtools import verify_units

FLEET = SPEC_CASES["fleet"]


def _fleet(tmp_path: Path, old: str = "", new: str = "", file: str = "spec.yaml") -> Path:
    """A copy of the fleet case (spec.yaml and env/) with ``old`` replaced once in ``file``."""
    spec = tmp_path / "spec"
    shutil.copytree(FLEET, spec)
    if old:
        text = (spec / file).read_text()
        assert old in text, f"{old!r} not in fleet/{file}: update the test"
        (spec / file).write_text(text.replace(old, new, 1))
    return spec


def _messages(spec: Path) -> list[str]:
    with pytest.raises(SpecError) as exc:
        build_tree(spec)
    return [str(p) for p in exc.value.problems]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_redis(conf: str, tmp_path: Path, auth: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Start the real redis-server on the rendered config, with only the paths of a server moved
    into ``tmp_path`` (dir, pidfile, the credential include) and a free port."""
    port = _free_port()
    text = conf.replace("dir /var/lib/redis", f"dir {tmp_path}").replace("supervised systemd", "supervised no")
    text = text.replace("pidfile /run/", f"pidfile {tmp_path}/")
    if auth is not None:
        secret = tmp_path / "redis-auth.conf"
        secret.write_text(f"requirepass {auth}\n")
        text = "\n".join(f"include {secret}" if ln.startswith("include ") else ln for ln in text.splitlines()) + "\n"
    text = text.replace("bind 10.0.1.31 ", "bind ")  # the private address exists on the server only
    (tmp_path / "redis.conf").write_text(text)
    (tmp_path / "redis-shop").mkdir(exist_ok=True)
    (tmp_path / "redis-zachot").mkdir(exist_ok=True)
    proc = subprocess.Popen(["redis-server", str(tmp_path / "redis.conf"), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return proc, port


def _wait(client: redis.Redis, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(100):
        try:
            client.ping()
            return
        except redis.AuthenticationError:
            return
        except redis.ConnectionError:
            assert proc.poll() is None, "redis-server refused the rendered config"
            time.sleep(0.05)
    raise AssertionError("redis-server did not answer")


def test_the_repo_config_is_what_real_redis_runs(tmp_path: Path) -> None:
    conf = (REPO / "build/staging/root/etc/redis/redis-zachot.conf").read_text()
    assert "\nbind 127.0.0.1\n" in conf and "include" not in conf  # one host: loopback, no password
    proc, port = _run_redis(conf, tmp_path)
    try:
        r = redis.Redis(port=port, decode_responses=True)
        _wait(r, proc)
        got = {k: r.config_get(k)[k] for k in ("appendonly", "appendfsync", "maxmemory", "maxmemory-policy", "save")}
        assert got == {"appendonly": "yes", "appendfsync": "everysec", "maxmemory": str(512 * 1024 * 1024),
                       "maxmemory-policy": "noeviction", "save": "3600 1 300 100 60 10000"}
        assert r.config_get("dbfilename")["dbfilename"] == "dump-zachot.rdb"
    finally:
        proc.kill()
        proc.wait()


def test_a_remote_redis_requires_the_password_from_the_credential(tmp_path: Path) -> None:
    files = build_tree(FLEET).files
    conf = files["production/redis1/root/etc/redis/redis-shop.conf"]
    dropin = files["production/redis1/root/etc/systemd/system/redis-server@shop.service.d/shop.conf"]
    assert "\nbind 10.0.1.31 127.0.0.1\n" in conf
    assert "\ninclude /run/credentials/redis-server@shop.service/redis-auth.conf\n" in conf
    assert "\nLoadCredential=redis-auth.conf:/etc/shop/redis-auth.conf\n" in dropin
    assert "After=network-online.target" in dropin and "TimeoutStopSec=60\n" in dropin
    assert "requirepass" not in conf  # the password lives on the server only
    proc, port = _run_redis(conf, tmp_path, auth="s3cret")
    try:
        anonymous = redis.Redis(port=port)
        _wait(anonymous, proc)
        with pytest.raises(redis.AuthenticationError):
            anonymous.set("k", "v")
        assert redis.Redis(port=port, password="s3cret").set("k", "v")
    finally:
        proc.kill()
        proc.wait()


def test_a_host_running_only_redis_gets_a_tree_with_its_runbook() -> None:
    files = build_tree(FLEET).files
    tree = sorted(p for p in files if p.startswith("production/redis1/"))
    assert tree == [
        "production/redis1/docs/README.md",
        "production/redis1/docs/backup_recovery.md",
        "production/redis1/docs/failure_matrix.md",
        "production/redis1/manifest.tsv",
        "production/redis1/root/etc/redis/redis-shop.conf",
        "production/redis1/root/etc/sysctl.d/shop-redis.conf",
        "production/redis1/root/etc/systemd/system/redis-server@shop.service.d/shop.conf",
        "production/redis1/root/etc/systemd/system/shop-on-failure@.service",
    ]
    readme = files["production/redis1/docs/README.md"]
    assert "sudo systemctl mask --now redis-server.service\n" in readme
    assert "sudo systemctl enable --now redis-server@shop.service\n" in readme
    assert "git clone" not in readme and "systemd-sysusers" not in readme
    # The auth file step, run by a real shell: a root-only file with a 64-hex-digit password.
    step = next(ln for ln in readme.splitlines() if ln.startswith("sudo test -e /etc/shop/redis-auth.conf"))
    assert "Redis" in files["production/api1/docs/README.md"]
    api_units = files["production/api1/root/etc/systemd/system/shop-api.service"]
    assert "redis-server" not in api_units  # Redis is on redis1: nothing to order after on api1
    assert step.count("/etc/shop/redis-auth.conf") == 2


def test_the_auth_step_writes_a_root_only_password(tmp_path: Path) -> None:
    readme = build_tree(FLEET).files["production/redis1/docs/README.md"]
    step = next(ln for ln in readme.splitlines() if ln.startswith("sudo test -e /etc/shop/redis-auth.conf"))
    target = tmp_path / "etc-shop" / "auth.conf"  # its folder does not exist yet, as on a fresh Redis host
    cmd = step.replace("sudo ", "").replace("/etc/shop/redis-auth.conf", str(target)).replace("/etc/shop", str(target.parent))
    subprocess.run(["sh", "-c", cmd], check=True)
    text = target.read_text()
    assert text.startswith("requirepass ") and len(text.split()[1]) == 64 and text.endswith("\n")
    assert target.stat().st_mode & 0o777 == 0o600
    subprocess.run(["sh", "-c", cmd], check=True)  # a second run keeps the password
    assert target.read_text() == text


def test_a_remote_redis_without_auth_is_refused(tmp_path: Path) -> None:
    spec = _fleet(tmp_path, "      auth_file: /etc/shop/redis-auth.conf\n", "")
    msgs = _messages(spec)
    assert any("external_units.redis.redis" in m and "reached from other hosts" in m and "(environment production)" in m
               for m in msgs), msgs
    assert not any("staging" in m for m in msgs), msgs  # one host: loopback only, no password needed


def test_a_remote_redis_the_tree_does_not_configure_is_refused(tmp_path: Path) -> None:
    spec = _fleet(tmp_path)
    text = (spec / "spec.yaml").read_text()
    start = text.index("    unit: redis-server@shop")
    end = text.index("      auth_file: /etc/shop/redis-auth.conf\n") + len("      auth_file: /etc/shop/redis-auth.conf\n")
    text = text[:start] + ("    unit: redis-server\n    package: redis-server\n    provided_by: Debian\n"
                           "    restart: {policy: always, delay_sec: 0.1, start_limit_interval_sec: 10, start_limit_burst: 5}\n"
                           "    persistence: RDB snapshots\n") + text[end:]
    (spec / "spec.yaml").write_text(text.replace("${redis.port}", "6379"))  # a fact of a configured Redis only
    overlay = spec / "env/production.yaml"
    overlay.write_text(overlay.read_text().replace("${redis.port}", "6379"))
    msgs = _messages(spec)
    assert any("binds 127.0.0.1 only" in m and "(environment production)" in m for m in msgs), msgs


@pytest.mark.parametrize(("old", "new", "where", "says"), [
    ("    stop_timeout_sec: 60\n", "    stop_timeout_sec: infinity\n", "stop_timeout_sec", "finite stop timeout"),
    ("    stop_timeout_sec: 60\n", "", "external_units.redis", "finite stop timeout"),
    ("    unit: redis-server@shop\n", "    unit: redis-server\n", "external_units.redis.unit", "redis-server@shop"),
    ("    stop_timeout_sec: 60\n", "    stop_timeout_sec: 60\n    persistence: AOF\n", "persistence", "remove it"),
    ("      maxmemory: 512mb\n", "      maxmemory: lots\n", "maxmemory", "pattern"),
    # Redis `include`s the file: a system file would fail its start and echo a line into the journal
    ("      auth_file: /etc/shop/redis-auth.conf\n", "      auth_file: /etc/shadow\n", "redis.auth_file",
     "/etc is a system folder"),
    # a folder the service user writes: it could swap the file, or plant a link root's write follows
    ("      auth_file: /etc/shop/redis-auth.conf\n", "      auth_file: /var/log/shop/redis-auth.conf\n",
     "redis.auth_file", "which a service user can write"),
    # the env file: the install step would keep it, and Redis would read it as its config
    ("      auth_file: /etc/shop/redis-auth.conf\n", "      auth_file: /etc/shop/shop.env\n", "redis.auth_file",
     "is the env file"),
    ("      auth_file: /etc/shop/redis-auth.conf\n", "      auth_file: /srv/shop/app/redis.conf\n", "redis.auth_file",
     "project.repo"),
    ("    stop_timeout_sec: 60\n", "    stop_timeout_sec: 0.5\n", "stop_timeout_sec", "no time to save"),
    ("      maxmemory: 512mb\n", "      maxmemory: 512mb\n      port: true\n", "redis.port", "integer"),
    # the API listens on 127.0.0.1:8000 on app1 (staging) as well
    ("      maxmemory: 512mb\n", "      maxmemory: 512mb\n      port: 8000\n", "redis.port",
     "port 8000 is also service 'api''s on the same host"),
])
def test_redis_settings_mistakes_are_located(tmp_path: Path, old: str, new: str, where: str, says: str) -> None:
    spec = _fleet(tmp_path, old, new)
    msgs = _messages(spec)
    assert any(where in m and says in m and m.startswith(str(spec / "spec.yaml") + ":") for m in msgs), msgs


def test_a_data_loss_claim_that_contradicts_the_settings_is_refused(zachot_spec: Path) -> None:
    spec = zachot_spec
    path = spec / "failures.yaml"
    text = path.read_text()
    old = "      comment: Redis поднимается из AOF; поставленные"
    assert old in text
    path.write_text(text.replace(old, "      data_loss: Partial\n" + old, 1))
    with pytest.raises(SpecError) as exc:
        build(spec)
    line = line_of(path.read_text(), "data_loss: Partial")
    msg = next(str(p) for p in exc.value.problems if "contradicts" in str(p))
    assert msg.startswith(f"{path}:{line}:") and "they give No for event 'crash'" in msg


def test_the_matrix_derives_data_loss_from_the_settings(zachot_spec: Path) -> None:
    matrix = (REPO / "build/staging/docs/failure_matrix.md").read_text()
    crash = next(ln for ln in matrix.splitlines() if ln.startswith("| Процесс Redis упал"))
    assert "**Нет** — AOF включён" in crash
    # The same spec with AOF off: the derived claim follows (RDB snapshots only: Partial).
    spec = zachot_spec
    services = spec / "services.yaml"
    services.write_text(services.read_text().replace("      appendonly: true\n", "      appendonly: false\n", 1))
    files = build(spec).files
    crash = next(ln for ln in files["docs/failure_matrix.md"].splitlines() if ln.startswith("| Процесс Redis упал"))
    assert "**Частично** — AOF выключен" in crash
    assert "\nappendonly no\n" in files["root/etc/redis/redis-zachot.conf"]


def test_validate_checks_the_drop_in_against_the_packaged_template(tmp_path: Path) -> None:
    if not Path("/usr/lib/systemd/system/redis-server@.service").exists():
        pytest.skip("redis-server is not installed (scripts/install-system-deps.sh installs it)")
    b = build(REPO / "spec")
    files = dict(b.files)
    dropin = "root/etc/systemd/system/redis-server@zachot.service.d/zachot.conf"
    assert not verify_units(b.plan, files, tmp_path / "ok")
    files[dropin] = files[dropin].replace("Restart=always", "Restart=sometimes")
    found = verify_units(b.plan, files, tmp_path / "bad")
    assert any(f.artifact == "root/etc/systemd/system/redis-server@zachot.service.d/" and "sometimes" in f.message
               for f in found), found


def test_the_redis_host_of_production_keeps_every_redis_row_and_says_what_starts_it() -> None:
    """On redis1 a stopped Redis is started by nothing of its own host, and rows whose healthcheck
    signal comes from another host's healthcheck keep their row without that signal."""
    files = build_tree(REPO / "spec").files
    matrix = files["production/redis1/docs/failure_matrix.md"]
    rows = [ln for ln in matrix.splitlines() if ln.startswith("| Redis") or ln.startswith("| Процесс Redis")]
    assert len(rows) == 6, rows  # crash, OOM, stopped by the admin, hung, refuses to start, at maxmemory
    assert not any("worker_healthcheck.py" in r for r in rows)  # the worker's healthcheck runs on worker1
    assert "**Запускается вместе с:** ничем на этом хосте" in matrix
    staging = files["staging/docs/failure_matrix.md"]
    assert "**Запускается вместе с:** zachot-api.service, zachot-worker.service (Wants=/Requires=" in staging
    assert "bind 10.20.0.31 127.0.0.1\n" in files["production/redis1/root/etc/redis/redis-zachot.conf"]
    assert "bind 127.0.0.1\n" in files["staging/root/etc/redis/redis-zachot.conf"]


def test_a_clean_stop_without_aof_says_the_snapshot_not_the_aof(zachot_spec: Path) -> None:
    services = zachot_spec / "services.yaml"
    services.write_text(services.read_text().replace("      appendonly: true\n", "      appendonly: false\n", 1))
    matrix = build(zachot_spec).files["docs/failure_matrix.md"]
    row = next(ln for ln in matrix.splitlines() if ln.startswith("| Redis остановлен администратором"))
    assert "**Нет** — AOF выключен: при штатной остановке Redis сохраняет RDB-снимок" in row
    assert "fsync AOF" not in row


def test_a_redis_host_gets_the_overcommit_setting_and_the_runbook_applies_it() -> None:
    """Issue 15: with vm.overcommit_memory=0 Redis's snapshot fork can fail and every write is then
    refused (MISCONF). Each host with a configured Redis gets a sysctl.d file, applied by the runbook
    before Redis starts; hosts without Redis get none."""
    files = build_tree(FLEET).files
    conf = files["production/redis1/root/etc/sysctl.d/shop-redis.conf"]
    settings = [ln for ln in conf.splitlines() if ln and not ln.startswith("#")]
    assert settings == ["vm.overcommit_memory = 1"]
    readme = files["production/redis1/docs/README.md"]
    block = next(b for b in readme.split("```bash\n")[1:] if "enable --now" in b).split("```")[0].splitlines()
    applied = block.index("sudo systemctl restart systemd-sysctl.service")
    assert applied < block.index("sudo systemctl enable --now redis-server@shop.service")
    assert any(ln.endswith(" /etc/sysctl.d/shop-redis.conf") for ln in block[:applied])
    elsewhere = [p for p in files if p.startswith("production/") and "/sysctl.d/" in p]
    assert elsewhere == ["production/redis1/root/etc/sysctl.d/shop-redis.conf"]
