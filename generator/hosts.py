"""Hosts and roles: which services and external units run on which host of an environment,
and the slice of the spec each host installs.

``hosts`` (usually written in an environment's overlay) names each host, its private address
and what it ``runs``. A host's slice (:func:`host_spec`) keeps its own services, their
healthchecks and log policies, the external units it runs, and the failure-matrix rows about
them (a row's healthcheck signal only where that healthcheck runs); ``After=``/``Wants=``/
``Requires=`` keep only units on the same host, because systemd orders and starts units of its
own machine only (systemd.unit(5)): a ``Wants=redis-server.service`` on a host without Redis
would start nothing there, or a Redis nobody configured. A service that loses such a dependency
orders after ``network-online.target`` instead (``network_online``): at boot it reaches the other
host only once the network is up (systemd.special(7), "network-online.target"). A spec without ``hosts`` is one host
running everything, as before.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from .layout import ANSIBLE_DIR, ANSIBLE_GROUPS
from .models import FailureMatrix, Service, Spec

__all__ = ["across_hosts", "host_problems", "host_spec", "placement"]

Found = tuple[tuple[str | int, ...], str]


def across_hosts(spec: Spec) -> bool:
    """Whether units of this environment talk over the private network: it has several hosts.
    With one host (or none) everything is local and listens on loopback."""
    return len(spec.hosts) > 1


def placement(spec: Spec) -> dict[str, list[str]]:
    """Each service and external unit (spec name) -> the hosts that run it, in ``hosts`` order."""
    out: dict[str, list[str]] = {}
    for host, h in spec.hosts.items():
        for name in h.runs:
            out.setdefault(name, []).append(host)
    return out


def host_problems(spec: Spec) -> Iterator[Found]:
    """Every ``hosts`` mistake: an unknown or repeated name in ``runs``, a shared address, a unit
    that runs nowhere, a loopback address where another host would need to reach it."""
    if not spec.hosts:
        return
    known = set(spec.services) | set(spec.external_units)
    seen: dict[str, str] = {}
    for host, h in spec.hosts.items():
        if host in ANSIBLE_GROUPS:  # runs_<name> groups need no check: a host name has no '_'
            yield ("hosts", host), (
                f"'{host}' is a group of the generated Ansible inventory ({', '.join(ANSIBLE_GROUPS)}): "
                f"name the host otherwise, e.g. '{host}1'"
            )
        elif host == ANSIBLE_DIR:
            yield ("hosts", host), (
                f"'{host}' is the folder of the generated playbook (build/<env>/{ANSIBLE_DIR}/): "
                f"name the host otherwise, e.g. '{host}1'"
            )
        for i, name in enumerate(h.runs):
            if name not in known:
                listed = ", ".join(sorted(known))
                yield ("hosts", host, "runs", i), f"unknown service or external unit '{name}' (known: {listed})"
            elif name in h.runs[:i]:
                yield ("hosts", host, "runs", i), f"'{name}' is listed twice"
        if h.address in seen:
            yield ("hosts", host, "address"), f"{h.address} is also the address of host '{seen[h.address]}'"
        seen.setdefault(h.address, host)
        if across_hosts(spec) and ipaddress.ip_address(h.address).is_loopback:
            yield ("hosts", host, "address"), (
                f"{h.address} is a loopback address: with {len(spec.hosts)} hosts the others could not reach "
                "this one; give its private address"
            )
    placed = placement(spec)
    for name in [*spec.services, *spec.external_units]:
        if name not in placed:
            yield ("hosts",), f"'{name}' runs on no host: add it to the runs of a host"
    yield from _bind_problems(spec, placed)
    for name in spec.external_units:
        if len(placed.get(name, [])) > 1:
            second = placed[name][1]
            yield ("hosts", second, "runs", spec.hosts[second].runs.index(name)), (
                f"external unit '{name}' already runs on '{placed[name][0]}': an external unit is one instance, "
                f"and ${{{name}.address}} must name one host"
            )


def _matrix(fm: FailureMatrix | None, spec: Spec, on: set[str]) -> FailureMatrix | None:
    if fm is None:
        return None
    comps = {c: comp for c, comp in fm.components.items() if comp.unit is None or comp.unit in on}
    if not any(comp.unit is not None for comp in comps.values()):
        return None  # nothing of this host is described: the derived rows serve
    rows = []
    for sc in fm.scenarios:
        comp = comps.get(sc.component)
        if comp is None:
            continue
        if sc.healthcheck is not None and sc.healthcheck.check not in spec.healthchecks:
            sc = sc.model_copy(update={"healthcheck": None})  # that healthcheck runs on another host
        if sc.event == "dependency_stopped" and comp.unit in spec.services and not spec.services[comp.unit].requires:
            continue  # what it requires runs on another host: systemd does not stop it here
        rows.append(sc)
    if not rows:
        return None
    principles = [pr for pr in fm.principles if pr.component in comps]
    return fm.model_copy(update={"components": comps, "scenarios": rows, "principles": principles})


def host_spec(spec: Spec, host: str) -> Spec:
    """The slice of ``spec`` host ``host`` installs (module doc). Input: a validated spec with
    that host. Output: a :class:`Spec` (not re-validated; every name in it is the spec's own)."""
    on = set(spec.hosts[host].runs)

    def local(names: list[str]) -> list[str]:
        return [n for n in names if n in on]

    def remote(s: Service) -> bool:
        return s.network_online or any(n not in on for n in [*s.after, *s.wants, *s.requires])

    services = {
        n: s.model_copy(update={"after": local(s.after), "wants": local(s.wants), "requires": local(s.requires),
                                "network_online": remote(s)})
        for n, s in spec.services.items() if n in on
    }  # fmt: skip
    healthchecks = {n: h for n, h in spec.healthchecks.items() if h.service in services}
    used = {s.logs.policy for s in services.values()}
    sliced = spec.model_copy(update={
        "services": services,
        "external_units": {n: e for n, e in spec.external_units.items() if n in on},
        "healthchecks": healthchecks,
        "log_policies": {n: p for n, p in spec.log_policies.items() if n in used},
    })  # fmt: skip
    return sliced.model_copy(update={"failure_matrix": _matrix(spec.failure_matrix, sliced, on)})


def _bind_problems(spec: Spec, placed: dict[str, list[str]]) -> Iterator[Found]:
    """A service bound to one specific address that is not the address of every host it runs on:
    on the others it cannot bind (EADDRNOTAVAIL), and their readiness gate would ask the wrong host."""
    for name, svc in spec.services.items():
        bind = getattr(svc.runner, "host", None)
        if bind is None or bind == "localhost":
            continue
        address = ipaddress.ip_address(bind)
        if address.is_loopback or address.is_unspecified:
            continue
        wrong = [h for h in placed.get(name, []) if ipaddress.ip_address(spec.hosts[h].address) != address]
        if wrong:
            yield ("services", name, "runner", "host"), (
                f"{bind} is not the address of host '{wrong[0]}', where '{name}' runs too: bind 127.0.0.1 "
                "(reached on the host), 0.0.0.0 (every address of each host) or run it on one host"
            )
