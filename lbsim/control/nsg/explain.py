"""The explaining NSG evaluator: every rule held against the flow, part by part.

It works straight from the model with ``ipaddress`` objects and is the reference the fast
``decide`` is tested against; it is meant for ``lbsim verify`` and flow explanations, not for
every connection.
"""

from __future__ import annotations

from lbsim.control.nsg.context import Flow, IPAddress, IPNetwork, NetworkContext
from lbsim.control.nsg.order import level_order, ordered_rules
from lbsim.control.nsg.results import ALLOWED_WITHOUT_NSG, Decision, RuleEvaluation, Verdict
from lbsim.control.nsg.syntax import (
    AZURE_LOAD_BALANCER,
    INTERNET,
    VIRTUAL_NETWORK,
    Prefix,
    PrefixKind,
    parse_port_range,
    parse_prefix,
)
from lbsim.model.common import SecurityRuleAccess, SecurityRuleProtocol, SubResource
from lbsim.model.network import NetworkSecurityGroup, SecurityRule


def evaluate(
    flow: Flow,
    subnet_nsg: NetworkSecurityGroup | None,
    nic_nsg: NetworkSecurityGroup | None,
    ctx: NetworkContext,
) -> Verdict:
    """Decide a new flow and say why.

    Each level's NSG is evaluated by priority, first match deciding; a missing NSG allows at
    its level. Both levels must allow: a deny at the first level ends the evaluation."""
    evaluated: list[RuleEvaluation] = []
    decision = ALLOWED_WITHOUT_NSG
    for level, nsg in level_order(flow.direction, subnet_nsg, nic_nsg):
        if nsg is None:
            continue
        decision = _evaluate_level(flow, nsg, level, ctx, evaluated)
        if not decision.allowed:
            break
    return Verdict(
        decision.access,
        decision.rule,
        decision.network_security_group,
        decision.level,
        tuple(evaluated),
    )


def _evaluate_level(
    flow: Flow,
    nsg: NetworkSecurityGroup,
    level: str,
    ctx: NetworkContext,
    evaluated: list[RuleEvaluation],
) -> Decision:
    for rule in ordered_rules(nsg, flow.direction):
        evaluation = evaluate_rule(flow, rule, nsg, level, ctx)
        evaluated.append(evaluation)
        if evaluation.matched:
            return Decision(rule.access, rule, nsg.id, level)
    return Decision(SecurityRuleAccess.DENY, None, nsg.id, level)


def evaluate_rule(
    flow: Flow, rule: SecurityRule, nsg: NetworkSecurityGroup, level: str, ctx: NetworkContext
) -> RuleEvaluation:
    """Hold one rule against a flow (the rule's direction is the caller's concern)."""
    return RuleEvaluation(
        rule=rule,
        network_security_group=nsg.id,
        network_security_group_name=nsg.name,
        level=level,
        protocol=rule.protocol in (SecurityRuleProtocol.ANY, flow.protocol),
        source=address_matches(
            rule.sources(), rule.source_application_security_groups, flow.source_address, ctx
        ),
        source_port=not flow.has_ports or port_matches(rule.source_ports(), flow.source_port),
        destination=address_matches(
            rule.destinations(),
            rule.destination_application_security_groups,
            flow.destination_address,
            ctx,
        ),
        destination_port=(
            not flow.has_ports or port_matches(rule.destination_ports(), flow.destination_port)
        ),
    )


def address_matches(
    prefixes: tuple[str, ...],
    groups: tuple[SubResource, ...],
    address: IPAddress,
    ctx: NetworkContext,
) -> bool:
    """Whether an address is in any of the prefixes or application security groups."""
    return any(_prefix_matches(parse_prefix(p), address, ctx) for p in prefixes) or any(
        address in ctx.members(group.id) for group in groups
    )


def _prefix_matches(prefix: Prefix, address: IPAddress, ctx: NetworkContext) -> bool:
    if prefix.kind is PrefixKind.ANY:
        return True
    if prefix.network is not None:
        return address in prefix.network
    if prefix.tag == VIRTUAL_NETWORK:
        return _in_any(address, ctx.virtual_network_tag)
    if prefix.tag == AZURE_LOAD_BALANCER:
        return _in_any(address, ctx.load_balancer_prefixes)
    if prefix.tag == INTERNET:
        return not _in_any(address, ctx.virtual_network_tag)
    return False  # a service tag lbsim does not emulate, or a malformed prefix


def _in_any(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)


def port_matches(ranges: tuple[str, ...], port: int) -> bool:
    """Whether a port is in any of the port ranges (malformed ones match nothing)."""
    return any(low <= port <= high for text in ranges for low, high in parse_port_range(text) or ())
