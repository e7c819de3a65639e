"""Synthetic specs of any size for the benchmarks: N uvicorn services behind one Redis, logs to
files under one policy, the shape of a real spec (project, services, external unit, log policy).

``write_spec(folder, n)`` writes ``folder/project.yaml``, ``redis.yaml``, ``logging.yaml`` and the
services in ``services.d/NNN.yaml``, :data:`PER_FILE` a file;
every service is a distinct unit (``bench-svc<i>``) on its own port. No ``project.source``: lint
does not look for the app's modules, which do not exist.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["PER_FILE", "write_spec"]

PER_FILE = 1000
"""Services per file of ``services.d/`` (generator/yamlsource.py ``SPLIT_SECTIONS``)."""

PROJECT = """project:
  name: bench
  title: Bench
  language: en
  user: bench
  group: bench
  root: /srv/bench
  venv: /srv/bench/venv
  env_file: /etc/bench/bench.env
  repo: /srv/bench/app
  repo_url: https://git.example.com/bench
  logs_dir: /var/log/bench
  env_vars:
    BENCH_REDIS_URL:
      description: Redis of every service
      example: "redis://${redis.address}:${redis.port}/0"
      required: true
"""

LOGGING = """log_policies:
  app:
    owner: bench
    group: bench
    mode: "0640"
    frequency: daily
    rotate: 7
    maxage: 7
    compress: true
    delaycompress: true
    dateext: true
    copytruncate: true
"""

REDIS = """external_units:
  redis:
    title: Redis
    unit: redis-server@bench
    package: redis-server
    provided_by: Debian package redis-server, configured by the tree
    restart: {policy: always, delay_sec: 1, start_limit_interval_sec: 60, start_limit_burst: 10}
    stop_timeout_sec: 60
    redis: {appendonly: true, appendfsync: everysec, maxmemory: 1gb}
"""

SERVICE = """  svc{i}:
    title: Service {i}
    description: bench service {i} (uvicorn)
    unit: bench-svc{i}
    runner: {{kind: uvicorn, app: "svc{i}.main:app", host: 127.0.0.1, port: {port}, graceful_shutdown_sec: 10}}
    restart: {{policy: on-failure, delay_sec: 5, start_limit_interval_sec: 120, start_limit_burst: 10}}
    stop: {{timeout_sec: 30, kill_mode: mixed}}
    after: [redis]
    wants: [redis]
    logs: {{policy: app, stdout: svc{i}.log, stderr: svc{i}.err}}
"""


def write_spec(folder: Path, n: int) -> Path:
    """Write a spec of ``n`` services (1 <= n <= 50000) into ``folder`` (created); returns it."""
    if not 1 <= n <= 50_000:
        raise ValueError(f"n must be between 1 and 50000, not {n}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "project.yaml").write_text(PROJECT)
    (folder / "logging.yaml").write_text(LOGGING)
    (folder / "redis.yaml").write_text(REDIS)
    parts = folder / "services.d"  # 1000 services a file: each stays far below the 1 MiB cap
    parts.mkdir(exist_ok=True)
    for start in range(0, n, PER_FILE):
        body = "".join(SERVICE.format(i=i, port=10000 + i).replace("  ", "", 1).replace("\n  ", "\n")
                       for i in range(start, min(n, start + PER_FILE)))
        (parts / f"{start // PER_FILE:03d}.yaml").write_text(body)
    return folder
