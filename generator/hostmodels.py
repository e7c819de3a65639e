"""pydantic model of one server of an environment (``hosts.<name>``) and the rule for its
address: private networks only."""

from __future__ import annotations

import ipaddress
from typing import Annotated

from pydantic import AfterValidator, Field

from .spectypes import Name
from .spectypes import SpecModel as _Model

__all__ = ["PRIVATE_NETWORKS", "Host"]


PRIVATE_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "fc00::/7", "::1/128")
)
"""Where a host's address may lie: RFC 1918, RFC 4193 (ULA) and loopback, nothing else."""


def _private_address(value: str) -> str:
    try:
        if "%" in value:
            raise ValueError(value)
        address = ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address, e.g. 10.0.1.11 (no zone id, no brackets)") from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    if not any(address in net for net in PRIVATE_NETWORKS):
        raise ValueError(
            f"{value} is not a private host address (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, fc00::/7, or "
            "loopback for one host): services talk to each other over the private network only"
        )
    return str(address)


class Host(_Model):
    """One server of an environment: its private address and what it runs."""

    address: Annotated[str, AfterValidator(_private_address)]
    """The address the other hosts reach it at (RFC 1918 or ULA; loopback for a one-host environment)."""
    runs: Annotated[list[Name], Field(min_length=1)]
    """The services and external units (spec names) on this host."""
