"""Deliver the repo spec's production environment to a fleet of booted machines with its own
generated Ansible playbook, by the commands of build/production/hosts.md, verbatim.

One machine per host of spec/env/production.yaml, at the spec's own addresses, on a bridge in a
network namespace of the test's own (:mod:`fleet`). Two releases are rendered from the repo
spec into a scratch git repository: A (the spec as it is) and B (the API's unit changed, the
worker healthcheck's timer removed). The tests run in order: install A, upgrade to B (only the
API restarts; the timer is stopped, disabled and deleted), roll back to A (its files exactly),
and a hand edit reported by ``--check --diff``. What is expected comes from the rendered trees
(host_vars, manifests), never from names written here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import testserver as ts
import yaml
from fleet import Fleet, booted_fleet
from testserver import REPO, STAGING, log

from generator import render_to

pytestmark = pytest.mark.server

ENV = "production"
ANSIBLE = f"build/{ENV}/ansible"
PASSWORD = "fleet-test-" + "0123456789abcdef" * 2


@dataclass
class Release:
    """A rendered release in the scratch repository: its commit and its trees."""

    commit: str
    build: Path
    """A copy of that release's build/ (the repository's working copy moves on)."""

    def host_vars(self, host: str) -> dict[str, Any]:
        return dict(yaml.safe_load((self.build / ENV / "ansible/host_vars" / f"{host}.yml").read_text()))

    def file_text(self, host: str, src: str) -> bytes:
        return (self.build / ENV / host / src).read_bytes()


@dataclass
class Delivery:
    fleet: Fleet
    repo: Path
    releases: dict[str, Release]
    blocks: list[str]
    """The ```bash blocks of build/production/hosts.md: install, preview/drift, rollback."""
    transcripts: list[str] = field(default_factory=list)

    def run_block(self, block: str, fill: dict[str, str] | None = None, check: bool = True) -> str:
        """Run a hosts.md block in one shell (``set -e``), from the repository root, as an operator
        pasting it would; ``fill`` gives the value the operator types into a ``NAME=<...>`` line."""
        script = block
        for name, value in (fill or {}).items():
            script, n = re.subn(rf"^{name}=.*$", f"{name}={value}", script, count=1, flags=re.M)
            assert n == 1, f"the block has no {name}= line to fill in:\n{block}"
        script = "set -e\n" + script
        t0 = time.monotonic()
        r = self.fleet.sh(script, cwd=self.repo, timeout=1200)
        out = r.stdout + r.stderr
        self.transcripts.append(f"$ {block}\n{out}")
        log(f"hosts.md block ({block.splitlines()[-1][:60]}...) exited {r.returncode} in {time.monotonic() - t0:.0f} s")
        if check and r.returncode != 0:
            raise AssertionError(f"hosts.md block failed ({r.returncode}):\n{block}\n{out[-6000:]}")
        return out

    def server(self, host: str) -> ts.Server:
        return self.fleet.machines[host].server


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def _release_b(spec: Path) -> None:
    """Release B: one unit changed (an env var of the API), one removed (the worker healthcheck's timer)."""
    services = spec / "services.yaml"
    text = services.read_text()
    anchor = '      PYTHONUNBUFFERED: "1"\n'
    assert text.count(anchor) >= 1, "spec/services.yaml no longer has the API's PYTHONUNBUFFERED line"
    services.write_text(text.replace(anchor, anchor + '      ZACHOT_RELEASE: "b"\n', 1))
    hc = spec / "healthchecks.yaml"
    text = hc.read_text()
    assert "    every_sec: 300\n" in text
    hc.write_text(text.replace("    every_sec: 300\n", "", 1))


def _commit(repo: Path, spec: Path, name: str, keep: Path) -> Release:
    shutil.rmtree(repo / "build", ignore_errors=True)
    render_to(spec, repo / "build")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=fleet test", "-c", "user.email=fleet@test.invalid", "commit", "-qm", f"release {name}")
    shutil.copytree(repo / "build", keep / name)
    return Release(_git(repo, "rev-parse", "HEAD"), keep / name)


def _bash_blocks(markdown: str, heading: str) -> list[str]:
    section = markdown.split(f"\n## {heading}\n", 1)[1]
    return [b.strip() + "\n" for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


@pytest.fixture(scope="module")
def delivery(pytestconfig: pytest.Config) -> Iterator[Delivery]:
    timings: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="zachot-fleet-repo-"))
    try:
        repo, keep = work / "repo", work / "releases"
        repo.mkdir()
        _git(repo, "init", "-q")
        spec = repo / "spec"  # a release repository: the spec, the app it checks, the rendered build/
        shutil.copytree(REPO / "spec", spec)
        shutil.copytree(REPO / "app", repo / "app", ignore=shutil.ignore_patterns("__pycache__"))
        releases = {"A": _commit(repo, spec, "A", keep)}
        _release_b(spec)
        b_build = work / "b-build"
        render_to(spec, b_build)
        _git(repo, "checkout", "-q", "--", "spec")
        _git(repo, "checkout", "-q", releases["A"].commit)
        hosts_md = (repo / f"build/{ENV}/hosts.md").read_text()
        catalog_title = re.search(r"^## (.+)$", hosts_md.split("```bash")[0], flags=re.M)
        assert catalog_title, "build/production/hosts.md has no delivery section"
        blocks = _bash_blocks(hosts_md, catalog_title.group(1))
        assert len(blocks) == 3 and all("ansible-playbook site.yml" in b for b in blocks), blocks
        inventory = yaml.safe_load((repo / ANSIBLE / "inventory.yml").read_text())["all"]
        hosts = {h: v["ansible_host"] for h, v in inventory["hosts"].items()}
        runbook = ts.parse_runbook((REPO / STAGING / "docs/README.md").read_text())
        files: dict[str, dict[str, tuple[str, int]]] = {}
        checkout: dict[str, str] = {}
        for host in hosts:
            hv = releases["A"].host_vars(host)
            files[host] = {}
            if hv["tree_env_file"]:
                host_rb = ts.parse_runbook((repo / f"build/{ENV}/{host}/docs/README.md").read_text())
                lines = [f"{n}={re.sub(r'<[^>]*>', PASSWORD, ex)}" for n, ex in host_rb.required_env]
                files[host][hv["tree_env_file"]] = ("".join(ln + "\n" for ln in lines), 0o600)
                checkout[host] = "/opt/zachot/repo"
            for secret in hv["tree_secrets"]:  # the operator's password, shared with the env files
                files[host][secret["path"]] = (f"requirepass {PASSWORD}\n", 0o600)
        with booted_fleet(hosts, files, checkout, runbook, timings) as fl:
            d = Delivery(fl, repo, releases, blocks)
            d.b_build = b_build  # type: ignore[attr-defined]
            d.keep = keep  # type: ignore[attr-defined]
            yield d
    finally:
        shutil.rmtree(work, ignore_errors=True)
        log("fleet timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


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


def test_install(delivery: Delivery) -> None:
    d = delivery
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


def test_upgrade_restarts_only_changed_units_and_removes_dropped_ones(delivery: Delivery) -> None:
    d = delivery
    a = d.releases["A"]
    before = _pids(d, a)
    _git(d.repo, "checkout", "-q", "-B", "main")
    shutil.rmtree(d.repo / "build")
    shutil.copytree(d.b_build, d.repo / "build")  # type: ignore[attr-defined]
    _release_b(d.repo / "spec")
    _git(d.repo, "add", "-A")
    _git(d.repo, "-c", "user.name=fleet test", "-c", "user.email=fleet@test.invalid", "commit", "-qm", "release B")
    b = Release(_git(d.repo, "rev-parse", "HEAD"), d.keep / "B")  # type: ignore[attr-defined]
    shutil.copytree(d.repo / "build", b.build)
    d.releases["B"] = b
    d.run_block(d.blocks[0])
    _assert_tree(d, b)
    after = _pids(d, b)
    changed = {(h, u) for h in d.fleet.machines for f in b.host_vars(h)["tree_files"] for u in f["restart"]
               if h in d.fleet.machines and (a.file_text(h, f["src"]) if (a.build / ENV / h / f["src"]).exists() else b"")
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


def test_rollback_restores_the_previous_release(delivery: Delivery) -> None:
    d = delivery
    if "B" not in d.releases:
        pytest.skip("needs the upgrade")
    d.run_block(d.blocks[2], fill={"PREVIOUS": d.releases["A"].commit})
    _assert_tree(d, d.releases["A"])
    assert _git(d.repo, "worktree", "list").count("\n") == 0, "the rollback worktree was left behind"


def test_drift_is_reported_by_check_diff(delivery: Delivery) -> None:
    d = delivery
    rel = d.releases["B"] if "B" in d.releases else d.releases["A"]
    _git(d.repo, "checkout", "-q", rel.commit)
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
