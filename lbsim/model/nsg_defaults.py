"""The default security rules that Azure puts in every network security group.

They cannot be deleted; user rules override them by having a lower priority number. Names,
priorities, prefixes and descriptions are those Azure reports in ``defaultSecurityRules``.
"""

from __future__ import annotations

from lbsim.model.common import SecurityRuleAccess, SecurityRuleDirection, SecurityRuleProtocol
from lbsim.model.network import SecurityRule

_IN = SecurityRuleDirection.INBOUND
_OUT = SecurityRuleDirection.OUTBOUND
_ALLOW = SecurityRuleAccess.ALLOW
_DENY = SecurityRuleAccess.DENY

# name, priority, direction, access, source prefix, destination prefix, description
_DEFAULTS: tuple[tuple[str, int, SecurityRuleDirection, SecurityRuleAccess, str, str, str], ...] = (
    (
        "AllowVnetInBound",
        65000,
        _IN,
        _ALLOW,
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow inbound traffic from all VMs in VNET",
    ),
    (
        "AllowAzureLoadBalancerInBound",
        65001,
        _IN,
        _ALLOW,
        "AzureLoadBalancer",
        "*",
        "Allow inbound traffic from azure load balancer",
    ),
    ("DenyAllInBound", 65500, _IN, _DENY, "*", "*", "Deny all inbound traffic"),
    (
        "AllowVnetOutBound",
        65000,
        _OUT,
        _ALLOW,
        "VirtualNetwork",
        "VirtualNetwork",
        "Allow outbound traffic from all VMs to all VMs in VNET",
    ),
    (
        "AllowInternetOutBound",
        65001,
        _OUT,
        _ALLOW,
        "*",
        "Internet",
        "Allow outbound traffic from all VMs to Internet",
    ),
    ("DenyAllOutBound", 65500, _OUT, _DENY, "*", "*", "Deny all outbound traffic"),
)


def _default_rule(
    spec: tuple[str, int, SecurityRuleDirection, SecurityRuleAccess, str, str, str],
) -> SecurityRule:
    name, priority, direction, access, source, destination, description = spec
    return SecurityRule(
        name=name,
        protocol=SecurityRuleProtocol.ANY,
        access=access,
        priority=priority,
        direction=direction,
        source_address_prefix=source,
        source_port_range="*",
        destination_address_prefix=destination,
        destination_port_range="*",
        description=description,
        is_default=True,
    )


_RULES = tuple(_default_rule(spec) for spec in _DEFAULTS)


def default_security_rules() -> tuple[SecurityRule, ...]:
    """Azure's six default rules: three inbound, then three outbound, by priority."""
    return _RULES
