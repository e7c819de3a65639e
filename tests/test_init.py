"""`zachot-gen init` writes a first spec that renders, checks and validates as written; without
failure_matrix/backup the docs carry the derived rows, marked "not yet described".

Expected auto-actions are read off systemd.service(5) for the init spec's Restart=on-failure,
RestartSec=2 (restarts after crashes and signals, not after a clean exit), not off a run.
"""

from __future__ import annotations

from pathlib import Path

from helpers import run_cli, tree_bytes


def test_init_spec_renders_checks_and_validates(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    result = run_cli("init", "--name", "acme", "--title", 'Acme "shop"', "--spec", spec)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in spec.iterdir()) == [".schema.json", "spec.yaml"]
    assert (spec / "spec.yaml").read_text().startswith("# yaml-language-server: $schema=.schema.json\n")
    build = tmp_path / "build"
    rendered = run_cli("render", "--spec", spec, "--build", build)
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr  # no warning either
    assert run_cli("check", "--spec", spec, "--build", build).returncode == 0
    validated = run_cli("validate", "--spec", spec)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    unit = (build / "root/etc/systemd/system/acme-api.service").read_text()
    assert 'Description=Acme "shop" API (uvicorn)' in unit and "StandardOutput=journal" in unit


def test_without_matrix_and_backup_the_docs_carry_derived_rows(tmp_path: Path) -> None:
    spec, build = tmp_path / "spec", tmp_path / "build"
    assert run_cli("init", "--name", "acme", "--spec", spec).returncode == 0
    assert run_cli("render", "--spec", spec, "--build", build).returncode == 0
    matrix = (build / "docs/failure_matrix.md").read_text()
    rows = [ln for ln in matrix.splitlines() if ln.startswith("| API ")]
    assert [r.split(" | ")[0] for r in rows] == [
        "| API exits with an error (exit code ≠ 0)",
        "| API is killed (SIGKILL)",
        "| API is killed by the OOM killer",
        "| API exits by itself with code 0",
        "| API hangs: the process lives but does not answer",
        "| API fails at every start",
    ]
    assert all(r.count("_not yet described_") == 4 for r in rows)
    assert "Restarted after 2 s" in rows[0] and "Not restarted" in rows[3]
    backup = (build / "docs/backup_recovery.md").read_text()
    assert "spec/ has no backup section yet" in backup and "`/etc/acme/acme.env`" in backup


def test_init_refuses_a_folder_with_files_and_a_refused_name_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "keep.yaml").write_text("project: {}\n")
    before = tree_bytes(tmp_path)
    result = run_cli("init", "--name", "acme", "--spec", spec)
    assert result.returncode == 2 and "already holds files" in result.stderr
    assert tree_bytes(tmp_path) == before
    other = tmp_path / "other"
    result = run_cli("init", "--name", "pam", "--spec", other)
    assert result.returncode == 2
    assert f"{other}/spec.yaml:6:9: project.name: 'pam' is a name the base system or a package uses" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec"]  # no staging folder left behind


def test_init_refuses_what_is_not_a_folder_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("hi\n")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for spec, message in ((tmp_path / "afile" / "sub", "cannot create"), (tmp_path / "dangling", "not a folder"),
                          (tmp_path / "afile", "not a folder")):
        result = run_cli("init", "--name", "shop", "--spec", spec)
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr
    result = run_cli("init", "--name", "postfix", "--spec", tmp_path / "p")
    assert result.returncode == 2 and "'postfix' is a name the base system or a package uses" in result.stderr
