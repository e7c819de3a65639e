"""Runner kinds (uvicorn with workers, gunicorn, dramatiq, a plain command): the command line
each renders, and the stop semantics the lint holds each to (generator/runners.py).

Spec cases edit the `gunicorn_command` fixture and go through the real CLI; the expected line
is found in the edited text, so a message located elsewhere fails.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO, SPEC_CASES, assert_render_refuses_at, edited_spec

from generator import build, build_files


def _spec_with(tmp_path: Path, old: str, new: str) -> tuple[Path, str]:
    return edited_spec(tmp_path, "gunicorn_command", (old, new))


def _exec_start(files: dict[str, str], unit: str) -> str:
    line = next(ln for ln in files[f"root/etc/systemd/system/{unit}.service"].splitlines()
                if ln.startswith("ExecStart="))
    return line.removeprefix("ExecStart=")


def test_each_kind_renders_its_own_command_line() -> None:
    files = build_files(SPEC_CASES["gunicorn_command"])
    assert _exec_start(files, "ledger-api") == (
        "/srv/ledger/venv/bin/gunicorn --bind 127.0.0.1:8080 --workers 4 --worker-class "
        "uvicorn.workers.UvicornWorker --graceful-timeout 25 --timeout 60 ledger.asgi:application"
    )
    # a plain name runs from the venv's bin/
    assert _exec_start(files, "ledger-tasks") == (
        "/srv/ledger/venv/bin/celery -A ledger.tasks worker --loglevel INFO --concurrency 4"
    )
    # an absolute program as is; every argument literal: % and $ doubled, quotes escaped
    assert _exec_start(files, "ledger-sync") == (
        '/usr/local/bin/ledger-sync --every "*/5 * * * *" --note "100%% of $$ACCOUNT; \\"quoted\\""'
    )


def test_uvicorn_workers_and_gunicorn_ipv6_bind(tmp_path: Path) -> None:
    spec, _ = _spec_with(
        tmp_path,
        "      kind: gunicorn\n      app: ledger.asgi:application\n      host: 127.0.0.1\n",
        "      kind: gunicorn\n      app: ledger.asgi:application\n      host: '::1'\n",
    )
    assert '--bind "[::1]:8080" ' in _exec_start(build_files(spec), "ledger-api")
    zachot = (REPO / "spec" / "services.yaml").read_text()
    one = _exec_start(build(REPO / "spec", env="staging").files, "zachot-api")
    assert "--workers" not in one  # the default of 1 adds nothing: today's unit unchanged
    copy = tmp_path / "zachot"
    shutil.copytree(REPO / "spec", copy)
    (copy / "project.yaml").write_text((copy / "project.yaml").read_text().replace("source: ..", f"source: {REPO}"))
    (copy / "services.yaml").write_text(zachot.replace("      port: 8000\n", "      port: 8000\n      workers: 4\n"))
    assert "--port 8000 --workers 4 --limit-concurrency 4000 --timeout-graceful-shutdown 20" in _exec_start(build(copy, env="staging").files, "zachot-api")


# (case id, old, new, marker on the reported line, dotted path, message regex)
CASES = [
    ("gunicorn-quick-shutdown-signal", "    stop: {timeout_sec: 35, kill_mode: mixed}",
     "    stop: {timeout_sec: 35, kill_mode: mixed, signal: SIGQUIT}", "signal: SIGQUIT", "services.api.stop.signal",
     r"gunicorn does not shut down gracefully on SIGQUIT \(it does on SIGTERM\)"),
    ("gunicorn-stop-timeout", "    stop: {timeout_sec: 35, kill_mode: mixed}", "    stop: {timeout_sec: 25, kill_mode: mixed}",
     "stop: {timeout_sec: 25", "services.api.stop.timeout_sec",
     r"TimeoutStopSec=25 is not longer than gunicorn --graceful-timeout \(25 s\)"),
    ("command-stop-timeout", "    stop: {timeout_sec: 150}", "    stop: {timeout_sec: 100}", "timeout_sec: 100",
     "services.tasks.stop.timeout_sec", r"not longer than the command's shutdown_timeout_sec \(120 s\)"),
    ("command-relative-program", "argv: [celery,", "argv: [./celery,", "argv: [./celery", "services.tasks.runner.argv",
     r"argv\[0\] \(the program\) is an absolute path"),
    ("command-option-as-program", "argv: [celery,", "argv: [--celery,", "argv: [--celery",
     "services.tasks.runner.argv", r"argv\[0\] \(the program\)"),
    ("command-unsafe-path", "argv: [/usr/local/bin/ledger-sync,", "argv: [/usr/local/bin/../sbin/x,",
     "argv: [/usr/local/bin/../sbin/x", "services.sync.runner.argv", r"argv\[0\] \(the program\): must be normalised"),
    ("command-empty", "argv: [celery, -A, ledger.tasks, worker, --loglevel, INFO, --concurrency, \"4\"]", "argv: []",
     "argv: []", "services.tasks.runner.argv", r"at least 1 item"),
    ("command-empty-word", "--loglevel, INFO,", "--loglevel, '',", "--loglevel, ''",
     "services.tasks.runner.argv[5]", r"at least 1 character"),
    ("command-newline-word", "--loglevel, INFO,", "--loglevel, \"INFO\\nExecStartPre=/bin/sh\",", "--loglevel, \"INFO",
     "services.tasks.runner.argv[5]", r"one line without control characters"),
    ("command-unknown-field", "      shutdown_timeout_sec: 120\n", "      shutdown_timeout_sec: 120\n      shell: true\n",
     "shell: true", "services.tasks.runner.shell", r"unknown field 'shell'"),
    ("gunicorn-needs-workers", "      workers: 4\n", "", "runner:", "services.api.runner.workers",
     r"missing required field"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_runner_mistakes_are_located(tmp_path: Path, case: tuple[str, str, str, str, str, str]) -> None:
    _, old, new, marker, path, message = case
    spec, text = _spec_with(tmp_path, old, new)
    assert_render_refuses_at(tmp_path, spec, text, marker, path, message)
