"""Checks Azure makes across the rules of a load balancer.

- Frontend ports: a (frontend, transport, port) belongs to one holder. Two NAT pools whose
  ranges overlap: ``InboundNatPoolFrontendPortRangesOverlapping`` (Azure's). Two single ports
  (load-balancing rules, V1 NAT rules) on one port, or two V2 NAT rules whose ranges overlap:
  ``LoadBalancerFrontendPortConflict``, lbsim's own code (Azure's is not documented). A single
  port inside a pool's or V2 rule's range, or a pool's range over a V2 rule's, is no conflict:
  a range's backends take its free ports (lbsim.control.ports), so it is the warning
  ``FrontendPortInsideNatPortRange``; a range too small for its backends once the others' ports
  are skipped is the NAT expander's error.
- Port ranges: start after end: ``InvalidFrontendPortRange`` (lbsim's own).
- Backend ports: two load-balancing rules without floating IP on the same protocol, backend
  port and pool: ``RulesUseSameBackendPortProtocolAndPool`` (Azure's).
- Outbound rules (Azure's codes): a frontend that is not one of the load balancer's:
  ``InvalidResourceReference``; a load-balancing rule on a frontend that an outbound rule
  uses must disable outbound SNAT:
  ``LoadBalancingRuleMustDisableSNATSinceSameFrontendIPConfigurationIsReferencedByOutboundRule``;
  two outbound rules on one frontend with overlapping protocols:
  ``MoreThanOneOutboundRuleUsingSameFrontendIPConfigurationAndProtocolIsNotSupported``.
- Probes: an HTTPS probe on a Basic load balancer (only Standard offers HTTPS probes; Azure
  refuses the deployment): ``HttpsProbeRequiresStandardSku``, lbsim's own code (Azure's is
  not documented).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from enum import Enum

import attrs

from lbsim.errors import Problem, Severity
from lbsim.model import (
    InboundNatPool,
    InboundNatRule,
    LoadBalancer,
    LoadBalancingRule,
    OutboundRule,
    ProbeProtocol,
)
from lbsim.pointer import Pointer


class _Kind(Enum):
    SINGLE = "single port"  # a load-balancing rule or a V1 NAT rule
    POOL = "inbound NAT pool"
    RANGE = "inbound NAT rule"  # a V2 rule's range


@attrs.frozen(order=True)
class _Claim:
    low: int
    high: int
    frontend: str
    transport: str
    name: str = attrs.field(order=False)
    kind: _Kind = attrs.field(order=False)
    source_id: str = attrs.field(order=False)
    at: Pointer | None = attrs.field(order=False, default=None)


def check_load_balancer(lb: LoadBalancer) -> list[Problem]:
    problems = list(_bad_ranges(lb))
    by_frontend: dict[tuple[str, str], list[_Claim]] = defaultdict(list)
    for claim in _claims(lb):
        by_frontend[(claim.frontend, claim.transport)].append(claim)
    for claims in by_frontend.values():
        problems += _overlaps(sorted(claims, key=lambda c: (c.low, c.high)))
    problems += _backend_ports(lb)
    problems += _outbound(lb)
    problems += _https_probes(lb)
    return problems


def _https_probes(lb: LoadBalancer) -> list[Problem]:
    """HTTPS probes are a Standard load balancer's: a Basic one cannot have them."""
    if lb.sku.lower() == "standard":
        return []
    return [
        Problem(
            "HttpsProbeRequiresStandardSku",
            f"The probe '{probe.name}' of '{lb.name}' uses HTTPS, which only a Standard "
            f"load balancer offers; '{lb.name}' is {lb.sku}. Use Http or Tcp, or the Standard "
            "SKU.",
            probe.at / "properties" / "protocol" if probe.at else None,
        )
        for probe in lb.probes
        if probe.protocol is ProbeProtocol.HTTPS
    ]


def _outbound(lb: LoadBalancer) -> list[Problem]:
    """What Azure checks of the outbound rules of ``lb``."""
    problems: list[Problem] = []
    own = {fe.id.lower() for fe in lb.frontend_ip_configurations}
    users: dict[str, list[OutboundRule]] = defaultdict(list)
    for rule in lb.outbound_rules:
        for position, ref in enumerate(rule.frontend_ip_configurations):
            if ref.key not in own:
                problems.append(_unknown_frontend(lb, rule, ref.id, position))
                continue
            problems += [
                _shared_frontend(lb, other, rule, ref.id)
                for other in users[ref.key]
                if set(other.protocol.transports()) & set(rule.protocol.transports())
            ]
            users[ref.key].append(rule)
    problems += [
        _must_disable_snat(rule, users[rule.frontend_ip_configuration.key])
        for rule in lb.load_balancing_rules
        if users.get(rule.frontend_ip_configuration.key) and not rule.disable_outbound_snat
    ]
    return problems


def _unknown_frontend(lb: LoadBalancer, rule: OutboundRule, ref: str, position: int) -> Problem:
    at = rule.at / "properties" / "frontendIPConfigurations" / position if rule.at else None
    return Problem(
        "InvalidResourceReference",
        f"Resource {ref} referenced by the outbound rule '{rule.name}' of '{lb.name}' was not "
        "found.",
        at,
    )


def _shared_frontend(
    lb: LoadBalancer, first: OutboundRule, rule: OutboundRule, ref: str
) -> Problem:
    return Problem(
        "MoreThanOneOutboundRuleUsingSameFrontendIPConfigurationAndProtocolIsNotSupported",
        f"The outbound rules '{first.name}' and '{rule.name}' of '{lb.name}' use frontend {ref} "
        "with overlapping protocols.",
        rule.at,
    )


def _must_disable_snat(rule: LoadBalancingRule, users: list[OutboundRule]) -> Problem:
    names = ", ".join(f"'{r.name}'" for r in users)
    return Problem(
        "LoadBalancingRuleMustDisableSNATSinceSameFrontendIPConfigurationIsReferencedByOutboundRule",
        f"The load-balancing rule '{rule.name}' must set disableOutboundSnat to true: its "
        f"frontend {rule.frontend_ip_configuration.id} is used by the outbound rule(s) {names}.",
        rule.at,
    )


def _claims(lb: LoadBalancer) -> Iterator[_Claim]:
    for pool in lb.inbound_nat_pools:
        start, end = pool.frontend_port_range_start, pool.frontend_port_range_end
        yield from _claim(pool, start, end, _Kind.POOL)
    for rule in lb.inbound_nat_rules:
        if rule.frontend_port is not None:
            yield from _claim(rule, rule.frontend_port, rule.frontend_port, _Kind.SINGLE)
        elif (
            rule.frontend_port_range_start is not None and rule.frontend_port_range_end is not None
        ):
            start, end = rule.frontend_port_range_start, rule.frontend_port_range_end
            yield from _claim(rule, start, end, _Kind.RANGE)
    for lb_rule in lb.load_balancing_rules:
        if lb_rule.frontend_port != 0:
            port = lb_rule.frontend_port
            yield from _claim(lb_rule, port, port, _Kind.SINGLE)


def _claim(
    source: InboundNatPool | InboundNatRule | LoadBalancingRule, low: int, high: int, kind: _Kind
) -> Iterator[_Claim]:
    for transport in source.protocol.transports():
        frontend = source.frontend_ip_configuration.key
        yield _Claim(
            low, high, frontend, transport.value, source.name, kind, source.id.lower(), source.at
        )


def _overlaps(claims: list[_Claim]) -> Iterator[Problem]:
    """A problem for each pair of claims whose ports overlap, once per pair (a rule on
    protocol All claims Tcp and Udp)."""
    active: list[_Claim] = []
    reported: set[tuple[str, str]] = set()
    for claim in claims:
        active = [a for a in active if a.high >= claim.low]
        for other in active:
            pair = (other.source_id, claim.source_id)
            if pair in reported:
                continue
            reported.add(pair)
            yield _overlap(other, claim)
        active.append(claim)


def _ports(claim: _Claim) -> str:
    return str(claim.low) if claim.low == claim.high else f"{claim.low}-{claim.high}"


def _overlap(first: _Claim, second: _Claim) -> Problem:
    kinds = {first.kind, second.kind}
    if kinds == {_Kind.POOL}:
        return Problem(
            "InboundNatPoolFrontendPortRangesOverlapping",
            f"The frontend port ranges of the inbound NAT pools '{first.name}' ({_ports(first)}) "
            f"and '{second.name}' ({_ports(second)}) overlap on the same frontend and protocol.",
            second.at,
        )
    if kinds in ({_Kind.SINGLE}, {_Kind.RANGE}):
        return Problem(
            "LoadBalancerFrontendPortConflict",
            f"'{second.name}' ({second.transport} {_ports(second)}) and '{first.name}' "
            f"({first.transport} {_ports(first)}) use the same frontend port on the same "
            "frontend IP configuration and protocol.",
            second.at,
        )
    return _inside(first, second)


_ADAPTS_FIRST = (_Kind.POOL, _Kind.RANGE, _Kind.SINGLE)


def _inside(first: _Claim, second: _Claim) -> Problem:
    """A single port inside a pool's or V2 rule's range, or a V2 rule's range over a pool's:
    the pool (else the V2 rule) skips the ports the other holds, as Azure's allocation does."""
    ranged, inner = sorted((first, second), key=lambda c: _ADAPTS_FIRST.index(c.kind))
    where = "lies inside" if inner.kind is _Kind.SINGLE else "overlaps"
    what = "its port" if inner.kind is _Kind.SINGLE else "the ports it gives its backends"
    return Problem(
        "FrontendPortInsideNatPortRange",
        f"'{inner.name}' ({inner.transport} {_ports(inner)}) {where} the frontend port range "
        f"{_ports(ranged)} of the {ranged.kind.value} '{ranged.name}' on the same frontend and "
        f"protocol. Azure accepts this: '{ranged.name}' gives its backends the other ports of "
        f"its range, skipping {what}.",
        inner.at,
        severity=Severity.WARNING,
    )


def _bad_ranges(lb: LoadBalancer) -> Iterator[Problem]:
    sources: list[InboundNatPool | InboundNatRule] = [*lb.inbound_nat_pools, *lb.inbound_nat_rules]
    for source in sources:
        start, end = source.frontend_port_range_start, source.frontend_port_range_end
        if start is not None and end is not None and start > end:
            yield Problem(
                "InvalidFrontendPortRange",
                f"The frontend port range of '{source.name}' starts at {start}, after its "
                f"end {end}.",
                source.at,
            )


def _backend_ports(lb: LoadBalancer) -> Iterator[Problem]:
    seen: dict[tuple[str, str, int], LoadBalancingRule] = {}
    for rule in lb.load_balancing_rules:
        if rule.enable_floating_ip:
            continue
        for pool in rule.backend_address_pools:
            for transport in rule.protocol.transports():
                key = (pool.key, transport.value, rule.backend_port)
                first = seen.setdefault(key, rule)
                if first is not rule:
                    yield Problem(
                        "RulesUseSameBackendPortProtocolAndPool",
                        f"Load balancer rules '{first.name}' and '{rule.name}' with floating IP "
                        f"disabled use the same protocol {transport.value} and backend port "
                        f"{rule.backend_port} on the backend pool {pool.name}.",
                        rule.at,
                    )
