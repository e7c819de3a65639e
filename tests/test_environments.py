"""Environments: spec/env/<name>.yaml overlays deep-merged onto the base (generator/environments.py);
build/<env>/ per environment, one manifest on top; errors located in the file that wrote the value.

Expected values are read off the fixture's own files (tests/fixtures/specs/staged): the base says
port 9000 and RestartSec 2, staging says port 9100, production says 4 workers, RestartSec 5 and
its own env file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from helpers import SPEC_CASES, line_of, run_cli, tree_bytes

from generator import build_files

STAGED = SPEC_CASES["staged"]


def _unit(files: dict[str, str], env: str) -> str:
    return files[f"{env}/root/etc/systemd/system/shop-web.service"]


def _copy(tmp_path: Path) -> Path:
    spec = tmp_path / "spec"
    shutil.copytree(STAGED, spec)
    return spec


def test_each_environment_gets_its_merged_tree() -> None:
    files = build_files(STAGED)
    staging, production = _unit(files, "staging"), _unit(files, "production")
    assert "--port 9100 --timeout-graceful-shutdown 5" in staging and "RestartSec=2\n" in staging
    assert "--port 9000 --workers 4 " in production and "RestartSec=5\n" in production
    assert "EnvironmentFile=/srv/shop/production.env" in production and "/srv/shop/shop.env" in staging
    assert "    rotate 30\n    maxage 30\n" in files["production/root/etc/logrotate.d/shop-web"]
    assert "# Shop (staging) infrastructure" not in files["production/docs/README.md"]
    assert files["staging/docs/README.md"].startswith("# Shop (staging) infrastructure")
    # the runbook of each environment installs from its own folder
    assert "build/production/root/etc/systemd/system/shop-web.service /etc/systemd/system/shop-web.service" in (
        files["production/docs/README.md"]
    )
    rows = [ln.split("\t")[0] for ln in files["manifest.tsv"].splitlines()[2:]]
    assert rows == [f"{env}/root{path}" for env in ("production", "staging") for path in (
        "/etc/systemd/system/shop-web.service", "/etc/shop-web/logging.json", "/etc/logrotate.d/shop-web",
        "/etc/systemd/system/shop-on-failure@.service", "/etc/tmpfiles.d/shop.conf", "/etc/sysusers.d/shop.conf")]
    assert not [p for p in files if p.startswith("root/")]  # nothing at the top but the manifest


def test_render_check_and_drift_cover_every_environment(tmp_path: Path) -> None:
    spec = _copy(tmp_path)
    build = tmp_path / "build"
    assert run_cli("render", "--spec", spec, "--build", build).returncode == 0
    assert run_cli("check", "--spec", spec, "--build", build).returncode == 0
    overlay = spec / "env/staging.yaml"
    overlay.write_text(overlay.read_text().replace("port: 9100", "port: 9101"))
    result = run_cli("check", "--spec", spec, "--build", build)
    assert result.returncode == 1
    assert f"changed: {build}/staging/root/etc/systemd/system/shop-web.service" in result.stdout
    assert "production/root" not in result.stdout.replace(f"{build}/manifest.tsv", "")


def test_a_mistake_in_an_overlay_is_located_there(tmp_path: Path) -> None:
    spec = _copy(tmp_path)
    overlay = spec / "env/production.yaml"
    text = overlay.read_text().replace("restart: {delay_sec: 5,", "restart: {delay_sec: -5,")
    overlay.write_text(text)
    before = tree_bytes(tmp_path)
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build")
    assert result.returncode == 2
    line = line_of(text, "delay_sec: -5")
    assert f"env/production.yaml:{line}:" in result.stderr and "services.web.restart.delay_sec" in result.stderr
    assert tree_bytes(tmp_path) == before


def test_config_prints_the_merged_spec_without_secret_examples(tmp_path: Path) -> None:
    spec = _copy(tmp_path)
    base = spec / "spec.yaml"
    base.write_text(base.read_text().replace(
        "  logs_dir: /var/log/shop\n",
        "  logs_dir: /var/log/shop\n  env_vars:\n    SHOP_KEY: {description: signs, example: s3cr3t, secret: true}\n"))
    result = run_cli("config", "--spec", spec, "--env", "production")
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)
    assert data["services"]["web"]["runner"] == {
        "kind": "uvicorn", "app": "shop.main:app", "host": "127.0.0.1", "port": 9000, "graceful_shutdown_sec": 5,
        "workers": 4}
    assert data["project"]["env_vars"]["SHOP_KEY"]["example"] == "<secret>" and "s3cr3t" not in result.stdout
    unknown = run_cli("config", "--spec", spec, "--env", "prod")
    assert unknown.returncode == 2 and "no environment 'prod' (known: production, staging)" in unknown.stderr


@pytest.mark.parametrize("name", ["Prod.yaml", "pro duction.yaml"])
def test_an_environment_file_must_have_an_environment_name(tmp_path: Path, name: str) -> None:
    spec = _copy(tmp_path)
    (spec / "env" / name).write_text("project: {title: x}\n")
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build")
    assert result.returncode == 2 and "an environment file is a regular file named <name>.yaml" in result.stderr


FLEET = SPEC_CASES["fleet"]


def test_hosts_get_their_own_trees_and_only_local_dependencies() -> None:
    files = build_files(FLEET)
    trees = sorted({"/".join(p.split("/")[:2]) for p in files if p.count("/") > 2 and "/ansible/" not in p})
    assert trees == ["production/api1", "production/api2", "production/redis1", "production/work1", "staging/app1"]
    # each environment with hosts is delivered by its own playbook, one host_vars file per host tree
    assert sorted(p for p in files if "/ansible/host_vars/" in p) == [
        "production/ansible/host_vars/api1.yml", "production/ansible/host_vars/api2.yml",
        "production/ansible/host_vars/redis1.yml", "production/ansible/host_vars/work1.yml",
        "staging/ansible/host_vars/app1.yml",
    ]
    staging = files["staging/app1/root/etc/systemd/system/shop-api.service"]
    production = files["production/api1/root/etc/systemd/system/shop-api.service"]
    assert "After=redis-server@shop.service\nWants=redis-server@shop.service\n" in staging
    assert "redis-server" not in production  # Redis runs on redis1: systemd on api1 cannot order or start it
    assert "shop-worker" not in " ".join(p for p in files if p.startswith("production/api1/"))
    # the Redis URL example follows where Redis runs (${redis.address})
    assert ("SHOP_REDIS_URL='redis://:<password from /etc/shop/redis-auth.conf on redis1>@10.0.1.31:6379/0'"
            in files["production/work1/env/shop.env.example"])
    assert "SHOP_REDIS_URL=redis://127.0.0.1:6379/0" in files["staging/app1/env/shop.env.example"]  # one host
    assert "build/production/api2/root/etc/systemd/system/shop-api.service" in files["production/api2/docs/README.md"]
    rows = {ln.split("\t")[0].split("/root/")[0] for ln in files["manifest.tsv"].splitlines()[2:]}
    assert rows == {"production/api1", "production/api2", "production/redis1", "production/work1", "staging/app1"}
    overview = [ln for ln in files["production/hosts.md"].splitlines() if ln.startswith("| `")]
    assert overview == [
        "| `api1` | `10.0.1.11` | api | `build/production/api1/` |",
        "| `api2` | `10.0.1.12` | api | `build/production/api2/` |",
        "| `work1` | `10.0.1.21` | worker | `build/production/work1/` |",
        "| `redis1` | `10.0.1.31` | redis | `build/production/redis1/` |",
    ]


@pytest.mark.parametrize(
    ("old", "new", "needle", "message"),
    [
        ("runs: [worker]}", "runs: [worker, cron]}", "runs: [worker, cron]",
         "hosts.work1.runs[1]: unknown service or external unit 'cron'"),
        ("  work1: {address: 10.0.1.21, runs: [worker]}\n", "", "  api1:",
         "hosts: 'worker' runs on no host: add it to the runs of a host (environment production)"),
        ("address: 10.0.1.12,", "address: 10.0.1.11,", "api2:", "hosts.api2.address: 10.0.1.11 is also the address of host 'api1'"),
        ("address: 10.0.1.31,", "address: 127.0.0.1,", "redis1:", "hosts.redis1.address: 127.0.0.1 is a loopback address"),
        ("address: 10.0.1.31,", "address: 8.8.8.8,", "redis1:", "hosts.redis1.address: 8.8.8.8 is not a private host address"),
        ("runs: [api]}\n  work1", "runs: [api, redis]}\n  work1", "redis1:",
         "hosts.redis1.runs[0]: external unit 'redis' already runs on 'api2'"),
        ("  work1: {", "  data: {", "data:", "hosts.data: 'data' is a group of the generated Ansible inventory"),
        ("  work1: {", "  ansible: {", "ansible:", "hosts.ansible: 'ansible' is the folder of the generated playbook"),
    ],
    ids=["unknown-role", "service-on-no-host", "shared-address", "loopback-in-a-fleet", "public-address",
         "redis-on-two-hosts", "host-named-like-a-play-group",
         "host-named-like-the-playbook-folder"],
)
def test_host_mistakes_are_located(tmp_path: Path, old: str, new: str, needle: str, message: str) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(FLEET, spec)
    overlay = spec / "env/production.yaml"
    text = overlay.read_text()
    assert old in text
    overlay.write_text(text.replace(old, new, 1))
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build")
    assert result.returncode == 2 and message in result.stderr, result.stderr
    line = next(ln for ln in result.stderr.splitlines() if message.split(":")[0] in ln)
    where = "env/production.yaml"
    text = (spec / where).read_text()
    assert f"{where}:{line_of(text, needle)}:" in line, (line, where)


def test_config_output_reads_back_as_the_same_spec(tmp_path: Path) -> None:
    """Strings a YAML 1.1 or 1.2 reader would take for numbers, booleans or times stay strings."""
    spec = _copy(tmp_path)
    overlay = spec / "env/production.yaml"
    overlay.write_text(overlay.read_text().replace("project:\n", (
        "project:\n  env_vars:\n"
        '    SHOP_A: {description: "1e3", example: "0o17"}\n'
        '    SHOP_B: {description: "no", example: "1:30"}\n'), 1))
    first = run_cli("config", "--spec", spec, "--env", "production")
    assert first.returncode == 0, first.stderr
    again = tmp_path / "again"
    again.mkdir()
    (again / "spec.yaml").write_text(first.stdout)
    second = run_cli("config", "--spec", again)
    assert second.returncode == 0, second.stderr
    assert yaml.safe_load(second.stdout) == yaml.safe_load(first.stdout)
    assert yaml.safe_load(first.stdout)["project"]["env_vars"]["SHOP_B"] == {"description": "no", "example": "1:30"}


def test_hosts_of_an_environment_replace_the_base_hosts(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    shutil.copytree(FLEET, spec)
    base = spec / "spec.yaml"
    base.write_text(base.read_text() + "\nhosts:\n  solo: {address: 10.9.9.9, runs: [api, worker, redis]}\n")
    files = build_files(spec)
    assert not [p for p in files if "/solo/" in p]  # each environment's hosts are its own
    assert "@10.0.1.31:6379/0" in files["production/api1/env/shop.env.example"]
