"""Deployment on a booted Debian 12 server, installed by the runbook of build/staging/docs/README.md.

Checks what static tests cannot: the units start, hardening leaves the app working, the logs
and their rotation behave as the docs say. The reboot is a failure-matrix row (test_drills_server.py).
"""

from __future__ import annotations

import json
import re
import shlex
import time
from datetime import date, timedelta

import pytest
import testserver as ts
from server_support import Deployment, deploy_block, run_runbook, wait_services_up
from testserver import HERE, REPO, STAGING, SseFollower, job_status, log, submit_job, wait_for

from generator.filters import env_file_value
from generator.layout import env_example

pytestmark = pytest.mark.server


def _install_lines(dep: Deployment) -> dict[str, list[str]]:
    """`install` lines of the runbook block by their destination path (argv after `sudo`)."""
    out: dict[str, list[str]] = {}
    for line in dep.runbook.block:
        argv = shlex.split(line)
        if argv[:1] == ["sudo"]:
            argv = argv[1:]
        if argv[:1] == ["install"]:
            out[argv[-1]] = argv
    return out


def test_install_runbook_runs_verbatim_on_a_fresh_server(deployment: Deployment) -> None:
    """Every line of the runbook block ran as written (a person at `sudoedit` typed the required
    variables of the runbook's own table), with no work-around."""
    log("runbook transcript:\n" + deployment.install_output)
    assert not deployment.runbook_workarounds, "the install runbook needed work-arounds:\n" + "\n".join(
        deployment.runbook_workarounds)


def test_env_file_has_what_the_person_typed_and_the_documented_owner_and_mode(deployment: Deployment) -> None:
    s, p = deployment.server, deployment.facts.project
    assert s.read(p.env_file).decode().splitlines() == deployment.env_file_lines
    assert s.file_stat(p.env_file)[:3] == ("root", p.group, p.env_file_mode)


def test_systemd_reads_the_env_example_and_every_quoting_form_as_written(deployment: Deployment) -> None:
    """The runbook installed build/staging/env/<name>.example before the person edited it; systemd's own
    EnvironmentFile= parser (systemd-run) must read that example, and values quoted by
    generator/filters.py's env_file_value, exactly as the spec wrote them."""
    s, p = deployment.server, deployment.facts.project
    values = {"ZT_PLAIN": "redis://127.0.0.1:6379/0", "ZT_SPACES": " two  words ", "ZT_EMPTY": "",
              "ZT_SHELLY": "it's $HOME \"x\" \\ `y` #z", "ZT_HASH": "a#b", "ZT_UTF8": "ключ 100%"}
    text = "".join(f"{k}={env_file_value(v)}\n" for k, v in values.items())
    example = (REPO / STAGING / env_example(p.env_file)).read_text()
    for name, body in (("quoted", text), ("example", example)):
        s.run(["tee", f"/run/zt-{name}.env"], input=body)
        r = s.run(["systemd-run", "--quiet", "--wait", "--pipe", "-p", f"EnvironmentFile=/run/zt-{name}.env",
                   "/usr/bin/env", "-0"])
        got = dict(item.split("=", 1) for item in r.stdout.split("\0") if "=" in item)
        if name == "quoted":
            assert {k: got.get(k) for k in values} == values
        else:
            declared = {k: got[k] for k in p.env_vars if k in got}
            assert declared == {k: v.example for k, v in p.env_vars.items() if v.required and not v.secret}


def test_runbook_installs_every_manifest_file_with_its_owner_group_mode(deployment: Deployment) -> None:
    """Every row of build/staging/manifest.tsv has an `install` line with the same source, owner, group and
    mode, and on the server the file has exactly those and the bytes of build/."""
    lines = _install_lines(deployment)
    problems = []
    for row in deployment.manifest:
        argv = lines.get(row["server_path"])
        if argv is None:
            problems.append(f"{row['server_path']}: no install line in the runbook")
            continue
        opts = {argv[i]: argv[i + 1] for i in range(len(argv) - 1) if argv[i] in ("-m", "-o", "-g")}
        want = {"-m": row["mode"], "-o": row["owner"], "-g": row["group"]}
        if opts != want or argv[-2] != f"{STAGING}/{row['build_path']}":
            problems.append(f"{row['server_path']}: runbook {' '.join(argv)} vs manifest {row}")
        owner, group, mode, _ = deployment.server.file_stat(row["server_path"])
        if (owner, group, mode) != (row["owner"], row["group"], row["mode"]):
            problems.append(f"{row['server_path']}: on the server {owner}:{group} {mode}, manifest {row}")
        if deployment.server.read(row["server_path"]) != (REPO / STAGING / row["build_path"]).read_bytes():
            problems.append(f"{row['server_path']}: content differs from {STAGING}/{row['build_path']}")
    extra = set(lines) - {r["server_path"] for r in deployment.manifest}
    if extra:
        problems.append(f"installed by the runbook but not in the manifest: {sorted(extra)}")
    assert not problems, "\n".join(problems)


def test_sysusers_and_tmpfiles_made_the_user_log_dir_and_env_file_mode(deployment: Deployment) -> None:
    s, p = deployment.server, deployment.facts.project
    passwd = s.run(["getent", "passwd", p.user]).stdout.strip().split(":")
    assert passwd[5] == p.root and passwd[6] == "/usr/sbin/nologin", passwd
    assert s.file_stat(p.logs_dir)[:3] == (p.user, p.group, p.logs_dir_mode)
    assert s.file_stat(p.env_file)[:3] == ("root", p.group, p.env_file_mode)


def test_services_are_active_and_enabled_after_install(deployment: Deployment) -> None:
    s, f = deployment.server, deployment.facts
    for unit in f.plan.enable_units:
        assert s.systemctl("is-enabled", unit).stdout.strip() == "enabled", unit
        assert s.active_state(unit) == "active", unit
    assert s.active_state(f.unit_file("redis")) == "active"
    assert s.systemctl("--failed", "--no-legend").stdout.strip() == ""


def _doc_manual_command(deployment: Deployment, script_path: str) -> str:
    """The README's manual-run command (```bash block with systemd-run) for ``script_path``."""
    readme = (REPO / STAGING / "docs/README.md").read_text()
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.S):
        if "systemd-run" in block and script_path in block:
            return block.strip()
    raise AssertionError(f"no systemd-run command for {script_path} in {STAGING}/docs/README.md")


def run_doc_manual_command(deployment: Deployment, script_path: str) -> tuple[int, str]:
    """Run the README's `sudo systemd-run ... ; echo "exit=$?"` verbatim; (exit code, output)."""
    cmd = _doc_manual_command(deployment, script_path)
    out = deployment.server.run(cmd, timeout=60).stdout
    m = re.search(r"exit=(\d+)", out)
    assert m, out
    return int(m.group(1)), out


def test_worker_healthcheck_exits_0_as_the_timer_runs_it_and_by_the_doc_command(deployment: Deployment) -> None:
    s, f = deployment.server, deployment.facts
    unit = f"{f.monitor.timer_unit}.service"
    cur = s.journal_cursor()
    r = s.systemctl("start", unit, check=False)
    out = s.journal_text(cur, unit)
    assert r.returncode == 0 and s.prop(unit, "ExecMainStatus") == "0", out
    assert "overall: OK (exit 0)" in out, out
    code, out = run_doc_manual_command(deployment, f.monitor.script_path)
    assert code == 0, out
    assert s.active_state(f"{f.monitor.timer_unit}.timer") == "active"


def test_job_over_http_completes_and_sse_delivers_every_event(deployment: Deployment) -> None:
    s = deployment.server
    steps = 5
    job = submit_job(s.http, steps, 0.2)
    follower = SseFollower(s, job, timeout=60)
    follower.start()
    follower.join(70)
    st = job_status(s.http, job)
    assert st and st["status"] == "done" and st["steps_done"] == steps, st
    assert not follower.check_exactly_once(steps), (follower.events, follower.errors)
    assert follower.connections == 1
    # Resuming with Last-Event-ID after the end delivers only what follows it.
    with s.http.stream("GET", f"/jobs/{job}/events", headers={"Last-Event-ID": str(steps - 1)}) as r:
        ids = [ln.split(":", 1)[1].strip() for ln in r.iter_lines() if ln.startswith("id:")]
    assert ids == [str(steps), str(steps + 1)]


def test_2000_concurrent_sse_streams_are_all_served(deployment: Deployment) -> None:
    """Issue 15: with systemd's soft limit of 1024 open files the API failed at ~500 streams. The
    unit's derived LimitNOFILE= holds 2,000 streams of one job, each with every event once."""
    s, plan = deployment.server, deployment.facts.plan
    api = next(sv for sv in plan.services if sv.name == "api")
    want = next(lim.value for lim in api.limits if lim.directive == "LimitNOFILE")
    pid = s.main_pid(api.unit_file)
    assert re.search(rf"^Max open files\s+{want}\s+{want}\s", s.run(["cat", f"/proc/{pid}/limits"]).stdout, re.M)
    restarts = s.prop(api.unit_file, "NRestarts")
    err = api.stderr_path or ""
    errors_before = s.run(["grep", "-c", "Too many open files", err], check=False).stdout.strip()
    steps, streams = 10, 2000
    job = submit_job(s.http, steps, 3.0)
    script = (HERE / "sse_load.py").read_text()
    r = s.run(["python3", "-", str(s.api_port), job, str(streams), str(steps), "150"], input=script, timeout=200)
    out = json.loads(r.stdout)
    log(f"{streams} SSE streams: {out}")
    assert out["ok"] == streams and out["peak"] == streams, out
    assert s.prop(api.unit_file, "NRestarts") == restarts
    assert s.run(["grep", "-c", "Too many open files", err], check=False).stdout.strip() == errors_before


def _status_fields(s: object, pid: int) -> dict[str, str]:
    text = s.run(["cat", f"/proc/{pid}/status"]).stdout  # type: ignore[attr-defined]
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def test_services_run_as_the_service_user_with_the_hardening_enforced(deployment: Deployment) -> None:
    """Main and worker processes run as the user with no capabilities, NoNewPrivs, seccomp; inside
    the service's own namespaces a write outside ReadWritePaths= fails and one inside works."""
    s, f = deployment.server, deployment.facts
    p = f.project
    uid = s.run(["id", "-u", p.user]).stdout.strip()
    gid = s.run(["id", "-g", p.user]).stdout.strip()
    problems = []
    for name in ("api", "worker"):
        sv = f.service(name)
        main = s.main_pid(sv.unit_file)
        pids = [main, *s.children_of(main)]
        for pid in pids:
            st = _status_fields(s, pid)
            want = {"Uid": f"{uid}\t{uid}\t{uid}\t{uid}", "Gid": f"{gid}\t{gid}\t{gid}\t{gid}", "NoNewPrivs": "1",
                    "Seccomp": "2", "CapEff": "0" * 16, "CapBnd": "0" * 16}
            bad = {k: st.get(k) for k, v in want.items() if st.get(k) != v}
            if bad:
                problems.append(f"{sv.unit_file} pid {pid}: {bad}")
        rw = [d.value for d in sv.hardening if d.name == "ReadWritePaths"]
        assert rw, sv.hardening
        forbidden = [p.repo, p.venv, "/etc", "/usr/lib", p.root]
        script = "; ".join(
            [f"touch {shlex.quote(path)}/.zachot-probe 2>/dev/null && {{ echo WROTE {path}; rm -f {path}/.zachot-probe; }}"
             " || echo DENIED " + path for path in forbidden + rw])
        out = s.run(["nsenter", "-t", str(main), "-m", "-U", "-S", uid, "-G", gid, "sh", "-c", script]).stdout
        log(f"{sv.unit_file} write probe:\n{out}")
        for path in forbidden:
            if f"DENIED {path}" not in out:
                problems.append(f"{sv.unit_file}: could write to {path}")
        for path in rw:
            if f"WROTE {path}" not in out:
                problems.append(f"{sv.unit_file}: could not write to its ReadWritePaths {path}")
    assert not problems, "\n".join(problems)


def test_systemd_analyze_security_on_the_server_agrees_with_the_recorded_exposure(deployment: Deployment) -> None:
    s, f = deployment.server, deployment.facts
    recorded = {sv.unit_file: sv.svc.hardening.exposure for sv in f.plan.services}
    recorded |= {f"{h.timer_unit}.service": h.hc.hardening.exposure for h in f.plan.healthchecks if h.timer_unit}
    observed = {}
    for unit in recorded:
        out = s.run(["systemd-analyze", "security", "--no-pager", unit]).stdout
        m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out)
        assert m, out[-500:]
        observed[unit] = float(m.group(1))
    log(f"exposure recorded {recorded}, on the server {observed}")
    assert observed == recorded


def _log_paths(deployment: Deployment) -> list[str]:
    return [p for sv in deployment.facts.plan.services for p in (sv.stdout_path, sv.stderr_path)]


def test_log_files_have_owner_and_mode_and_receive_output(deployment: Deployment) -> None:
    s, f = deployment.server, deployment.facts
    before = {p: s.file_stat(p) for p in _log_paths(deployment)}
    for sv in f.plan.services:
        for path in (sv.stdout_path, sv.stderr_path):
            owner, group, mode, _ = before[path]
            assert (owner, group, mode) == (sv.policy.owner, sv.policy.group, sv.policy.mode), path
    s.systemctl("restart", *(sv.unit_file for sv in f.plan.services))
    wait_services_up(s, f)
    job = submit_job(s.http, 1, 0)
    wait_for(lambda: (job_status(s.http, job) or {}).get("status") == "done", 30, "job done")
    s.http.get("/healthz")
    time.sleep(0.5)
    grown = {}
    for path in _log_paths(deployment):
        owner, group, mode, size = s.file_stat(path)
        grown[path] = size - before[path][3]
        assert (owner, group, mode) == before[path][:3], f"{path} changed owner/mode after a restart"
        head = s.run(["tail", "-n", "2", path]).stdout.strip().replace("\n", " | ")
        log(f"{path}: +{grown[path]} bytes; last lines: {head[:200]}")
    assert all(v > 0 for v in grown.values()), grown


def test_logrotate_service_rotates_the_logs_and_the_writers_keep_writing(deployment: Deployment) -> None:
    """Debian's own logrotate.service (as its daily timer starts it) rotates the generated files:
    dated copies with the policy's owner/mode, the live files truncated in place, and the
    running API and worker keep appending to the live files (copytruncate + O_APPEND)."""
    s, f = deployment.server, deployment.facts
    paths = _log_paths(deployment)
    assert s.active_state("logrotate.timer") == "active"
    s.http.get("/healthz")
    for path in paths:  # notifempty: every file needs something to rotate
        if s.file_stat(path)[3] == 0:
            pytest.fail(f"{path} is empty before rotation")
    # A day has passed since the last rotation: the state file says so (the clock is the host's).
    yesterday = date.today() - timedelta(days=1)
    state = "/var/lib/logrotate/status"
    old = s.run(f"cat {state} 2>/dev/null || true").stdout.splitlines()
    keep = [ln for ln in old if not any(ln.startswith(f'"{p}"') for p in paths)] or ["logrotate state -- version 2"]
    new = keep + [f'"{p}" {yesterday.year}-{yesterday.month}-{yesterday.day}-0:0:0' for p in paths]
    s.run(["tee", state], input="\n".join(new) + "\n")
    sizes = {p: s.file_stat(p)[3] for p in paths}
    cur = s.journal_cursor()
    r = s.systemctl("start", "logrotate.service", check=False)
    jl = s.journal_text(cur, "logrotate.service")
    assert r.returncode == 0 and s.prop("logrotate.service", "Result") == "success", jl
    problems = []
    listing = s.run(["ls", "-1", f.project.logs_dir]).stdout.split()
    for sv in f.plan.services:
        # today's date by the policy's dateformat; %s (seconds since the epoch) is whatever logrotate's clock said
        suffix = re.escape(time.strftime(sv.policy.dateformat.replace("%s", "@@"))).replace("@@", r"\d+")
        for path in (sv.stdout_path, sv.stderr_path):
            name = re.escape(path.rsplit("/", 1)[1])
            found = [n for n in listing if re.fullmatch(name + suffix, n)]
            if len(found) != 1:
                problems.append(f"{path}{sv.policy.dateformat}: {found} after logrotate.service: {listing}")
                continue
            rotated = f"{f.project.logs_dir}/{found[0]}"
            r2 = s.run(["stat", "-c", "%U %G %a %s", rotated])
            owner, group, mode, size = r2.stdout.split()
            if (owner, group, mode.zfill(4)) != (sv.policy.owner, sv.policy.group, sv.policy.mode):
                problems.append(f"{rotated}: {owner}:{group} {mode}, want {sv.policy.owner}:{sv.policy.group} {sv.policy.mode}")
            if int(size) < sizes[path]:
                problems.append(f"{rotated}: {size} bytes < {sizes[path]} the live file had")
            live = s.file_stat(path)
            if live[:3] != (sv.policy.owner, sv.policy.group, sv.policy.mode) or live[3] >= sizes[path]:
                problems.append(f"{path} after rotation: {live} (was {sizes[path]} bytes)")
    assert not problems, "\n".join(problems) + "\n" + jl
    # The writers keep writing into the truncated live files, from offset 0 (no hole of NULs).
    marker = f"/healthz?after-rotation={int(time.time())}"
    s.http.get(marker)
    job = submit_job(s.http, 1, 0)
    wait_for(lambda: (job_status(s.http, job) or {}).get("status") == "done", 30, "job done")
    api, worker = f.service("api"), f.service("worker")
    wait_for(lambda: marker in s.read(api.stdout_path).decode(errors="replace"), 10, "the API's access log line")
    wait_for(lambda: job in s.read(worker.stderr_path).decode(errors="replace"), 10, "the worker's log line")
    for path in paths:
        data = s.read(path)
        assert b"\0" not in data, f"{path} has NUL bytes after copytruncate"
    # A second run the same day rotates nothing more.
    before = s.run(["ls", f.project.logs_dir]).stdout.split()
    s.systemctl("start", "logrotate.service")
    assert s.run(["ls", f.project.logs_dir]).stdout.split() == before






def test_deploy_runbook_runs_verbatim_and_a_changed_unit_takes_effect(deployment: Deployment) -> None:
    """Issue 15: the routine deploy of a new build/, run line by line as the install runbook is. A
    unit changed in the new tree is in force afterwards, every service runs a new process, every
    unit is active, and the block's own gates (readiness URL, healthcheck) pass."""
    s, f = deployment.server, deployment.facts
    lines = deploy_block(deployment)
    repo = f.project.repo
    api = f.service("api")
    unit = f"{repo}/{STAGING}/root/etc/systemd/system/{api.unit_file}"
    original = s.read(unit).decode()
    changed = original.replace("\n[Service]\n", "\n[Service]\nEnvironment=ZACHOT_DEPLOY_MARK=new-build\n", 1)
    assert changed != original
    pids = {sv.unit_file: s.main_pid(sv.unit_file) for sv in f.plan.services}
    s.run(["tee", unit], input=changed)
    block = ts.Runbook("deploy", "", "", lines)
    try:
        t0 = time.monotonic()
        run_runbook(s, block, repo)
        log(f"deploy block: {len(lines)} lines in {time.monotonic() - t0:.1f} s")
        assert "ZACHOT_DEPLOY_MARK=new-build" in s.prop(api.unit_file, "Environment")
        for sv in f.plan.services:
            assert s.main_pid(sv.unit_file) not in (0, pids[sv.unit_file]), f"{sv.unit_file} was not restarted"
        assert all(s.active_state(u) == "active" for u in f.plan.enable_units)
    finally:
        s.run(["tee", unit], input=original)
        run_runbook(s, block, repo)
    assert "ZACHOT_DEPLOY_MARK" not in s.prop(api.unit_file, "Environment")
    wait_services_up(s, f)
