"""Rules for Redis units: what the tree must configure and what the failure matrix may claim.

- A Redis the tree configures (``redis:``) is an instance of Debian's ``redis-server@.service``
  with a finite stop timeout (a Redis that ignores SIGTERM, e.g. busy in a script, is then
  killed instead of waited for forever; systemd.service(5) ``TimeoutStopSec=``) of at least
  :data:`MIN_STOP_TIMEOUT` seconds, so a clean stop can save.
- ``persistence`` prose is derived for it, so the spec does not write it; otherwise it is required.
- A Redis reachable from another host (an environment of several hosts) must be configured by
  the tree and require a password: Debian's packaged config binds 127.0.0.1 only, and Redis's
  protected mode refuses remote clients without a password (redis.conf, "protected-mode").
- Two listeners may not share a port on one host (a configured Redis, another one, a service).
- A failure-matrix row about a configured Redis takes its ``data_loss`` from the settings; a
  written value that contradicts them is refused. Every other row must say it.
"""

from __future__ import annotations

from collections.abc import Iterator

from .hosts import across_hosts, placement
from .models import Spec
from .redisconf import data_loss
from .target import systemd_version

__all__ = ["redis_problems"]

Found = tuple[tuple[str | int, ...], str]
MIN_STOP_TIMEOUT = 10
"""Fewest seconds a configured Redis gets to stop (save, fsync) before systemd's SIGKILL: Redis's
own ``shutdown-timeout`` default (redis.conf, Redis 7)."""
LOAD_CREDENTIAL = 247
"""The systemd version that added LoadCredential= (systemd NEWS, v247)."""
TEMPLATE = "redis-server@"
"""Debian's templated Redis unit (package redis-server): reads /etc/redis/redis-%i.conf."""


def is_redis(unit: str) -> bool:
    """Whether a unit name is Debian's Redis, packaged (``redis-server``) or an instance of it."""
    return unit == "redis-server" or unit.startswith(TEMPLATE)


def _units(spec: Spec) -> Iterator[Found]:
    remote = across_hosts(spec)
    where = placement(spec)
    for name, ext in spec.external_units.items():
        base = ("external_units", name)
        r = ext.redis
        if r is None:
            if ext.persistence is None:
                yield (*base,), "say what survives a restart of it (persistence), or configure it (redis:)"
            if remote and is_redis(ext.unit) and name in where:
                yield (*base,), (
                    f"Redis runs on host '{where[name][0]}' and the other hosts must reach it, but Debian's packaged "
                    "config binds 127.0.0.1 only: configure it with 'redis:' (unit redis-server@<instance>, "
                    "auth_file) so it binds the private address and requires a password"
                )
            continue
        if not ext.unit.startswith(TEMPLATE) or ext.unit == TEMPLATE.rstrip("@"):
            yield (*base, "unit"), (
                f"a Redis the tree configures is an instance of Debian's redis-server@.service: write "
                f"'{TEMPLATE}{spec.project.name}'"
            )
        if ext.persistence is not None:
            yield (*base, "persistence"), "derived from 'redis:' for a Redis the tree configures; remove it"
        if ext.stop_timeout_sec is None or ext.stop_timeout_sec == "infinity":
            yield (*base, "stop_timeout_sec"), (
                "give a finite stop timeout in seconds (e.g. 60): a Redis that ignores SIGTERM (busy in a script) "
                "would otherwise be waited for forever"
            )
        elif ext.stop_timeout_sec < MIN_STOP_TIMEOUT:
            yield (*base, "stop_timeout_sec"), (
                f"{ext.stop_timeout_sec:g} s leaves Redis no time to save on a clean stop; give at least "
                f"{MIN_STOP_TIMEOUT} s (Redis's own shutdown-timeout is 10 s)"
            )
        if r.auth_file is not None and systemd_version(spec) < LOAD_CREDENTIAL:
            yield (*base, "redis", "auth_file"), (
                f"the password is handed to Redis with LoadCredential=, which needs systemd {LOAD_CREDENTIAL} "
                f"(this target has {systemd_version(spec)})"
            )
        if remote and r.auth_file is None:
            yield (*base, "redis", "auth_file"), (
                f"Redis is reached from other hosts of this environment ({len(spec.hosts)} hosts): name the root-only "
                "file holding 'requirepass <password>' (auth_file)"
            )


def _rows(spec: Spec) -> Iterator[Found]:
    fm = spec.failure_matrix
    if fm is None:
        return
    for i, sc in enumerate(fm.scenarios):
        comp = fm.components.get(sc.component)
        ext = spec.external_units.get(comp.unit) if comp and comp.unit else None
        derived = data_loss(ext.redis, sc.event) if ext and ext.redis and sc.event else None
        where = ("failure_matrix", "scenarios", i, "data_loss")
        if derived is None and sc.data_loss is None:
            yield where[:-1], "say whether this failure loses data (data_loss: Yes, No or Partial)"
        elif comp and derived is not None and sc.data_loss is not None and sc.data_loss != derived.value:
            yield where, (
                f"{sc.data_loss} contradicts the Redis settings of '{comp.unit}' (they give {derived.value} for "
                f"event '{sc.event}'); remove data_loss to derive it"
            )


def _ports(spec: Spec) -> Iterator[Found]:
    """Two listeners on one port of one host: a configured Redis against another Redis or a
    service's runner (each Redis binds 127.0.0.1, so any clash is real)."""
    hosts = {h: set(spec.hosts[h].runs) for h in spec.hosts} or {"": set(spec.services) | set(spec.external_units)}
    for on in hosts.values():
        taken: dict[int, str] = {}
        for name, svc in spec.services.items():
            port = getattr(svc.runner, "port", None)
            if name in on and isinstance(port, int):
                taken.setdefault(port, f"service '{name}'")
        for name, ext in spec.external_units.items():
            if name not in on or ext.redis is None:
                continue
            port = ext.redis.port
            if port in taken:
                yield ("external_units", name, "redis", "port"), (
                    f"port {port} is also {taken[port]}'s on the same host; give this Redis its own port"
                )
            taken.setdefault(port, f"Redis '{name}'")


def redis_problems(spec: Spec) -> Iterator[Found]:
    """Every broken rule of the module doc, as ``(path, message)`` pairs. Never raises."""
    yield from _units(spec)
    yield from _ports(spec)
    yield from _rows(spec)
