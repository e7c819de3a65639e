"""Failure-matrix rows of the whole server (reboot, disk full), a missing env file and a Redis at
maxmemory: their derived auto-actions, and the spec mistakes about them that are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers import REPO, edited_spec

from generator import SpecError, build, build_tree, load_spec
from generator.models import Restart
from generator.semantics import auto_action, boot_order, server_action

POLICIES = ["no", "on-success", "on-failure", "on-abnormal", "on-watchdog", "on-abort", "always"]
# src/core/service.c service_shall_restart(): Result=resources is neither success nor an exit code
RESTART_ON_RESOURCES = {"on-failure", "on-abnormal", "always"}


def test_boot_order_puts_each_unit_after_its_after_units_and_ignores_others() -> None:
    after = {"redis.service": [], "api.service": ["redis.service", "network-online.target"],
             "worker.service": ["redis.service"], "late.service": ["api.service"], "hc.timer": []}
    assert boot_order(after) == [["hc.timer", "redis.service"], ["api.service", "worker.service"], ["late.service"]]


def test_boot_order_of_a_cycle_ends_with_the_units_left() -> None:
    assert boot_order({"a": ["b"], "b": ["a"], "c": []}) == [["c"], ["a", "b"]]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_missing_env_file_restarts_as_result_resources_does(policy: str) -> None:
    r = Restart(policy=policy, delay_sec=1, start_limit_interval_sec=10, start_limit_burst=5)  # type: ignore[arg-type]
    key = auto_action("env_file_missing", r).key
    assert key == ("resources_then_limit" if policy in RESTART_ON_RESOURCES else "resources_no_restart")
    slow = Restart(policy=policy, delay_sec=5, start_limit_interval_sec=10, start_limit_burst=5)  # type: ignore[arg-type]
    if policy in RESTART_ON_RESOURCES:  # 5 starts 5 s apart never fit in 10 s
        assert auto_action("env_file_missing", slow).key == "resources_forever"


def test_server_events_are_not_events_of_one_unit_and_vice_versa() -> None:
    r = Restart(policy="always", delay_sec=1, start_limit_interval_sec=10, start_limit_burst=5)
    with pytest.raises(ValueError):
        auto_action("reboot", r)
    with pytest.raises(ValueError):
        server_action("crash", {}, None, [])
    assert server_action("disk_full", {}, None, ["/a", "/b"]).params == {"paths": "/a, /b"}
    assert server_action("reboot", {"x.service": []}, None, []).key == "boot_plain"


def test_every_new_auto_action_has_a_sentence_in_both_catalogs() -> None:
    keys = {"resources_then_limit", "resources_forever", "resources_no_restart", "unseen", "boot", "boot_plain",
            "disk_full", "bad_deploy"}
    for lang in ("ru", "en"):
        catalog = yaml.safe_load((REPO / "templates" / "i18n" / f"{lang}.yaml").read_text())
        assert keys <= set(catalog["auto_action"]), lang
        assert "noeviction" in catalog["redis_loss"], lang


def test_the_repo_spec_reboot_row_starts_redis_before_the_services_that_order_after_it() -> None:
    p = build(REPO / "spec", env="staging").plan
    (row,) = [sv for sv in p.scenarios["server"] if sv.event == "reboot"]
    assert row.action is not None and row.action.key == "boot"
    layers = [layer.split(", ") for layer in str(row.action.params["order"]).split(" → ")]
    where = {u: i for i, layer in enumerate(layers) for u in layer}
    redis = p.units["redis"].unit_file
    assert set(where) == {u for u in p.enable_units if u.endswith(".service")}
    for sv in p.services:
        assert where[redis] < where[sv.unit_file], (sv.unit_file, layers)
    assert row.action.params["tmpfiles"] == "/etc/tmpfiles.d/zachot.conf"
    (full,) = [sv for sv in p.scenarios["server"] if sv.event == "disk_full"]
    assert full.action is not None and full.action.params["paths"] == f"{p.spec.project.logs_dir}, /var/lib/redis"
    (mem,) = [sv for sv in p.scenarios["redis"] if sv.event == "maxmemory"]
    assert mem.loss is not None and (mem.loss.value, mem.loss.reason) == ("No", "noeviction")


ROW = """    - component: {component}
      failure: Проверка
      event: {event}
      symptoms: s
      detection: d
      manual_action: m
      data_loss: "No"
      comment: c
{extra}"""


def _problems(tmp_path: Path, component: str, event: str, extra: str = "", comps: str = "") -> list[str]:
    spec, _ = edited_spec(
        tmp_path, "worker_split_group",
        ("    consumer: {title: Consumer, unit: consumer}\n",
         "    consumer: {title: Consumer, unit: consumer}\n" + comps),
        ("  scenarios:\n", "  scenarios:\n" + ROW.format(component=component, event=event, extra=extra)),
    )
    with pytest.raises(SpecError) as info:
        load_spec(spec)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("component", "event", "extra", "message"),
    [
        ("consumer", "reboot", "", "'reboot' is an event of the whole server, not of 'consumer'"),
        ("broker", "maxmemory", "", "'maxmemory' needs a Redis the tree configures"),
        ("broker", "env_file_missing", "", "'env_file_missing' needs a generated service"),
        ("host", "crash", "", "has no unit, so no systemd event of a unit"),
        ("host", "disk_full", "      auto_action: сам\n", "'disk_full' is an event of the server: the auto-action is derived"),
    ],
)
def test_misplaced_events_are_refused_with_the_row_located(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, component: str, event: str, extra: str, message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    problems = _problems(tmp_path, component, event, extra, "    host: {title: Host}\n")
    assert any(message in p and "failure_matrix.scenarios[0]" in p and "spec/spec.yaml:" in p for p in problems), problems


def test_a_rollback_clears_the_start_limit_the_bad_version_used_up() -> None:
    """The bad-deploy row rolls back with the deploy block (README) or the playbook. A version that
    crash-looped into its start limit refuses `systemctl restart`/`start` ("Start request repeated
    too quickly", systemd.unit(5) StartLimitIntervalSec=) until the interval passes: both must
    `reset-failed` the units before they start them."""
    files = build_tree(REPO / "spec").files
    readme = files["staging/docs/README.md"]
    block = readme.split("## Обновление: новая версия", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    restart = next(i for i, ln in enumerate(block) if ln.startswith("sudo systemctl restart zachot-api"))
    assert block[restart - 1] == block[restart].replace(" restart ", " reset-failed ", 1), block
    tasks = files["production/ansible/tasks/tree.yml"]
    assert tasks.index("cmd: systemctl reset-failed") < tasks.index("- name: Start the units that are not running")


def test_disk_full_names_the_journal_for_services_that_log_there(tmp_path: Path) -> None:
    """A spec whose service logs to the journal has no logs folder: the disk-full row must name
    where its output really goes (journald's /var/log/journal), never an empty list."""
    spec, _ = edited_spec(
        tmp_path, "journal_api",
        ("    web: {title: Web, unit: web}\n", "    web: {title: Web, unit: web}\n    host: {title: Host}\n"),
        ("  scenarios:\n", "  scenarios:\n" + ROW.format(component="host", event="disk_full", extra="")),
    )
    (row,) = [sv for sv in build(spec).plan.scenarios["host"] if sv.event == "disk_full"]
    assert row.action is not None and row.action.params == {"paths": "/var/log/journal"}
