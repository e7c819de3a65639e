"""Lint: every environment variable the app's code reads is declared in project.env_vars.

The app is a real folder of Python files (parsed with ast, never imported); the spec is the
`single_api_en` fixture with `source` pointing at it, rendered through the real CLI.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import REPO, SPEC_CASES, line_of, run_cli

from generator.envscan import env_reads, python_files

APP = '''\
import os
from os import environ

DB = os.getenv("SHOP_DB_URL")
SECRET = os.environ["SHOP_SECRET_KEY"]
DEBUG = environ.get("SHOP_DEBUG", "0")
HOME = os.environ.get("HOME")            # every process has it: not a finding
LOCALE = os.getenv("LC_ALL")             # nor this
NAME = "SHOP_" + "DYNAMIC"               # built at run time: not seen (documented limit)


def _int(env, name, default):
    return int(env.get(name, default))


WORKERS = _int(os.environ, "SHOP_WORKERS", 4)  # seen only through project.env_prefix
'''


def _project(tmp_path: Path, env_prefix: str | None, declared: dict[str, str]) -> tuple[Path, str]:
    (tmp_path / "code" / "shop").mkdir(parents=True)
    (tmp_path / "code" / "shop" / "__init__.py").write_text("")
    (tmp_path / "code" / "shop" / "main.py").write_text(APP)
    (tmp_path / "code" / "shop" / "broken.py").write_text("def (:\n")  # unparsable: skipped
    text = (SPEC_CASES["single_api_en"] / "spec.yaml").read_text()
    extra = f"  source: {tmp_path / 'code'}\n"
    if env_prefix:
        extra += f"  env_prefix: {env_prefix}\n"
    if declared:
        extra += "  env_vars:\n" + "".join(
            f"    {name}: {{description: {desc}, example: x{', secret: true' if 'SECRET' in name else ''}}}\n"
            for name, desc in declared.items()
        )
    text = text.replace("  logs_dir: /var/log/shop\n", "  logs_dir: /var/log/shop\n" + extra)
    spec = tmp_path / "spec"
    spec.mkdir()
    (spec / "spec.yaml").write_text(text)
    return spec, text


def test_reads_are_found_with_their_place(tmp_path: Path) -> None:
    _project(tmp_path, None, {})
    files = python_files([tmp_path / "code" / "shop"])
    found = {r.name: r.line for r in env_reads(files)}
    assert found == {"SHOP_DB_URL": 4, "SHOP_SECRET_KEY": 5, "SHOP_DEBUG": 6}
    with_prefix = {r.name for r in env_reads(files, "SHOP_")}
    assert with_prefix == {"SHOP_DB_URL", "SHOP_SECRET_KEY", "SHOP_DEBUG", "SHOP_WORKERS"}


def test_undeclared_reads_fail_render_located(tmp_path: Path) -> None:
    spec, text = _project(tmp_path, "SHOP_", {"SHOP_DB_URL": "database"})
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    line = line_of(text, "env_vars:")
    errors = [ln for ln in result.stderr.splitlines() if ": project.env_vars: " in ln]
    assert all(ln.startswith(f"spec/spec.yaml:{line}:") for ln in errors), errors
    named = sorted(ln.split(" reads ")[1].split(",")[0] for ln in errors)
    assert named == ["SHOP_DEBUG", "SHOP_SECRET_KEY", "SHOP_WORKERS"]
    assert any("shop/main.py:5 reads SHOP_SECRET_KEY" in ln for ln in errors)
    assert not (tmp_path / "build").exists()


def test_declaring_them_passes(tmp_path: Path) -> None:
    declared = {n: "d" for n in ("SHOP_DB_URL", "SHOP_SECRET_KEY", "SHOP_DEBUG", "SHOP_WORKERS")}
    spec, _ = _project(tmp_path, "SHOP_", declared)
    result = run_cli("render", "--spec", spec, "--build", tmp_path / "build", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zachot_spec_declares_what_the_app_reads(tmp_path: Path) -> None:
    """Dropping one declaration from the repo's spec is caught at the line that reads it."""
    spec = tmp_path / "spec"
    shutil.copytree(REPO / "spec", spec)
    project = (spec / "project.yaml").read_text().replace("source: ..", f"source: {REPO}")
    start = project.index("    ZACHOT_SSE_KEEPALIVE_SECONDS:")
    end = project.index("    ZACHOT_USER:")
    (spec / "project.yaml").write_text(project[:start] + project[end:])
    result = run_cli("check", "--spec", spec, cwd=tmp_path)
    settings = (REPO / "app" / "settings.py").read_text()
    assert result.returncode == 2
    line = line_of(settings, '"ZACHOT_SSE_KEEPALIVE_SECONDS"')
    assert f"app/settings.py:{line} reads ZACHOT_SSE_KEEPALIVE_SECONDS" in result.stderr, result.stderr
