"""Per-service users, groups and supplementary groups; the logs folder's owner and logrotate's
`su` derived from it; log targets (two files, one file, the journal).

Spec cases edit the `shared_logs` fixture (two service users sharing a root-owned,
group-writable log folder) and go through the real CLI; the expected line of an error is
found in the edited text, so a message located elsewhere fails. Expected lines were written
from sysusers.d(5), tmpfiles.d(5), logrotate.conf(5) and systemd.exec(5), not copied from a run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import SPEC_CASES, edited_spec, line_of, run_cli

from generator import build_files
from generator.loader import load_spec
from generator.planner import plan
from generator.renderer import render
from generator.syscheck import check_system_files


def _spec_with(tmp_path: Path, *edits: tuple[str, str]) -> tuple[Path, str]:
    return edited_spec(tmp_path, "shared_logs", *edits)


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def test_each_service_user_is_declared_with_its_groups_and_memberships() -> None:
    files = build_files(SPEC_CASES["shared_logs"])
    assert _lines(files["root/etc/sysusers.d/shop.conf"]) == [
        "g shop -",
        "g shoplogs -",
        'u shop-api -:shop "Shop API" /srv/shop /usr/sbin/nologin',
        'u shop-worker -:shop "Shop Worker" /srv/shop /usr/sbin/nologin',
        "m shop-api shoplogs",
        "m shop-worker shoplogs",
    ]
    api = files["root/etc/systemd/system/shop-api.service"].splitlines()
    assert ["User=shop-api", "Group=shop", "SupplementaryGroups=shoplogs"] == [
        ln for ln in api if ln.split("=")[0] in ("User", "Group", "SupplementaryGroups")
    ]


def test_root_owned_group_writable_folder_rotates_as_root_and_its_group() -> None:
    files = build_files(SPEC_CASES["shared_logs"])
    assert "d /var/log/shop 2770 root shoplogs -" in files["root/etc/tmpfiles.d/shop.conf"]
    for unit in ("shop-api", "shop-worker"):
        assert "    su root shoplogs\n" in files[f"root/etc/logrotate.d/{unit}"]
    # the default stays: the folder and su are the project's user and group
    zachot = build_files(SPEC_CASES["zachot"])
    assert "    su zachot zachot\n" in zachot["staging/root/etc/logrotate.d/zachot-api"]


def test_one_file_for_both_streams_and_the_journal() -> None:
    shop = build_files(SPEC_CASES["shared_logs"])
    api = shop["root/etc/systemd/system/shop-api.service"]
    assert "StandardOutput=append:/var/log/shop/api.log\nStandardError=inherit\n" in api
    assert shop["root/etc/logrotate.d/shop-api"].splitlines()[1] == "/var/log/shop/api.log {"
    assert "api.err" not in shop["root/etc/tmpfiles.d/shop.conf"]
    notes = build_files(SPEC_CASES["journal_api"])
    unit = notes["root/etc/systemd/system/notes-web.service"]
    assert "StandardOutput=journal\nStandardError=journal\n" in unit
    assert "ReadWritePaths=" not in unit
    assert not [p for p in notes if "logrotate" in p]
    assert [ln for ln in _lines(notes["root/etc/tmpfiles.d/notes.conf"]) if ln.startswith("d ")] == [
        "d /etc/notes 0750 root notes -"
    ]
    assert "journalctl -u notes-web.service --since today" in notes["docs/README.md"]


SPEC_ERRORS = [
    (
        "two-primary-groups",
        [("    user: shop-worker\n", "    user: shop-api\n    group: shoplogs\n")],
        "    group: shoplogs",
        "services.worker.group: user 'shop-api' already has the primary group 'shop'",
    ),
    (
        "policy-owner-nobody-creates",
        [("    owner: shop-worker\n", "    owner: backup\n")],
        "    owner: backup",
        "log_policies.worker.owner: 'backup' is neither root nor a user a service runs as",
    ),
    (
        "privileged-supplementary-group",
        [("    supplementary_groups: [shoplogs]\n", "    supplementary_groups: [docker]\n")],
        "supplementary_groups: [docker]",
        "services.api.supplementary_groups[0]: 'docker' is an account of the base system",
    ),
    (
        "stderr-names-the-stdout-file",
        [("logs: {policy: api, stdout: api.log}", "logs: {policy: api, stdout: api.log, stderr: api.log}")],
        "stderr: api.log",
        "leave 'stderr' out to send both streams to the stdout file (StandardError=inherit)",
    ),
    (
        "journal-with-a-file",
        [("logs: {policy: api, stdout: api.log}", "logs: {target: journal, stdout: api.log}"),
         ("manual_action: Read ${api.stdout}", "manual_action: none")],
        "target: journal, stdout",
        "services.api.logs.stdout: target: journal keeps the output in the journal",
    ),
    (
        "files-without-policy",
        [("logs: {policy: api, stdout: api.log}", "logs: {stdout: api.log}")],
        "logs: {stdout: api.log}",
        "target: files needs 'policy'",
    ),
    (
        "supplementary-group-of-nothing",
        [("    supplementary_groups: [shoplogs]\n", "    supplementary_groups: [shoplogs, input]\n")],
        "supplementary_groups: [shoplogs, input]",
        "services.api.supplementary_groups[1]: 'input' is an account of the base system",
    ),
    (
        "supplementary-group-owning-nothing",
        [("    supplementary_groups: [shoplogs]\n", "    supplementary_groups: [shoplogs, shopcache]\n")],
        "supplementary_groups: [shoplogs, shopcache]",
        "services.api.supplementary_groups[1]: 'shopcache' owns nothing this spec creates",
    ),
    (
        "world-writable-logs-folder",
        [('  logs_dir_mode: "2770"\n', '  logs_dir_mode: "1777"\n')],
        '  logs_dir_mode: "1777"',
        "project.logs_dir_mode: 1777 lets every local user write there",
    ),
    (
        "env-file-readable-by-all",
        [("  env_file: /etc/shop/shop.env\n", '  env_file: /etc/shop/shop.env\n  env_file_mode: "0644"\n')],
        '  env_file_mode: "0644"',
        "project.env_file_mode: 0644 lets every local user read the secrets",
    ),
    (
        "log-named-like-an-archive",
        [("logs: {policy: worker, stdout: worker.log, stderr: worker.err}",
          "logs: {policy: worker, stdout: api.log-20000101, stderr: worker.err}")],
        "stdout: api.log-20000101",
        "services.worker.logs.stdout: 'api.log-20000101' has the form of an archive of 'api.log'",
    ),
    (
        "default-logs-owner-runs-nothing",
        [("  logs_dir_owner: root\n  logs_dir_group: shoplogs\n", "")],
        "  user: shop",
        "project.user: 'shop' (the logs folder's owner unless logs_dir_owner says otherwise) is neither root",
    ),
    (
        "another-services-policy",
        [("logs: {policy: api, stdout: api.log}", "logs: {policy: worker, stdout: api.log}")],
        "logs: {policy: worker, stdout: api.log}",
        "services.api.logs.policy: log policy 'worker' makes the files owned by 'shop-worker', but the service "
        "runs as 'shop-api'",
    ),
    (
        "secret-looking-variable",
        [("    SHOP_PAGE_SIZE:", "    SHOP_DB_PASSWORD: {description: db, example: hunter2, required: true}\n"
          "    SHOP_PAGE_SIZE:")],
        "SHOP_DB_PASSWORD",
        "project.env_vars.SHOP_DB_PASSWORD.secret: 'SHOP_DB_PASSWORD' looks like a secret: say secret: true",
    ),
    (
        "credentials-in-an-example",
        [('example: "redis://127.0.0.1:6379/0"', 'example: "redis://shop:hunter2@127.0.0.1:6379/0"')],
        "redis://shop:hunter2@",
        "project.env_vars.SHOP_REDIS_URL.example: the example URL carries credentials",
    ),
    (
        "su-cannot-truncate",
        # the folder now belongs to shop-api: su shop-api shoplogs cannot truncate a 0640 worker file
        [("  logs_dir_owner: root\n", "  logs_dir_owner: shop-api\n"), ('    mode: "0660"\n    frequency: daily\n    rotate: 7\n    maxage: 7\n    compress: true\n    delaycompress: true\n    dateext: true\n    copytruncate: true\n\nfailure', '    mode: "0640"\n    frequency: daily\n    rotate: 7\n    maxage: 7\n    compress: true\n    delaycompress: true\n    dateext: true\n    copytruncate: true\n\nfailure')],  # noqa: E501
        '    mode: "0640"',
        "logrotate rotates as `su shop-api shoplogs` (the logs folder's owner and group), but cannot read and "
        "truncate /var/log/shop/worker.log",
    ),
]


@pytest.mark.parametrize(("edits", "needle", "message"), [c[1:] for c in SPEC_ERRORS], ids=[c[0] for c in SPEC_ERRORS])
def test_spec_mistakes_are_located(tmp_path: Path, edits: list[tuple[str, str]], needle: str, message: str) -> None:
    spec, text = _spec_with(tmp_path, *edits)
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build")
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr, result.stderr
    line = next(ln for ln in result.stderr.splitlines() if message.split(":")[0] in ln or message in ln)
    assert line.startswith(f"{spec / 'spec.yaml'}:{line_of(text, needle)}:"), (line, line_of(text, needle))
    assert not (tmp_path / "build").exists()


def test_sysusers_without_a_membership_is_caught_by_the_tool(tmp_path: Path) -> None:
    """An `m` line lost from the rendered file: systemd-sysusers runs fine, the group lacks the user."""
    p = plan(load_spec(SPEC_CASES["shared_logs"]))
    files = render(p)
    path = "root/etc/sysusers.d/shop.conf"
    assert "m shop-worker shoplogs\n" in files[path]
    files[path] = files[path].replace("m shop-worker shoplogs\n", "")
    _, found = check_system_files(p, files, tmp_path)
    assert f"{path}: sysusers result: user 'shop-worker' is not a member of group 'shoplogs'" in map(str, found)


def test_env_example_sets_required_values_and_leaves_secrets_and_defaults_commented() -> None:
    files = build_files(SPEC_CASES["shared_logs"])
    lines = [ln for ln in files["env/shop.env.example"].splitlines() if ln and not ln.startswith("# ")]
    assert lines == [
        "SHOP_REDIS_URL=redis://127.0.0.1:6379/0",
        "#SHOP_SIGNING_KEY=",
        "#SHOP_PAGE_SIZE=50",
    ]
    assert "install -m 0640 -o root -g shop build/env/shop.env.example /etc/shop/shop.env" in files["docs/README.md"]
    assert "env/shop.env.example" not in files["manifest.tsv"]  # never copied over the real file


def test_env_example_comment_cannot_start_an_assignment(tmp_path: Path) -> None:
    spec, _ = _spec_with(
        tmp_path, ('description: "items per page (default 50)"', 'description: "items per page\\nSHOP_ADMIN=1"')
    )
    text = build_files(spec)["env/shop.env.example"]
    assert "# items per page SHOP_ADMIN=1\n" in text
    assert not [ln for ln in text.splitlines() if ln.startswith("SHOP_ADMIN")]


def test_rotate_count_without_maxage_on_a_notifempty_policy_is_a_located_warning(tmp_path: Path) -> None:
    spec = SPEC_CASES["single_api_en"]
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    text = (spec / "spec.yaml").read_text()
    assert (
        f"tests/fixtures/specs/single_api_en/spec.yaml:{line_of(text, '  plain:')}:3: log_policies.plain: warning: rotate 7 keeps 7 "
        "rotations, not 7 days: with notifempty a quiet log is not rotated while empty"
    ) in result.stderr
    # with maxage the policy says how old an archive may get: no warning
    fixed = tmp_path / "fixed"
    fixed.mkdir()
    (fixed / "spec.yaml").write_text(text.replace("    rotate: 7\n", "    rotate: 7\n    maxage: 7\n"))
    result = run_cli("render", "--spec", fixed, "--build", tmp_path / "c")
    assert result.returncode == 0 and "warning: rotate" not in result.stderr, result.stderr
    assert "    maxage 7\n" in (tmp_path / "c/root/etc/logrotate.d/shop-web").read_text()


def test_a_writable_path_is_created_for_the_user_that_writes_it(tmp_path: Path) -> None:
    spec, _ = _spec_with(tmp_path, ("    logs: {policy: worker, stdout: worker.log, stderr: worker.err}\n",
                                    "    logs: {policy: worker, stdout: worker.log, stderr: worker.err}\n"
                                    "    hardening: {writable_paths: [/var/lib/shop]}\n"))
    files = build_files(spec)
    assert "d /var/lib/shop 0750 shop-worker shop -\n" in files["root/etc/tmpfiles.d/shop.conf"]
    assert "ReadWritePaths=/var/lib/shop" in files["root/etc/systemd/system/shop-worker.service"]
