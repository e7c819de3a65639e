"""Deliver the repo spec's production environment to a fleet of booted machines with its own
generated Ansible playbook (:mod:`fleet_delivery`), by the commands of build/production/hosts.md.

In order: install A, upgrade to B (only the API restarts; the timer is stopped, disabled and
deleted), roll back to A (its files exactly), and a hand edit reported by ``--check --diff``.
"""

from __future__ import annotations

import re
import shutil

import pytest
import testserver as ts
import yaml
from fleet_delivery import ENV, Delivery, Release, git, release_b

pytestmark = pytest.mark.server


def _recap(out: str) -> dict[str, dict[str, int]]:
    rows = re.findall(r"^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$", out, flags=re.M)
    return {h: {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", counts)} for h, counts in rows}


def _assert_tree(d: Delivery, rel: Release) -> None:
    """Every host holds exactly ``rel``'s files (bytes, owner, group, mode) and runs its units."""
    for host, m in d.fleet.machines.items():
        hv = rel.host_vars(host)
        for f in hv["tree_files"]:
            assert m.server.read(f["dest"]) == rel.file_text(host, f["src"]), f"{host}:{f['dest']} differs from the tree"
            owner, group, mode, _ = m.server.file_stat(f["dest"])
            assert (owner, group, mode) == (f["owner"], f["group"], f["mode"]), f"{host}:{f['dest']}"
        for unit in hv["tree_units"]:
            st = m.server.show(unit, "ActiveState", "UnitFileState")
            assert st == {"ActiveState": "active", "UnitFileState": "enabled"}, f"{host}: {unit} {st}"
        record = yaml.safe_load(m.server.read(f"{hv['tree_state']}/release.json"))
        assert record["files"] == [f["dest"] for f in hv["tree_files"]] and record["units"] == hv["tree_units"]


def _pids(d: Delivery, rel: Release) -> dict[tuple[str, str], int]:
    return {(host, unit): m.server.main_pid(unit) for host, m in d.fleet.machines.items()
            for unit in rel.host_vars(host)["tree_units"] if unit.endswith(".service")}


def test_install(fleet_delivery: Delivery) -> None:
    d = fleet_delivery
    out = d.run_block(d.blocks[0])
    recap = _recap(out)
    assert set(recap) == set(d.fleet.machines) and all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap.values()), out[-3000:]
    _assert_tree(d, d.releases["A"])
    api_hosts = [h for h in d.fleet.machines if d.releases["A"].host_vars(h)["tree_http_gates"]]
    assert len(api_hosts) >= 2
    for host in api_hosts:  # a job through each API host: workers on other hosts run it, Redis on a third
        srv = d.server(host)
        assert srv.http.get("/readyz").status_code == 200
        job = ts.submit_job(srv.http, 3, 0.1)
        ts.wait_for(lambda srv=srv, job=job: (ts.job_status(srv.http, job) or {}).get("status") == "done",
                    60, f"job {job} via {host}")


def test_upgrade_restarts_only_changed_units_and_removes_dropped_ones(fleet_delivery: Delivery) -> None:
    d = fleet_delivery
    a = d.releases["A"]
    before = _pids(d, a)
    git(d.repo, "checkout", "-q", "-B", "main")
    shutil.rmtree(d.repo / "build")
    shutil.copytree(d.b_build, d.repo / "build")
    release_b(d.repo / "spec")
    git(d.repo, "add", "-A")
    git(d.repo, "-c", "user.name=fleet test", "-c", "user.email=fleet@test.invalid", "commit", "-qm", "release B")
    b = Release(git(d.repo, "rev-parse", "HEAD"), d.keep / "B")
    shutil.copytree(d.repo / "build", b.build)
    d.releases["B"] = b
    d.run_block(d.blocks[0])
    _assert_tree(d, b)
    after = _pids(d, b)
    changed = {(h, u) for h in d.fleet.machines for f in b.host_vars(h)["tree_files"] for u in f["restart"]
               if (a.file_text(h, f["src"]) if (a.build / ENV / h / f["src"]).exists() else b"")
               != b.file_text(h, f["src"])}
    assert changed, "release B changed no unit file"
    for key, pid in before.items():
        if key not in after:
            continue
        if key in changed:
            assert after[key] != pid, f"{key} was not restarted though its file changed"
        else:
            assert after[key] == pid, f"{key} was restarted though none of its files changed"
    for host, m in d.fleet.machines.items():
        gone_units = set(a.host_vars(host)["tree_units"]) - set(b.host_vars(host)["tree_units"])
        gone_files = {f["dest"] for f in a.host_vars(host)["tree_files"]} - {f["dest"] for f in b.host_vars(host)["tree_files"]}
        for unit in gone_units:
            st = m.server.show(unit, "ActiveState", "LoadState")
            assert st == {"ActiveState": "inactive", "LoadState": "not-found"}, f"{host}: {unit} {st}"
        for path in gone_files:
            assert m.server.run(["test", "-e", path], check=False).returncode == 1, f"{host}:{path} still there"
    assert any(set(a.host_vars(h)["tree_units"]) - set(b.host_vars(h)["tree_units"]) for h in d.fleet.machines)


def test_rollback_restores_the_previous_release(fleet_delivery: Delivery) -> None:
    d = fleet_delivery
    if "B" not in d.releases:
        pytest.skip("needs the upgrade")
    d.run_block(d.blocks[2], fill={"PREVIOUS": d.releases["A"].commit})
    _assert_tree(d, d.releases["A"])
    assert git(d.repo, "worktree", "list").count("\n") == 0, "the rollback worktree was left behind"


def test_drift_is_reported_by_check_diff(fleet_delivery: Delivery) -> None:
    d = fleet_delivery
    rel = d.releases["B"] if "B" in d.releases else d.releases["A"]
    git(d.repo, "checkout", "-q", rel.commit)
    d.run_block(d.blocks[0])  # the fleet at the working copy's release
    host = next(h for h in d.fleet.machines if rel.host_vars(h)["tree_http_gates"])
    unit = next(f for f in rel.host_vars(host)["tree_files"] if f["restart"])
    srv = d.server(host)
    pid = srv.main_pid(unit["restart"][0])
    srv.run(["sh", "-c", f"echo '# edited by hand' >> {unit['dest']}"])
    out = d.run_block(d.blocks[1])
    recap = _recap(out)
    assert recap[host]["changed"] >= 1, out[-3000:]
    assert all(r["changed"] == 0 for h, r in recap.items() if h != host), recap
    assert "-# edited by hand" in out, out[-3000:]
    assert srv.read(unit["dest"]).endswith(b"# edited by hand\n"), "--check changed the file"
    assert srv.main_pid(unit["restart"][0]) == pid, "--check restarted the unit"


def test_a_host_failing_its_gates_stops_the_delivery(fleet_delivery: Delivery) -> None:
    """Release A over B while the first API host's env file names a wrong Redis password: that host
    restarts into 503 on its readiness path, its gate fails, and no later host is touched."""
    d = fleet_delivery
    if "B" not in d.releases:
        pytest.skip("needs the upgrade")
    a, b = d.releases["A"], d.releases["B"]
    apis = [h for h in d.fleet.machines if a.host_vars(h)["tree_http_gates"]]
    first, second = apis[0], apis[1]
    env_file = a.host_vars(first)["tree_env_file"]
    api_unit = next(u for f in a.host_vars(first)["tree_files"] for u in f["restart"] if u.endswith(".service"))
    srv = d.server(first)
    good = srv.read(env_file)
    srv.run(["sed", "-i", "s/fleet-test-/wrong-password-/", env_file])
    try:
        git(d.repo, "checkout", "-q", a.commit)
        out = d.run_block(d.blocks[0], check=False)
        recap = _recap(out)
        assert recap.get(first, {}).get("failed") == 1, out[-3000:]
        assert "Gate: the HTTP services are ready" in out and "/readyz" in out, out[-3000:]
        unit = next(f for f in b.host_vars(second)["tree_files"] if f["restart"] and f["dest"].endswith(".service"))
        assert d.server(second).read(unit["dest"]) == b.file_text(second, unit["src"]), \
            f"{second} was delivered after {first} failed its gate"
        # the data hosts went before and had nothing to change; the hosts after it were never started
        assert all(recap.get(h, {}).get("changed", 0) == 0 for h in d.fleet.machines if h != first), recap
    finally:
        # the operator's fix: the env file back, and its service restarted (the env file is not part
        # of the tree: a delivery does not restart a service because it changed)
        srv.run(["sh", "-c", f"cat > {env_file}"], input=good.decode())
        srv.systemctl("restart", api_unit)
    d.run_block(d.blocks[0])
    _assert_tree(d, a)
