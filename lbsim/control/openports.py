"""Which TCP ports an instance's own public IP listens on: those its NSGs could let in.

Azure forwards every port of an instance-level public IP to the instance and leaves the
filtering to its NSGs (subnet NSG first, then NIC NSG; both must allow). lbsim cannot listen
on 65,536 ports per jump box, so it listens where a connection could get through, and judges
every connection there by the NSGs with the client's presented address, as any NAT entry is:

- candidates: each port of an inbound Allow rule (Tcp or ``*``) of either NSG, default rules
  included; a range of at most ``MAX_RANGE`` ports gives all its ports, a wider one its
  first port only; a rule on every port (``*``, ``0-65535``) gives the remote-login ports;
  the remote-login ports are always candidates (22 for Linux, 3389 for Windows, both when
  the OS is unknown), so an instance that no NSG guards behind a Basic public IP is
  reachable on them;
- a candidate is kept when some source outside the virtual network is allowed by both levels
  (sources tried: the edges of every address prefix of the NSGs' rules, the addresses just
  outside them, and one address of the Internet; flows through a public IP never come from
  inside the virtual network); with no NSG at all, when the public IP's SKU is Basic (a
  Standard public IP is closed to what no NSG allows);
- at most ``MAX_PORTS`` ports per instance: the remote-login ports first, then the lowest.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator

from lbsim.control.nsg import Flow, NetworkContext, decide
from lbsim.control.nsg.syntax import parse_port_range, parse_prefix
from lbsim.control.types import Backend
from lbsim.model import (
    NetworkSecurityGroup,
    SecurityRule,
    SecurityRuleAccess,
    SecurityRuleDirection,
    SecurityRuleProtocol,
)

MAX_RANGE = 64  # a wider range of an Allow rule contributes only its first port
MAX_PORTS = 64  # ports per instance public IP
MAX_SOURCES = 512  # source addresses tried per instance
SSH, RDP = 22, 3389
_INTERNET = {4: ("203.0.113.1", "8.8.8.8"), 6: ("2001:db8::1", "2001:4860:4860::8888")}
_CLIENT_PORT = 50000  # a typical ephemeral source port


def remote_login_ports(os_type: str | None) -> tuple[int, ...]:
    """22 for Linux, 3389 for Windows, both when the OS is unknown."""
    kind = (os_type or "").lower()
    if kind == "linux":
        return (SSH,)
    if kind == "windows":
        return (RDP,)
    return (SSH, RDP)


def same_ports_key(backend: Backend, closed: bool) -> tuple[object, ...]:
    """Backends with equal keys listen on the same ports (a scale set's instances, mostly):
    their NSGs, network, OS and SKU agree, and their own address matters only when a rule of
    their NSGs names destination addresses other than ``*``."""
    nsgs = (backend.subnet_nsg, backend.nic_nsg)
    own = backend.private_ip_address if _names_destinations(nsgs) else ""
    prefixes = backend.virtual_network_prefixes
    return (*(id(n) for n in nsgs), prefixes, backend.os_type, closed, own)


def _names_destinations(nsgs: Iterable[NetworkSecurityGroup | None]) -> bool:
    for nsg in nsgs:
        for rule in nsg.security_rules if nsg is not None else ():
            if rule.destination_application_security_groups:
                return True
            if any(d.strip() != "*" for d in rule.destinations()):
                return True
    return False


def open_ports(backend: Backend, ctx: NetworkContext, *, closed: bool) -> tuple[list[int], bool]:
    """The ports to listen on for ``backend``'s own public IP, and whether ``MAX_PORTS`` cut
    some off. ``closed``: the public IP is Standard (nothing gets in that no NSG allows)."""
    nsgs = [n for n in (backend.subnet_nsg, backend.nic_nsg) if n is not None]
    logins = remote_login_ports(backend.os_type)
    if not nsgs:
        return ([] if closed else list(logins)), False
    candidates = _candidates(_allow_rules(nsgs), logins)
    sources = list(_sources(nsgs, backend, ctx))
    found = [p for p in candidates if _allowed(backend, ctx, sources, p)]
    return found[:MAX_PORTS], len(found) > MAX_PORTS


def _allow_rules(nsgs: Iterable[NetworkSecurityGroup]) -> Iterator[SecurityRule]:
    """The inbound Allow rules that can match TCP, user and default rules."""
    for nsg in nsgs:
        for rule in (*nsg.security_rules, *nsg.default_security_rules):
            inbound = rule.direction is SecurityRuleDirection.INBOUND
            tcp = rule.protocol in (SecurityRuleProtocol.TCP, SecurityRuleProtocol.ANY)
            if inbound and tcp and rule.access is SecurityRuleAccess.ALLOW:
                yield rule


def _candidates(rules: Iterable[SecurityRule], logins: tuple[int, ...]) -> list[int]:
    """Remote-login ports first, then the rules' ports, lowest first, without repeats."""
    ports: set[int] = set()
    for rule in rules:
        for text in rule.destination_ports():
            for low, high in parse_port_range(text) or ():
                ports.update(_range_ports(low, high, logins))
    ports.discard(0)  # no listener can take port 0
    return [*logins, *sorted(ports - set(logins))]


def _range_ports(low: int, high: int, logins: tuple[int, ...]) -> Iterable[int]:
    if (low, high) == (0, 65535):
        return logins
    if high - low + 1 <= MAX_RANGE:
        return range(low, high + 1)
    return (low,)


def _allowed(backend: Backend, ctx: NetworkContext, sources: list[str], port: int) -> bool:
    for source in sources:
        flow = Flow(
            SecurityRuleProtocol.TCP,
            SecurityRuleDirection.INBOUND,
            source,
            _CLIENT_PORT,
            backend.private_ip_address,
            port,
        )
        decision = decide(flow, backend.subnet_nsg, backend.nic_nsg, ctx)
        if decision.access is SecurityRuleAccess.ALLOW:
            return True
    return False


def _sources(
    nsgs: Iterable[NetworkSecurityGroup], backend: Backend, ctx: NetworkContext
) -> Iterator[str]:
    """Source addresses outside the virtual network that tell apart what the rules' address
    prefixes tell apart: each prefix's first and last address and its two neighbours."""
    version = ipaddress.ip_address(backend.private_ip_address).version
    inside = ctx.virtual_network_tag
    seen: set[str] = set()
    for value in _edges(nsgs, version, inside):
        address = ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)
        text = str(address)
        if text not in seen and not any(address in network for network in inside):
            seen.add(text)
            yield text
            if len(seen) >= MAX_SOURCES:
                return


def _edges(
    nsgs: Iterable[NetworkSecurityGroup],
    version: int,
    inside: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> Iterator[int]:
    top = 2**32 - 1 if version == 4 else 2**128 - 1
    yield from (int(ipaddress.ip_address(a)) for a in _INTERNET[version])
    networks = [*_prefix_networks(nsgs, version), *(n for n in inside if n.version == version)]
    for network in networks:
        first, last = int(network.network_address), int(network.broadcast_address)
        yield from (v for v in (first, last, first - 1, last + 1) if 0 <= v <= top)


def _prefix_networks(
    nsgs: Iterable[NetworkSecurityGroup], version: int
) -> Iterator[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    for nsg in nsgs:
        for rule in (*nsg.security_rules, *nsg.default_security_rules):
            for text in rule.sources():
                network = parse_prefix(text).network
                if network is not None and network.version == version:
                    yield network
