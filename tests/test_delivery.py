"""build/<env>/ansible/: the inventory and host_vars say what each host's tree holds, and the
playbook is what Ansible itself accepts (ansible-playbook --syntax-check, ansible-lint).

The fleet tests (tests/server/test_fleet.py) run this playbook against booted machines.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import SPEC_CASES

from generator import SpecError, build_tree
from generator.delivery import _yaml
from generator.docmodels import HOST_EVENTS
from generator.redisconf import LossFact, RedisSettings, data_loss

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _ansible(tool: str) -> str:
    path = shutil.which(tool, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if path is None:
        pytest.fail(f"{tool} is missing: `pip install -e '.[test]'` installs it (ansible-core, ansible-lint)")
    return path


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return build_tree(REPO / "spec").files


def _manifest_rows(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines(keepends=True) if not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t"))


def test_host_vars_list_the_manifest_of_each_host(files: dict[str, str]) -> None:
    inventory = yaml.safe_load(files["production/ansible/inventory.yml"])["all"]
    assert set(inventory["hosts"]) == {"api1", "api2", "worker1", "worker2", "redis1"}
    for host in inventory["hosts"]:
        hv = yaml.safe_load(files[f"production/ansible/host_vars/{host}.yml"])
        rows = _manifest_rows(files[f"production/{host}/manifest.tsv"])
        assert [(f["src"], f["dest"], f["owner"], f["group"], f["mode"]) for f in hv["tree_files"]] == [
            (r["build_path"], r["server_path"], r["owner"], r["group"], r["mode"]) for r in rows
        ]
        for f in hv["tree_files"]:
            assert f"production/{host}/{f['src']}" in files  # the playbook copies it from the host's tree
        assert hv["tree_dir"] == f"../{host}"


def test_each_file_restarts_the_unit_it_configures(files: dict[str, str]) -> None:
    api = yaml.safe_load(files["production/ansible/host_vars/api1.yml"])
    restart = {f["dest"]: f["restart"] for f in api["tree_files"]}
    assert restart["/etc/systemd/system/zachot-api.service"] == ["zachot-api.service"]
    assert restart["/etc/logrotate.d/zachot-api"] == []  # logrotate reads it at its next run
    assert restart["/etc/tmpfiles.d/zachot.conf"] == []  # applied by systemd-tmpfiles --create
    assert api["tree_http_gates"] == [{"unit": "zachot-api.service", "url": "http://127.0.0.1:8000/readyz"}]
    worker = yaml.safe_load(files["production/ansible/host_vars/worker1.yml"])
    restart = {f["dest"]: f["restart"] for f in worker["tree_files"]}
    assert restart["/etc/systemd/system/zachot-worker-healthcheck.timer"] == ["zachot-worker-healthcheck.timer"]
    assert restart["/etc/systemd/system/zachot-worker-healthcheck.service"] == []  # a oneshot: next run uses it
    assert worker["tree_check_gates"] == ["zachot-worker-healthcheck.service"]
    assert worker["tree_units"] == ["zachot-worker.service", "zachot-worker-healthcheck.timer"]
    redis = yaml.safe_load(files["production/ansible/host_vars/redis1.yml"])
    assert {u for f in redis["tree_files"] for u in f["restart"]} == {"redis-server@zachot.service",
                                                                     "systemd-sysctl.service"}
    # a changed sysctl.d file is applied by restarting the unit that applies them all
    restart = {f["dest"]: f["restart"] for f in redis["tree_files"]}
    assert restart["/etc/sysctl.d/zachot-redis.conf"] == ["systemd-sysctl.service"]
    assert redis["tree_secrets"][0]["path"] == "/etc/zachot/redis-auth.conf"
    assert redis["tree_env_file"] is None and redis["tree_sysusers"] is None
    assert redis["tree_own_dirs"] == ["/etc/systemd/system/redis-server@zachot.service.d"]
    # the uvicorn logging config's own folder goes when a release no longer has the file
    api = yaml.safe_load(files["production/ansible/host_vars/api1.yml"])
    assert api["tree_own_dirs"] == ["/etc/zachot-api"]


def test_inventory_puts_data_hosts_first_and_groups_by_what_runs(files: dict[str, str]) -> None:
    inv = yaml.safe_load(files["production/ansible/inventory.yml"])["all"]
    assert inv["hosts"]["redis1"] == {"ansible_host": "10.20.0.31"}
    assert list(inv["children"]["data"]["hosts"]) == ["redis1"]
    assert list(inv["children"]["services"]["hosts"]) == ["api1", "api2", "worker1", "worker2"]
    assert list(inv["children"]["runs_worker"]["hosts"]) == ["worker1", "worker2"]
    site = yaml.safe_load(files["production/ansible/site.yml"])
    assert [(p["hosts"], p["serial"]) for p in site] == [("data", 1), ("services", 1)]


def test_a_spec_without_hosts_has_no_playbook() -> None:
    assert not any("/ansible/" in p or p.startswith("ansible/") for p in build_tree(SPEC_CASES["single_api_en"]).files)


def test_spec_text_is_never_evaluated_by_ansible(tmp_path: Path) -> None:
    """A value with Jinja in it is written !unsafe: Ansible prints it as text, it never runs it."""
    hostile = "{{ lookup('pipe', 'echo PWNED') }}{{ 6 * 7 }}"
    (tmp_path / "vars.yml").write_text(_yaml({"tree_value": hostile, "tree_list": [hostile]}, "# test\n"))
    (tmp_path / "play.yml").write_text(
        "- hosts: localhost\n  gather_facts: false\n  vars_files: [vars.yml]\n  tasks:\n"
        "    - ansible.builtin.debug: {msg: \"{{ tree_value }}|{{ tree_list[0] }}\"}\n"
    )
    r = subprocess.run([_ansible("ansible-playbook"), "-i", "localhost,", "-c", "local", "play.yml"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ANSIBLE_NOCOLOR": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PWNED" not in r.stdout.replace(hostile, "") and "42" not in r.stdout, r.stdout
    assert hostile in r.stdout


def test_playbook_passes_syntax_check_and_ansible_lint(tmp_path: Path) -> None:
    tree = tmp_path / "build"
    for path, text in build_tree(REPO / "spec").files.items():
        if path.startswith("production/"):
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)
    folder = tree / "production/ansible"
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "NO_COLOR": "1", "HOME": str(tmp_path)}
    r = subprocess.run([_ansible("ansible-playbook"), "site.yml", "--syntax-check"], cwd=folder,
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([_ansible("ansible-lint"), "--offline", "--profile", "production"], cwd=folder,
                       capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("settings", "value", "reason"),
    [
        ({"appendfsync": "always"}, "No", "aof_power_always"),
        ({"appendfsync": "everysec"}, "Partial", "aof_power"),
        ({"appendfsync": "no"}, "Partial", "aof_power"),
        ({"appendonly": False}, "Partial", "rdb_kill"),
        ({"appendonly": False, "save": []}, "Yes", "none_kill"),
    ],
)
def test_a_power_cut_loses_what_fsync_had_not_written(settings: dict[str, object], value: str, reason: str) -> None:
    """Redis persistence docs: only fsync'd data survives a power loss, unlike a killed process."""
    r = RedisSettings.model_validate({"maxmemory": "64mb", **settings})
    assert data_loss(r, "host_down") == LossFact(value, reason)
    if settings.get("appendonly", True):
        assert data_loss(r, "killed") == LossFact("No", "aof_kill")  # the page cache survives a kill


def test_host_rows_only_where_there_are_several_hosts(files: dict[str, str]) -> None:
    tree = build_tree(REPO / "spec")

    def host_rows(folder: str) -> set[tuple[str, str]]:
        return {(sv.sc.component, str(sv.event)) for views in tree.builds[folder].plan.scenarios.values()
                for sv in views if sv.sc is not None and sv.event in HOST_EVENTS}
    assert host_rows("staging") == set()  # one server: its loss is the backup runbook's, not a row
    assert host_rows("production/worker1") == {("worker", "host_down"), ("worker", "partition")}
    assert host_rows("production/redis1") == {("redis", "host_down")}
    row = next(ln for ln in files["production/redis1/docs/failure_matrix.md"].splitlines()
               if "Хост Redis выключился" in ln)
    assert "**Частично**" in row and "appendfsync everysec" in row  # derived, not written in the spec


def _fleet_copy(tmp_path: Path, overlay: str, env: str = "production") -> Path:
    spec = tmp_path / "spec"
    shutil.copytree(SPEC_CASES["fleet"], spec)
    (spec / f"env/{env}.yaml").write_text(overlay)
    return spec


def test_a_host_that_runs_redis_among_services_is_delivered_first(tmp_path: Path) -> None:
    """Every other host's gates need Redis: its host goes in the first play, whatever else it runs."""
    spec = _fleet_copy(tmp_path, "hosts:\n  api2: {address: 10.0.1.12, runs: [api]}\n"
                                 "  work1: {address: 10.0.1.21, runs: [worker]}\n"
                                 "  api1: {address: 10.0.1.11, runs: [api, redis]}\n")
    inv = yaml.safe_load(build_tree(spec).files["production/ansible/inventory.yml"])["all"]["children"]
    assert list(inv["data"]["hosts"]) == ["api1"] and list(inv["services"]["hosts"]) == ["api2", "work1"]


def test_a_loopback_host_is_reached_by_its_name_not_by_ssh_to_the_controller(tmp_path: Path) -> None:
    spec = _fleet_copy(tmp_path, "hosts:\n  app1: {address: 127.0.0.1, runs: [api, worker, redis]}\n", "staging")
    inv = yaml.safe_load(build_tree(spec).files["staging/ansible/inventory.yml"])["all"]
    assert inv["hosts"] == {"app1": None}


@pytest.mark.parametrize(("bind", "message"), [
    ("10.0.1.11", "10.0.1.11 is not the address of host 'api2', where 'api' runs too"),
    (":::", "must be an IPv4 or IPv6 address"),
])
def test_a_bind_address_other_hosts_cannot_have_is_refused(tmp_path: Path, bind: str, message: str) -> None:
    spec = _fleet_copy(tmp_path, (SPEC_CASES["fleet"] / "env/production.yaml").read_text())
    text = (spec / "spec.yaml").read_text()
    assert "host: 127.0.0.1, port: 8000" in text
    (spec / "spec.yaml").write_text(text.replace("host: 127.0.0.1, port: 8000", f'host: "{bind}", port: 8000'))
    with pytest.raises(SpecError) as exc:
        build_tree(spec)
    assert message in str(exc.value) and "spec.yaml:32:" in str(exc.value), str(exc.value)


def test_a_service_whose_dependency_runs_elsewhere_waits_for_the_network(files: dict[str, str]) -> None:
    """Issue 15: with Redis on another host, After=redis-server@… orders nothing on the API's host;
    at boot the service then started before the network. It orders after network-online.target
    (systemd.special(7)) where a dependency is remote, and keeps the local order on one host."""
    for host, unit in (("api1", "zachot-api"), ("worker2", "zachot-worker")):
        text = files[f"production/{host}/root/etc/systemd/system/{unit}.service"]
        assert "\nAfter=network-online.target\n" in text and "\nWants=network-online.target\n" in text, text
    staging = files["staging/root/etc/systemd/system/zachot-api.service"]
    assert "\nAfter=redis-server@zachot.service\n" in staging and "network-online" not in staging
