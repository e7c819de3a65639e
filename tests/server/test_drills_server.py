"""Failure drills of the rows that are not one process dying: the server reboots, its disk fills
up, the env file is gone, Redis refuses to start (a corrupt AOF) or reaches ``maxmemory``.

Like :mod:`test_drills`, each test takes its expectation from the generator's plan and the row's
own text (the commands in its detection and manual action are run as written), and records what
the booted server did in a :class:`~server_support.Drill`. Injection:

* reboot = ``systemctl reboot`` inside the container (nspawn exits 133 and the same root is booted
  again), with the logs folder removed first, so tmpfiles.d must re-create it;
* disk full = Redis' data folder and the logs folder moved onto small tmpfs mounts, then filled
  with ``dd`` (the container's own disk is the host's and cannot be filled safely);
* missing env file = ``mv`` it aside and restart the unit;
* corrupt AOF = garbage between two commands of the last AOF file of a stopped Redis;
* maxmemory = ``CONFIG SET maxmemory`` below what Redis already uses;
* a bad deploy = the server's build/ copy with the worker's ExecStart= naming a module that is not
  there (dramatiq exits at import, as with broken code), deployed by the README's block; the
  rollback is the previous build/ and the same block.
"""

from __future__ import annotations

import re
import shlex
import time

import pytest
import testserver as ts
from drill_env import Env, check_gives_up, row
from server_support import Drill, deploy_block, expected_action_text, run_runbook, wait_services_up
from testserver import STAGING, ServerError, submit_job, wait_for

pytestmark = pytest.mark.server

REDIS_DIR = "/var/lib/redis"


def _commands(text: str, prefix: str) -> list[str]:
    """The backticked commands in a row's text that start with ``prefix``, in order."""
    return [c for c in re.findall(r"`([^`]+)`", text) if c.startswith(prefix)]


def _restarts(env: Env) -> dict[str, int]:
    return {u: env.nrestarts(u) for u in (env.redis, env.api, env.worker)}


# ============================================================================================
# The server
# ============================================================================================

@row("server", "reboot")
def test_server_rebooted(env: Env, d: Drill) -> None:
    s, f = env.s, env.f
    d.mechanism = "systemctl reboot (nspawn exits 133, the same root boots again); the logs folder removed first"
    a = d.sv.action
    assert a is not None and a.key == "boot", a
    job = submit_job(s.http, 40, 0.25)
    env.wait_progress(job, 2)
    logs = f.project.logs_dir
    s.run(["rm", "-rf", logs])  # the running services keep their open files; tmpfiles.d must make it again
    t0 = time.monotonic()
    rc, down, up = s.reboot()
    env.dep.timings["reboot: shutdown"], env.dep.timings["reboot: boot"] = down, up
    d.check("nspawn exit for `systemctl reboot`", 133, rc)
    wait_services_up(s, f, timeout=120)
    d.recover_s = time.monotonic() - t0
    # The doc's order: each service started only after the units its After= names were active.
    layers = [layer.split(", ") for layer in str(a.params["order"]).split(" → ")]
    started = {u: s.mono(u, "ExecMainStartTimestampMonotonic") or 0.0 for layer in layers for u in layer}
    active = {u: s.mono(u, "ActiveEnterTimestampMonotonic") or 0.0 for layer in layers for u in layer}
    wrong = [f"{sv.unit_file} started before {dep} was active" for sv in f.plan.services for dep in sv.after
             if dep in active and started[sv.unit_file] < active[dep]]
    seen = " → ".join(sorted(started, key=started.__getitem__))
    nrestarts = _restarts(env)
    d.check("auto-action", expected_action_text(d.sv),
            f"started in the order {seen}; {'; '.join(wrong) or 'each after its After= units'}; NRestarts {nrestarts}",
            not wrong and set(started) == {u for u in f.plan.enable_units if u.endswith(".service")}
            and not any(nrestarts.values()))
    owner = s.file_stat(logs)[:3]
    files = {p: s.file_stat(p)[:3] for sv in f.plan.services for p in sv.log_files}
    want = (f.project.user, f.project.group)
    d.check("tmpfiles.d re-created the logs folder and files", f"{logs} {want[0]}:{want[1]} {f.project.logs_dir_mode}; "
            f"files {want[0]}:{want[1]}", f"{owner}; {sorted(set(files.values()))}",
            owner == (*want, f.project.logs_dir_mode) and all(v[:2] == want for v in files.values()))
    # The row's detection and manual checks, as written.
    failed = s.systemctl("--failed", "--no-legend", "--plain").stdout.strip()
    d.check("detection `systemctl --failed`", "empty", failed or "empty", not failed)
    (is_active,) = _commands(str(d.sv.sc.detection), "systemctl is-active")
    out = s.run(is_active, check=False).stdout.split()
    d.check(f"detection `{is_active}`", "active for each", " ".join(out), bool(out) and set(out) == {"active"})
    for cmd in [*_commands(str(d.sv.sc.manual_action), "curl"), shlex.join(f.monitor.run)]:
        r = s.run(cmd, check=False, timeout=60)
        d.check(f"check after boot `{cmd[:60]}`", "exit 0", f"exit {r.returncode}", r.returncode == 0)
    env.wait_job(job, 60)
    st = env.job(job) or {}
    d.check_loss("No" if st.get("steps_done") == 40 and st.get("failures") in (0, "0", None) else "Yes",
                 f"the job begun before the reboot finished: {st.get('status')}, {st.get('steps_done')} steps")
    d.verify()


@row("server", "bad_deploy")
def test_bad_deploy_rolled_back(env: Env, d: Drill) -> None:
    s, f = env.s, env.f
    a = d.sv.action
    assert a is not None and a.key == "bad_deploy", a
    repo, worker = f.project.repo, f.service("worker")
    d.mechanism = f"{worker.unit_file} in the server's build/ imports a missing module; the README deploy block"
    unit = f"{repo}/{STAGING}/root/etc/systemd/system/{worker.unit_file}"
    original = s.read(unit).decode()
    broken = original.replace(" app.actors ", " app.no_such_module ", 1)
    assert broken != original
    block = ts.Runbook("deploy", "", "", deploy_block(env.dep))
    job = submit_job(s.http, 20, 0.25)
    env.wait_progress(job, 1)
    t_fault = time.monotonic()
    s.run(["tee", unit], input=broken)
    try:
        try:
            run_runbook(s, block, repo)
            stopped = "the block ran to its end"
        except ServerError as exc:  # the block's own gates are the row's detection
            stopped = str(exc).splitlines()[0]
        gates = ("sudo systemctl restart", "systemctl is-active", "curl ", "sudo systemctl start")
        d.check("detection: the deploy block stops with an error", "at `systemctl restart` or a check at its end",
                stopped[:160], any(f": {g}" in stopped for g in gates))
        time.sleep(2)
        d.check("auto-action", expected_action_text(d.sv),
                f"{worker.unit_file}: {s.active_state(worker.unit_file)}, NRestarts {env.nrestarts(worker.unit_file)}, "
                f"still the new ExecStart={'no_such_module' in s.prop(worker.unit_file, 'ExecStart')}",
                s.active_state(worker.unit_file) != "active" and "no_such_module" in s.prop(worker.unit_file, "ExecStart"))
        wait_for(lambda: s.active_state(worker.unit_file) == "failed", 300, f"{worker.unit_file} failed at its start limit")
        d.note("rolled back after the start limit was hit, when a plain `systemctl restart` is refused")
    finally:
        s.run(["tee", unit], input=original)
    try:  # the rollback: the previous build/ and the same block, verbatim
        run_runbook(s, block, repo)
        rolled = "the block ran to its end"
    except ServerError as exc:
        rolled = str(exc).splitlines()[0]
    d.check("manual action: the previous build/ and the same block", "the block ran to its end", rolled[:160])
    wait_services_up(s, f, timeout=60)
    env.wait_job(job, 90)
    d.recover_s = time.monotonic() - t_fault
    st = env.job(job) or {}
    d.check_loss("No" if st.get("steps_done") == 20 else "Yes",
                 f"the job waited and finished on the old version: {st.get('status')}, {st.get('steps_done')} steps")
    d.verify()


def _mount_small(env: Env, path: str, owner: str, mode: str, size: str) -> None:
    """Put ``path`` on a tmpfs of ``size`` holding a copy of what it has (units using it are stopped)."""
    env.s.run(f"set -e; tmp=$(mktemp -d); cp -a {path}/. $tmp/; mount -t tmpfs -o size={size},mode={mode} tmpfs {path};"
              f" chown {owner} {path}; cp -a $tmp/. {path}/; rm -rf $tmp")


@row("server", "disk_full")
def test_disk_full(env: Env, d: Drill) -> None:
    s, f = env.s, env.f
    d.mechanism = f"{REDIS_DIR} and the logs folder on 64 MiB tmpfs mounts, filled with dd"
    logs = f.project.logs_dir
    services = [env.api, env.worker]
    s.systemctl("stop", *services, env.redis)
    try:
        _mount_small(env, REDIS_DIR, "redis:redis", "0750", "64m")
        _mount_small(env, logs, f"{f.project.user}:{f.project.group}", f.project.logs_dir_mode, "64m")
        s.systemctl("start", env.redis, *services)
        wait_services_up(s, f, timeout=120)
        job = submit_job(s.http, 30, 0.3)
        env.wait_progress(job, 2)
        n0 = _restarts(env)
        cur = s.journal_cursor()
        t_fault = time.monotonic()
        for folder in (REDIS_DIR, logs):
            s.run(f"dd if=/dev/zero of={folder}/zachot-drill-fill bs=1M status=none", check=False, timeout=60)
        wait_for(lambda: "aof_last_write_status:err" in s.run("redis-cli info persistence").stdout, 15,
                 "Redis meets the full disk (aof_last_write_status:err)", interval=0.3)
        r = s.http.post("/jobs", json={"steps": 1, "step_seconds": 0})
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        d.check("symptoms: POST /jobs", "503 redis_unavailable, MISCONF ... No space left on device",
                f"{r.status_code} {body.get('error')}: {str(body.get('detail'))[:120]}",
                r.status_code == 503 and "MISCONF" in str(body.get("detail")))
        ready = s.http.get("/readyz")
        d.check("symptoms: /readyz (Redis answers MISCONF even to PING)", "503 MISCONF",
                f"{ready.status_code} {ready.text[:80]}", ready.status_code == 503 and "MISCONF" in ready.text)
        stuck = (env.job(job) or {}).get("steps_done")
        time.sleep(3)
        d.check("symptoms: the running job stands still", stuck, (env.job(job) or {}).get("steps_done"))
        quotes = re.findall(r"«([^»]+)»", str(d.sv.sc.detection))
        journal = s.journal_text(cur, env.redis)
        d.check("detection: the Redis journal", "; ".join(quotes), "; ".join(q for q in quotes if q in journal),
                bool(quotes) and all(q in journal for q in quotes))
        code, _ = env.healthcheck()
        d.check_hc(code, env.hc_alerts)
        d.check("auto-action", expected_action_text(d.sv),
                f"NRestarts {n0} -> {_restarts(env)}; {[s.active_state(u) for u in n0]}",
                _restarts(env) == n0 and all(s.active_state(u) == "active" for u in n0))
        # The manual action: free space; Redis retries the AOF write by itself.
        s.run(f"rm -f {REDIS_DIR}/zachot-drill-fill {logs}/zachot-drill-fill")
        t_free = time.monotonic()
        (persist,) = _commands(str(d.sv.sc.manual_action), "redis-cli info persistence")
        wait_for(lambda: "aof_last_write_status:ok" in s.run(persist).stdout, 15, "aof_last_write_status:ok")
        d.note(f"Redis accepted writes {time.monotonic() - t_free:.1f} s after space was freed, with no restart")
        env.wait_job(job, 60)
        d.recover_s = time.monotonic() - t_fault
        st = env.job(job) or {}
        marker = f"zachot-drill-{int(time.time())}"
        s.http.get(f"/healthz?{marker}")
        time.sleep(1)
        api_log = s.run(["tail", "-n", "50", f.service("api").log_files[0]]).stdout
        d.check("the API's log takes lines again", f"a line with {marker}", "found" if marker in api_log else "missing",
                marker in api_log)
        d.check_loss("Partial" if st.get("steps_done") == 30 else "Yes",
                     f"the job finished ({st.get('status')}, {st.get('steps_done')} steps, failures {st.get('failures')});"
                     " only log lines written while full are gone")
    finally:
        s.systemctl("stop", *services, env.redis, check=False)
        s.run(f"umount {REDIS_DIR}; umount {logs}", check=False)
    d.verify()


# ============================================================================================
# The env file
# ============================================================================================

def _env_file_missing(env: Env, d: Drill, unit: str) -> None:
    s, f = env.s, env.f
    a = d.sv.action
    assert a is not None and a.key == "resources_then_limit", a
    path = f.project.env_file
    d.mechanism = f"mv {path} aside, systemctl restart {unit}"
    s.run(["mv", path, f"{path}.drill"])
    try:
        time.sleep(1)
        d.check("symptoms: the running process goes on", "active", s.active_state(unit))
        s.systemctl("reset-failed", unit, check=False)
        cur = s.journal_cursor()
        t_fault = time.monotonic()
        s.systemctl("restart", unit, check=False)
        check_gives_up(env, d, unit, cur, since=t_fault)
    finally:
        s.run(["mv", f"{path}.drill", path])
    (manual,) = _commands(str(d.sv.sc.manual_action), "systemctl reset-failed")
    s.run(manual, timeout=120)
    wait_for(lambda: s.active_state(unit) == "active", 30, f"{unit} active after the manual action")
    d.recover_s = time.monotonic() - t_fault
    d.check_loss("No", "nothing runs while the file is missing; jobs wait in Redis")


@row("api", "env_file_missing")
def test_api_env_file_missing(env: Env, d: Drill) -> None:
    _env_file_missing(env, d, env.api)
    d.verify()


@row("worker", "env_file_missing")
def test_worker_env_file_missing(env: Env, d: Drill) -> None:
    _env_file_missing(env, d, env.worker)
    d.verify()


# ============================================================================================
# Redis
# ============================================================================================

def _last_aof(env: Env) -> str:
    """The last incremental AOF file Redis 7 lists in its manifest (appendonlydir)."""
    folder = f"{REDIS_DIR}/appendonlydir"
    manifest = env.s.run(f"cat {folder}/*.manifest").stdout
    incr = [ln.split()[1] for ln in manifest.splitlines() if ln.split()[-1:] == ["i"]]
    assert incr, manifest
    return f"{folder}/{incr[-1]}"


@row("redis", "crash_loop")
def test_redis_refuses_to_start(env: Env, d: Drill) -> None:
    s = env.s
    a = d.sv.action
    assert a is not None and a.key == "restart_then_limit", a
    d.mechanism = "a line of garbage, then one more command, appended to the last AOF file of a stopped Redis"
    before = submit_job(s.http, 1, 0)
    env.wait_job(before, 30)
    s.systemctl("stop", env.redis)
    after_damage = "*3\r\n$3\r\nSET\r\n$17\r\nzachot-drill-after\r\n$1\r\n1\r\n"
    s.run(["bash", "-c", f"printf 'garbage\\n%s' \"$1\" >> {_last_aof(env)}", "-", after_damage])
    s.systemctl("reset-failed", env.redis, check=False)
    cur = s.journal_cursor()
    t_fault = time.monotonic()
    s.systemctl("start", env.redis, check=False)
    check_gives_up(env, d, env.redis, cur)
    d.check("symptoms: /readyz", 503, s.http.get("/readyz").status_code)
    code, _ = env.healthcheck()
    d.check_hc(code, env.hc_alerts)
    manual = str(d.sv.sc.manual_action)
    steps = [*_commands(manual, "cp -a"), *_commands(manual, "echo y | redis-check-aof"),
             *_commands(manual, "systemctl reset-failed")]
    assert len(steps) == 3, manual
    for cmd in steps:
        r = s.run(cmd, check=False, timeout=120)
        d.check(f"manual action `{cmd[:50]}`", "exit 0", f"exit {r.returncode}", r.returncode == 0)
    wait_services_up(s, env.f, timeout=60)
    d.recover_s = time.monotonic() - t_fault
    kept = (env.job(before) or {}).get("status")
    lost = s.run(["redis-cli", "exists", "zachot-drill-after"]).stdout.strip()
    d.check("what redis-check-aof --fix keeps", "the job before the damage; not the write after it",
            f"job {kept}; write after the damage exists={lost}", kept == "done" and lost == "0")
    d.check_loss("Partial" if lost == "0" else "No", "the AOF is cut where it is damaged")
    s.run(f"rm -rf {REDIS_DIR}.broken-*")
    d.verify()


@row("redis", "maxmemory")
def test_redis_reaches_maxmemory(env: Env, d: Drill) -> None:
    s = env.s
    r = s.redis()
    limit = r.config_get("maxmemory")["maxmemory"]
    d.mechanism = "CONFIG SET maxmemory to half of used_memory (policy stays noeviction)"
    worker_err = env.f.service("worker").log_files[-1]
    job = submit_job(s.http, 30, 0.3)
    env.wait_progress(job, 2)
    evicted0 = int(r.info("stats")["evicted_keys"])
    size0 = int(s.run(["stat", "-c", "%s", worker_err]).stdout)
    n0 = _restarts(env)
    t_fault = time.monotonic()
    r.config_set("maxmemory", max(1, int(r.info("memory")["used_memory"]) // 2))
    try:
        resp = s.http.post("/jobs", json={"steps": 1, "step_seconds": 0})
        detail = str(resp.json().get("detail"))
        d.check("symptoms: POST /jobs", "503 redis_unavailable, «command not allowed when used memory»",
                f"{resp.status_code} {detail[:100]}",
                resp.status_code == 503 and "command not allowed when used memory" in detail)
        d.check("symptoms: /readyz", 200, s.http.get("/readyz").status_code)
        wait_for(lambda: "command not allowed when used memory" in s.run(
            ["tail", "-c", "+" + str(size0 + 1), worker_err]).stdout, 20, "the worker's complaint in its stderr")
        stuck = (env.job(job) or {}).get("steps_done")
        time.sleep(3)
        d.check("symptoms: the running job stands still", stuck, (env.job(job) or {}).get("steps_done"))
        (info,) = _commands(str(d.sv.sc.detection), "redis-cli info memory")
        mem = dict(ln.split(":", 1) for ln in s.run(info).stdout.split() if ":" in ln)
        d.check(f"detection `{info}`", "used_memory >= maxmemory",
                f"used_memory {mem.get('used_memory')}, maxmemory {mem.get('maxmemory')}",
                int(mem.get("used_memory", 0)) >= int(mem.get("maxmemory", 1)))
        d.check("auto-action", expected_action_text(d.sv), f"NRestarts {n0} -> {_restarts(env)}",
                _restarts(env) == n0 and all(s.active_state(u) == "active" for u in n0))
    finally:
        r.config_set("maxmemory", limit)
    env.wait_job(job, 60)
    d.recover_s = time.monotonic() - t_fault
    st = env.job(job) or {}
    d.check("the job goes on once memory is free", "done, 30 steps, failures 0",
            f"{st.get('status')}, {st.get('steps_done')} steps, failures {st.get('failures')}",
            st.get("status") == "done" and st.get("steps_done") == 30 and str(st.get("failures") or 0) == "0")
    evicted = int(r.info("stats")["evicted_keys"]) - evicted0
    d.check_loss("No" if evicted == 0 else "Yes", f"evicted_keys +{evicted} (INFO stats); the job kept every step")
    r.close()
    d.verify()
