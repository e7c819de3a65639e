"""A Redis the tree configures: its spec section, the config file and drop-in it renders, and
the data-loss facts derived from its persistence settings.

An external unit with a ``redis:`` section is an instance of Debian's templated
``redis-server@.service`` (the redis-server package): its ``ExecStart=`` reads
``/etc/redis/redis-%i.conf``, which the tree writes whole, and a drop-in
``redis-server@<instance>.service.d/`` sets the restart and stop settings the spec declares, so
the failure matrix derives from what the server runs and not from what a package happened to
ship. Directives are Redis's own (redis.conf as shipped with Redis 7, "Redis persistence" in
the Redis docs): ``appendonly``, ``appendfsync``, ``save``, ``maxmemory``,
``maxmemory-policy``, ``bind``, ``protected-mode``, ``requirepass``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field

from .spectypes import AbsPath, Text
from .spectypes import SpecModel as _Model

__all__ = ["CREDENTIAL", "Loss", "RedisSettings", "data_loss", "instance", "persistence_facts", "save_line"]

CREDENTIAL = "redis-auth.conf"
"""The credential name the drop-in's ``LoadCredential=`` gives the auth file: Redis reads it as
``/run/credentials/<unit>/redis-auth.conf`` (systemd.exec(5), "Credentials")."""

_SAVE_DEFAULT = [(3600, 1), (300, 100), (60, 10000)]


class SavePoint(_Model):
    """One RDB snapshot rule: save when at least ``changes`` writes happened in ``seconds``."""

    seconds: Annotated[int, Field(ge=1, le=31_536_000)]
    """The window, seconds."""
    changes: Annotated[int, Field(ge=1, le=1_000_000_000)]
    """Writes within the window that trigger a snapshot."""


class RedisSettings(_Model):
    """How the tree configures this Redis (redis.conf directives; Redis docs, "Redis persistence").

    The config is written whole to ``/etc/redis/redis-<instance>.conf`` for Debian's
    ``redis-server@<instance>.service``. ``maxmemory-policy`` is always ``noeviction``: job
    hashes and queue keys must never be evicted (an evicted job is silently dropped), so a full
    Redis refuses writes (OOM error) instead."""

    port: Annotated[int, Field(ge=1, le=65535, strict=True)] = 6379
    """The TCP port (``port``)."""
    appendonly: bool = True
    """AOF on (``appendonly yes``): every acknowledged write is in the append-only file, so a
    crashed or killed Redis loses none of it. Off: only RDB snapshots survive a crash."""
    appendfsync: Literal["always", "everysec", "no"] = "everysec"
    """When the AOF is fsynced: ``always`` (no write lost even on power loss), ``everysec`` (a power
    loss or kernel crash loses up to about a second; a process crash loses nothing), ``no``."""
    save: list[SavePoint] = [SavePoint(seconds=s, changes=c) for s, c in _SAVE_DEFAULT]
    """RDB snapshot points (``save``); empty: no snapshots. Default: Redis 7's 3600 1 300 100 60 10000."""
    maxmemory: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,12}(kb|mb|gb)?$")]
    """The memory cap (``maxmemory``), bytes or e.g. ``512mb``; at it, writes are refused, never evicted."""
    auth_file: AbsPath | None = None
    """A root-only file on the server holding ``requirepass <password>``; the spec names it and never
    holds the password. The drop-in loads it with ``LoadCredential=`` and the config ``include``s it.
    Required when another host reaches this Redis."""
    note: Text | None = None
    """Why these settings, for the docs (optional)."""


def instance(unit: str) -> str:
    """The instance of a templated unit name: ``redis-server@zachot`` -> ``zachot``."""
    return unit.partition("@")[2]


def save_line(r: RedisSettings) -> str:
    """The ``save`` directive's arguments: ``3600 1 300 100`` or ``""`` for none."""
    return " ".join(f"{p.seconds} {p.changes}" for p in r.save) or '""'


Loss = Literal["Yes", "No", "Partial"]


@dataclass(frozen=True)
class LossFact:
    """A derived data-loss claim: the value and the catalog key (``redis_loss.<key>``) that says why."""

    value: Loss
    reason: str


def data_loss(r: RedisSettings, event: str) -> LossFact | None:
    """What a Redis failure ``event`` loses under settings ``r``, or None when the settings do not
    decide it (the spec then says it).

    Rules (Redis docs, "Redis persistence"): Redis writes the AOF buffer to the file (write(2))
    before it replies, so a killed or crashed process (``crash``, ``killed``, ``oom``, and
    ``hang``, which ends in SIGKILL) loses no acknowledged write with AOF on, and everything since
    the last snapshot without it; on a clean stop (``manual_stop``) the AOF is already written,
    and without it Redis saves an RDB snapshot when save points exist (within the stop timeout,
    which :mod:`generator.redisrules` keeps at least ``MIN_STOP_TIMEOUT``), so only a Redis
    without either loses data there. A power loss (``host_down``) also loses what the kernel had
    not yet written to disk: with ``appendfsync always`` nothing acknowledged, with ``everysec``
    about the last second of writes, with ``no`` up to the kernel's own flush (~30 s). At
    ``maxmemory`` (``maxmemory``) the tree's ``maxmemory-policy noeviction`` refuses writes instead
    of evicting keys, so nothing stored is lost (Redis docs, "Key eviction")."""
    if event == "maxmemory":
        return LossFact("No", "noeviction")
    if event in ("crash", "killed", "oom", "hang"):
        if r.appendonly:
            return LossFact("No", "aof_kill")
        return LossFact("Partial", "rdb_kill") if r.save else LossFact("Yes", "none_kill")
    if event == "manual_stop":
        if r.appendonly:
            return LossFact("No", "clean_stop_aof")
        return LossFact("No", "clean_stop_rdb") if r.save else LossFact("Yes", "none_stop")
    if event == "host_down":  # the page cache goes too: only what fsync(2) put on disk is there
        if r.appendonly:
            return LossFact("No", "aof_power_always") if r.appendfsync == "always" else LossFact("Partial", "aof_power")
        return LossFact("Partial", "rdb_kill") if r.save else LossFact("Yes", "none_kill")
    return None


def persistence_facts(r: RedisSettings) -> dict[str, object]:
    """The parameters the ``redis_persistence.*`` catalog sentences quote."""
    return {
        "appendfsync": r.appendfsync,
        "save": save_line(r),
        "maxmemory": r.maxmemory,
    }
