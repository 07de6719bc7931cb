"""Loopback clients that stand for a given source address.

A test that asks "is web/0's SSH reachable from 198.51.100.66?" has to connect from some
local address that the NSGs see as 198.51.100.66. The runtime's source map already presents
local clients as other addresses (``--source LOCAL=PRESENTED``); here a test's source gets a
loopback address of its own in 127.250.0.0/16, one per source, added to the running map.
"""

from __future__ import annotations

import ipaddress

import attrs

from lbsim.dataplane.settings import RuntimeSettings, SourceMap, SourceRule
from lbsim.errors import LbsimError

CLIENTS = ipaddress.IPv4Network("127.250.0.0/16")


def presented_as(settings: RuntimeSettings, source: str) -> tuple[RuntimeSettings, str]:
    """The settings with a client address presented as ``source`` (``settings`` itself when
    one is there already), and that client address."""
    wanted = _ipv4(source)
    rules = settings.sources.rules
    ours = [r for r in rules if _ours(r.local)]
    for rule in ours:
        if rule.presented == wanted:
            return settings, str(rule.local.network_address)
    taken = {r.local.network_address for r in ours}
    local = next(a for a in CLIENTS.hosts() if a not in taken)
    rule = SourceRule(ipaddress.ip_network(local), wanted)
    mapped = SourceMap(tuple(sorted((*rules, rule), key=lambda r: -r.local.prefixlen)))
    return attrs.evolve(settings, sources=mapped), str(local)


def _ours(local: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Whether a rule's local side is one client address this module gave."""
    return (
        isinstance(local, ipaddress.IPv4Network)
        and local.prefixlen == 32
        and (local.subnet_of(CLIENTS))
    )


def _ipv4(source: str) -> ipaddress.IPv4Network:
    try:
        address = ipaddress.ip_address(source)
    except ValueError:
        raise LbsimError("InvalidArgument", f"source {source!r} is not an IP address.") from None
    if not isinstance(address, ipaddress.IPv4Address):
        raise LbsimError(
            "InvalidArgument",
            f"source {source}: only an IPv4 source can be given its own loopback client "
            "(IPv6 has one loopback address, ::1; map it with the sources setting instead).",
        )
    return ipaddress.IPv4Network(address)
