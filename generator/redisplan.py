"""The planned view of each Redis the tree configures: its instance, files, listen addresses and
persistence facts, shared by its config, its drop-in, the facts and the docs (generator/redisconf.py
has the settings and the data-loss rules)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .hosts import across_hosts, placement
from .models import ExternalUnit, Spec
from .redisconf import CREDENTIAL, RedisSettings, instance, save_line

__all__ = ["DEFAULT_PORT", "RedisView", "redis_views"]

DEFAULT_PORT = 6379
"""Redis's own default port (redis-cli's too)."""
DATA_DIR = "/var/lib/redis"
"""Where Debian's redis-server@.service lets Redis write (ReadWritePaths=-/var/lib/redis); each
instance keeps its own file names there, as the unit file's own comment advises."""


@dataclass(frozen=True)
class RedisView:
    """One configured Redis: ``name`` (spec name), ``unit_file``, the config and drop-in paths on the
    server, what it binds, and where its data lives."""

    name: str
    ext: ExternalUnit
    r: RedisSettings
    unit_file: str
    instance: str
    conf_path: str
    dropin_path: str
    bind: list[str]
    """``bind`` arguments: the host's private address when other hosts reach it, then 127.0.0.1
    (redis-cli and local clients; no ``-::1``, whose optional-bind prefix Redis 6.0 does not know)."""
    remote: bool
    rdb_path: str
    aof_name: str
    save: str
    credential: str | None
    """Where Redis reads the auth file systemd loads (LoadCredential=), or None without auth."""

    @property
    def auth_script(self) -> str | None:
        """The shell script that writes the auth file, root-only (0600, its folder made 0700 if
        missing), with a random 64-hex-digit password; None without ``auth_file``. Run it as root
        and only when the file does not exist (:attr:`make_auth`; Ansible's ``creates:``)."""
        if self.r.auth_file is None:
            return None
        path = shlex.quote(self.r.auth_file)
        folder = shlex.quote(self.r.auth_file.rsplit("/", 1)[0] or "/")
        password = "\"$(od -An -N32 -tx1 /dev/urandom | tr -d ' \\n')\""
        return f"umask 077; mkdir -p {folder}; printf 'requirepass %s\\n' {password} > {path}"

    @property
    def make_auth(self) -> str | None:
        """The install step that creates the auth file once (:attr:`auth_script` under sudo, skipped
        when the file exists); None without ``auth_file``."""
        if self.auth_script is None or self.r.auth_file is None:
            return None
        path = shlex.quote(self.r.auth_file)
        return f"sudo test -e {path} || sudo sh -c {shlex.quote(self.auth_script)}"


def redis_views(spec: Spec) -> list[RedisView]:
    """A :class:`RedisView` per external unit with ``redis`` set, in spec order. Input: a validated
    spec (or a host's slice: ``hosts`` is the environment's). Raises nothing."""
    where = placement(spec)
    remote = across_hosts(spec)
    out = []
    for name, ext in spec.external_units.items():
        if ext.redis is None:
            continue
        inst = instance(ext.unit)
        unit_file = f"{ext.unit}.service"
        bind = ["127.0.0.1"]
        if remote and name in where:
            bind.insert(0, spec.hosts[where[name][0]].address)
        out.append(RedisView(
            name=name,
            ext=ext,
            r=ext.redis,
            unit_file=unit_file,
            instance=inst,
            conf_path=f"/etc/redis/redis-{inst}.conf",
            dropin_path=f"/etc/systemd/system/{unit_file}.d/{spec.project.name}.conf",
            bind=bind,
            remote=remote,
            rdb_path=f"{DATA_DIR}/dump-{inst}.rdb",
            aof_name=f"appendonly-{inst}.aof",
            save=save_line(ext.redis),
            credential=f"/run/credentials/{unit_file}/{CREDENTIAL}" if ext.redis.auth_file else None,
        ))  # fmt: skip
    return out
