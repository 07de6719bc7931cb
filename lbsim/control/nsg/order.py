"""In which order NSGs and their rules are evaluated."""

from __future__ import annotations

from lbsim.control.nsg.context import NETWORK_INTERFACE, SUBNET
from lbsim.control.nsg.results import EffectiveRule
from lbsim.model.common import SecurityRuleDirection
from lbsim.model.network import NetworkSecurityGroup, SecurityRule
from lbsim.model.nsg_defaults import default_security_rules


def _by_priority(rule: SecurityRule) -> tuple[int, str, str]:
    # The name breaks ties so that even an invalid NSG (two rules sharing a priority and
    # direction) is evaluated the same whatever order its rules are listed in.
    return (rule.priority, rule.name.lower(), rule.name)


def ordered_rules(
    nsg: NetworkSecurityGroup, direction: SecurityRuleDirection
) -> tuple[SecurityRule, ...]:
    """The NSG's rules for one direction in evaluation order: user rules by priority, then
    the default rules by priority (Azure's defaults if the NSG lists none)."""
    defaults = nsg.default_security_rules or default_security_rules()
    return tuple(
        rule
        for rules in (nsg.security_rules, defaults)
        for rule in sorted((r for r in rules if r.direction is direction), key=_by_priority)
    )


def level_order(
    direction: SecurityRuleDirection,
    subnet_nsg: NetworkSecurityGroup | None,
    nic_nsg: NetworkSecurityGroup | None,
) -> tuple[tuple[str, NetworkSecurityGroup | None], tuple[str, NetworkSecurityGroup | None]]:
    """The two levels in the order a flow meets them: inbound the subnet first, outbound the
    network interface first."""
    if direction is SecurityRuleDirection.INBOUND:
        return ((SUBNET, subnet_nsg), (NETWORK_INTERFACE, nic_nsg))
    return ((NETWORK_INTERFACE, nic_nsg), (SUBNET, subnet_nsg))


def effective_rules(
    subnet_nsg: NetworkSecurityGroup | None,
    nic_nsg: NetworkSecurityGroup | None,
    direction: SecurityRuleDirection,
) -> tuple[EffectiveRule, ...]:
    """Every rule a flow in ``direction`` may meet, in evaluation order, level by level."""
    return tuple(
        EffectiveRule(level, nsg.id, nsg.name, rule)
        for level, nsg in level_order(direction, subnet_nsg, nic_nsg)
        if nsg is not None
        for rule in ordered_rules(nsg, direction)
    )
