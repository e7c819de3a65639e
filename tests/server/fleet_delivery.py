"""The repo spec's production environment on a booted fleet, delivered by its own generated
Ansible playbook with the commands of build/production/hosts.md, verbatim (test_fleet.py and
test_fleet_drills.py share one fleet: the ``fleet_delivery`` fixture of conftest.py).

One machine per host of spec/env/production.yaml, at the spec's own addresses, on a bridge in a
network namespace of the test's own (:mod:`fleet`). Two releases are rendered from the repo
spec into a scratch git repository: A (the spec as it is) and B (the API's unit changed, the
worker healthcheck's timer removed). What is expected comes from the rendered trees (host_vars,
manifests), never from names written here.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import testserver as ts
import yaml
from fleet import Fleet, booted_fleet
from testserver import REPO, STAGING, log

from generator import render_to

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
    b_build: Path
    """Release B's build/, rendered, not yet committed (the upgrade test commits it)."""
    keep: Path
    """Where each release's build/ is copied, by name."""
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


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True).stdout.strip()


def release_b(spec: Path) -> None:
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
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=fleet test", "-c", "user.email=fleet@test.invalid", "commit", "-qm", f"release {name}")
    shutil.copytree(repo / "build", keep / name)
    return Release(git(repo, "rev-parse", "HEAD"), keep / name)


def _bash_blocks(markdown: str, heading: str) -> list[str]:
    section = markdown.split(f"\n## {heading}\n", 1)[1]
    return [b.strip() + "\n" for b in re.findall(r"```bash\n(.*?)```", section, flags=re.S)]


@contextlib.contextmanager
def deliver_fleet(timings: dict[str, float]) -> Iterator[Delivery]:
    """Render releases A and B into a scratch repository, boot one machine per production host
    (env files, the Redis password and the checkout in place, as the operator prepares them);
    yields the :class:`Delivery` with nothing installed yet; tears the fleet down after."""
    work = Path(tempfile.mkdtemp(prefix="zachot-fleet-repo-"))
    try:
        repo, keep = work / "repo", work / "releases"
        repo.mkdir()
        git(repo, "init", "-q")
        spec = repo / "spec"  # a release repository: the spec, the app it checks, the rendered build/
        shutil.copytree(REPO / "spec", spec)
        shutil.copytree(REPO / "app", repo / "app", ignore=shutil.ignore_patterns("__pycache__"))
        releases = {"A": _commit(repo, spec, "A", keep)}
        release_b(spec)
        b_build = work / "b-build"
        render_to(spec, b_build)
        git(repo, "checkout", "-q", "--", "spec")
        git(repo, "checkout", "-q", releases["A"].commit)
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
            yield Delivery(fl, repo, releases, blocks, b_build, keep)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        log("fleet timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))
