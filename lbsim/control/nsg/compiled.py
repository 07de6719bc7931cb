"""The fast NSG evaluator the data plane calls for every new connection.

Each NSG is compiled once per network context: rules in evaluation order, address prefixes,
service tags and application security groups turned into sorted integer ranges, port ranges
merged, and the ``Decision`` each rule gives made in advance. ``decide`` then allocates
nothing. Compiled NSGs are memoised by the identity of the (frozen) NSG and context, so the
data plane should keep one ``NetworkContext`` per plan rather than build one per flow.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

import attrs

from lbsim.control.nsg.context import (
    NETWORK_INTERFACE,
    SUBNET,
    Flow,
    IPNetwork,
    NetworkContext,
)
from lbsim.control.nsg.order import ordered_rules
from lbsim.control.nsg.results import ALLOWED_WITHOUT_NSG, Decision
from lbsim.control.nsg.syntax import (
    AZURE_LOAD_BALANCER,
    INTERNET,
    VIRTUAL_NETWORK,
    PrefixKind,
    parse_port_range,
    parse_prefix,
)
from lbsim.model.common import (
    SecurityRuleAccess,
    SecurityRuleDirection,
    SecurityRuleProtocol,
    SubResource,
)
from lbsim.model.network import NetworkSecurityGroup, SecurityRule

Ranges = tuple[tuple[int, ...], tuple[int, ...]]  # sorted disjoint ranges: (starts, ends)
AddressSet = tuple[Ranges, Ranges]  # IPv4 ranges, IPv6 ranges
_TOP = {4: 2**32 - 1, 6: 2**128 - 1}
_ALL_PORTS = ((0,), (65535,))
_DENY = SecurityRuleAccess.DENY
_TCP = SecurityRuleProtocol.TCP
_UDP = SecurityRuleProtocol.UDP


@attrs.frozen
class CompiledRule:
    """A rule ready to match: None stands for "any" (protocol, addresses or ports)."""

    protocol: SecurityRuleProtocol | None
    source: AddressSet | None
    source_ports: Ranges | None
    destination: AddressSet | None
    destination_ports: Ranges | None
    decisions: tuple[Decision, Decision]  # what the rule decides at SUBNET, at NETWORK_INTERFACE


@attrs.frozen
class CompiledNsg:
    inbound: tuple[CompiledRule, ...]
    outbound: tuple[CompiledRule, ...]
    no_match: tuple[Decision, Decision]  # if no rule matches (never, with the default rules)


def decide(
    flow: Flow,
    subnet_nsg: NetworkSecurityGroup | None,
    nic_nsg: NetworkSecurityGroup | None,
    ctx: NetworkContext,
) -> Decision:
    """What ``evaluate`` decides, without the explanation, fast."""
    inbound = flow.direction is SecurityRuleDirection.INBOUND
    first, second = (subnet_nsg, nic_nsg) if inbound else (nic_nsg, subnet_nsg)
    slot = 0 if inbound else 1  # the slot of the first level: SUBNET inbound, NIC outbound
    protocol = flow.protocol
    ported = protocol is _TCP or protocol is _UDP
    source, destination = flow.source_address, flow.destination_address
    probe = (protocol, ported, source.version == 6, int(source), flow.source_port,
             int(destination), flow.destination_port)  # fmt: skip
    decision = ALLOWED_WITHOUT_NSG
    if first is not None:
        decision = _decide_level(compiled(first, ctx), inbound, slot, probe)
        if decision.access is _DENY:
            return decision
    if second is not None:
        decision = _decide_level(compiled(second, ctx), inbound, 1 - slot, probe)
    return decision


# protocol, ports apply, IPv6, source, source port, destination, destination port
_Probe = tuple[SecurityRuleProtocol, bool, bool, int, int, int, int]


def _decide_level(
    nsg: CompiledNsg,
    inbound: bool,
    slot: int,
    probe: _Probe,
) -> Decision:
    # The hot loop: range checks are written out rather than called, for speed.
    protocol, ported, v6, source, source_port, destination, destination_port = probe
    for rule in nsg.inbound if inbound else nsg.outbound:
        if rule.protocol is not None and rule.protocol is not protocol:
            continue
        if ported:
            if (ranges := rule.destination_ports) is not None:
                index = bisect_right(ranges[0], destination_port)
                if not index or destination_port > ranges[1][index - 1]:
                    continue
            if (ranges := rule.source_ports) is not None:
                index = bisect_right(ranges[0], source_port)
                if not index or source_port > ranges[1][index - 1]:
                    continue
        if (addresses := rule.destination) is not None:
            starts, ends = addresses[v6]
            index = bisect_right(starts, destination)
            if not index or destination > ends[index - 1]:
                continue
        if (addresses := rule.source) is not None:
            starts, ends = addresses[v6]
            index = bisect_right(starts, source)
            if not index or source > ends[index - 1]:
                continue
        return rule.decisions[slot]
    return nsg.no_match[slot]


# --- compiling ---------------------------------------------------------------------------------
_CACHE_SIZE = 1024
_cache: dict[tuple[int, int], tuple[NetworkSecurityGroup, NetworkContext, CompiledNsg]] = {}


def compiled(nsg: NetworkSecurityGroup, ctx: NetworkContext) -> CompiledNsg:
    """The NSG compiled against the context, memoised by their identities."""
    key = (id(nsg), id(ctx))
    entry = _cache.get(key)
    if entry is not None and entry[0] is nsg and entry[1] is ctx:
        return entry[2]
    result = compile_network_security_group(nsg, ctx)
    if len(_cache) >= _CACHE_SIZE:
        del _cache[next(iter(_cache))]  # the oldest entry
    _cache[key] = (nsg, ctx, result)
    return result


def compile_network_security_group(nsg: NetworkSecurityGroup, ctx: NetworkContext) -> CompiledNsg:
    def rules(direction: SecurityRuleDirection) -> tuple[CompiledRule, ...]:
        return tuple(_compile_rule(nsg, rule, ctx) for rule in ordered_rules(nsg, direction))

    no_match = tuple(Decision(_DENY, None, nsg.id, level) for level in (SUBNET, NETWORK_INTERFACE))
    return CompiledNsg(
        inbound=rules(SecurityRuleDirection.INBOUND),
        outbound=rules(SecurityRuleDirection.OUTBOUND),
        no_match=(no_match[0], no_match[1]),
    )


def _compile_rule(
    nsg: NetworkSecurityGroup, rule: SecurityRule, ctx: NetworkContext
) -> CompiledRule:
    protocol = None if rule.protocol is SecurityRuleProtocol.ANY else rule.protocol
    return CompiledRule(
        protocol=protocol,
        source=_address_set(rule.sources(), rule.source_application_security_groups, ctx),
        source_ports=_port_set(rule.source_ports()),
        destination=_address_set(
            rule.destinations(), rule.destination_application_security_groups, ctx
        ),
        destination_ports=_port_set(rule.destination_ports()),
        decisions=(
            Decision(rule.access, rule, nsg.id, SUBNET),
            Decision(rule.access, rule, nsg.id, NETWORK_INTERFACE),
        ),
    )


def _port_set(texts: tuple[str, ...]) -> Ranges | None:
    ranges = _merge(pair for text in texts for pair in parse_port_range(text) or ())
    return None if ranges == _ALL_PORTS else ranges


def _address_set(
    prefixes: tuple[str, ...], groups: tuple[SubResource, ...], ctx: NetworkContext
) -> AddressSet | None:
    pairs: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
    for text in prefixes:
        prefix = parse_prefix(text)
        if prefix.kind is PrefixKind.ANY:
            return None
        for version, low, high in _prefix_ranges(prefix.network, prefix.tag, ctx):
            pairs[version].append((low, high))
    for group in groups:
        for address in ctx.members(group.id):
            pairs[address.version].append((int(address), int(address)))
    return (_merge(pairs[4]), _merge(pairs[6]))


def _prefix_ranges(
    network: IPNetwork | None, tag: str | None, ctx: NetworkContext
) -> Iterator[tuple[int, int, int]]:
    if network is not None:
        yield _network_range(network)
    elif tag == VIRTUAL_NETWORK:
        yield from map(_network_range, ctx.virtual_network_tag)
    elif tag == AZURE_LOAD_BALANCER:
        yield from map(_network_range, ctx.load_balancer_prefixes)
    elif tag == INTERNET:
        yield from _internet(ctx)
    # a service tag lbsim does not emulate, or a malformed prefix: nothing


def _network_range(network: IPNetwork) -> tuple[int, int, int]:
    return (network.version, int(network.network_address), int(network.broadcast_address))


def _internet(ctx: NetworkContext) -> Iterator[tuple[int, int, int]]:
    """Every address outside the ``VirtualNetwork`` tag, in each IP version."""
    inside = [_network_range(network) for network in ctx.virtual_network_tag]
    for version, top in _TOP.items():
        starts, ends = _merge((low, high) for v, low, high in inside if v == version)
        nxt = 0
        for start, end in zip(starts, ends, strict=True):
            if start > nxt:
                yield (version, nxt, start - 1)
            nxt = end + 1
        if nxt <= top:
            yield (version, nxt, top)


def _merge(pairs: Iterable[tuple[int, int]]) -> Ranges:
    """Inclusive ranges sorted and joined where they overlap or touch."""
    starts: list[int] = []
    ends: list[int] = []
    for low, high in sorted(pairs):
        if ends and low <= ends[-1] + 1:
            ends[-1] = max(ends[-1], high)
        else:
            starts.append(low)
            ends.append(high)
    return (tuple(starts), tuple(ends))
