"""Checks Azure makes on a network security group's rules before it accepts them.

Codes (Azure's own where Azure has one, otherwise lbsim's, prefixed ``Lbsim``):

Errors
  ``SecurityRuleConflict``
      two user rules share a priority and a direction; the message names both.
  ``SecurityRuleInvalidPriority``
      a user rule's priority is outside 100-4096.
  ``SecurityRuleInvalidAddressPrefix``
      an address prefix is neither ``*``, a CIDR, an address nor a service tag, or a side
      of the rule has no prefix and no application security group at all.
  ``SecurityRuleInvalidPortRange``
      a port range is not ``*``, ``N`` or ``N-M`` within 0-65535, or a side has none.
  ``OverlappingSubnetsNotPermittedInSecurityRule``
      two CIDRs or addresses on the same side of one rule overlap.
  ``SecurityRuleParameterContainsUnsupportedValue``
      more than one service tag on the same side of one rule.
  ``ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies``
      one rule mixes IPv4 and IPv6 prefixes.

Warnings
  ``LbsimServiceTagNotEmulated``
      a service tag other than ``VirtualNetwork``, ``AzureLoadBalancer`` and ``Internet``
      (or their classic spellings): lbsim lets it match no address.
  ``LbsimAddressPrefixHostBitsSet``
      a CIDR with bits set past its length (``10.0.0.5/24``); lbsim matches ``10.0.0.0/24``.
  ``LbsimCommaSeparatedPortRanges``
      ``"80, 443"`` in one port range: Azure's API wants the plural property; lbsim reads it
      as a list.

Every problem points (``at``) at the offending property under the rule's ``at`` pointer.
"""

from __future__ import annotations

from collections.abc import Iterator

from lbsim.control.nsg.syntax import Prefix, PrefixKind, parse_port_range, parse_prefix
from lbsim.errors import Problem, Severity
from lbsim.model.network import NetworkSecurityGroup, SecurityRule
from lbsim.pointer import Pointer

MIN_PRIORITY = 100
MAX_PRIORITY = 4096


def validate_network_security_group(nsg: NetworkSecurityGroup) -> list[Problem]:
    """Every error and warning about the NSG's user rules (default rules are Azure's own)."""
    problems = list(_conflicts(nsg.security_rules))
    for rule in nsg.security_rules:
        problems.extend(validate_security_rule(rule))
    return problems


def validate_security_rule(rule: SecurityRule) -> list[Problem]:
    """Every error and warning about one rule on its own."""
    problems: list[Problem] = []
    if not MIN_PRIORITY <= rule.priority <= MAX_PRIORITY:
        problems.append(
            _error(
                "SecurityRuleInvalidPriority",
                f"Security rule {rule.name} has invalid priority {rule.priority}; "
                f"allowed range {MIN_PRIORITY}-{MAX_PRIORITY}.",
                rule,
                "priority",
            )
        )
    problems.extend(_side_problems(rule, "source"))
    problems.extend(_side_problems(rule, "destination"))
    problems.extend(_family_problems(rule))
    problems.extend(_port_problems(rule, "source"))
    problems.extend(_port_problems(rule, "destination"))
    return problems


def _conflicts(rules: tuple[SecurityRule, ...]) -> Iterator[Problem]:
    first_seen: dict[tuple[object, int], SecurityRule] = {}
    for rule in rules:
        earlier = first_seen.setdefault((rule.direction, rule.priority), rule)
        if earlier is not rule:
            yield _error(
                "SecurityRuleConflict",
                f"Security rule {rule.name} conflicts with rule {earlier.name}. Rules cannot "
                "have the same Priority and Direction.",
                rule,
                "priority",
            )


# --- address prefixes --------------------------------------------------------------------------
def _prefixes(rule: SecurityRule, side: str) -> Iterator[tuple[str, Prefix]]:
    """(ARM property name, prefix) for every prefix on one side of the rule."""
    single: str | None = getattr(rule, f"{side}_address_prefix")
    plural: tuple[str, ...] = getattr(rule, f"{side}_address_prefixes")
    if single is not None:
        yield f"{side}AddressPrefix", parse_prefix(single)
    for text in plural:
        yield f"{side}AddressPrefixes", parse_prefix(text)


def _side_problems(rule: SecurityRule, side: str) -> Iterator[Problem]:
    prefixes = list(_prefixes(rule, side))
    groups = getattr(rule, f"{side}_application_security_groups")
    if not prefixes and not groups:
        yield _error(
            "SecurityRuleInvalidAddressPrefix",
            f"Security rule {rule.name} has no {side} address prefix.",
            rule,
            f"{side}AddressPrefix",
        )
    for prop, prefix in prefixes:
        yield from _prefix_problems(rule, prop, prefix)
    tags = [(prop, prefix) for prop, prefix in prefixes if prefix.is_tag]
    if len(tags) > 1:
        yield _error(
            "SecurityRuleParameterContainsUnsupportedValue",
            f"Security rule {rule.name} names more than one service tag as {side} "
            f"({', '.join(prefix.text for _, prefix in tags)}); a rule takes at most one.",
            rule,
            tags[-1][0],
        )
    yield from _overlaps(rule, prefixes)


def _prefix_problems(rule: SecurityRule, prop: str, prefix: Prefix) -> Iterator[Problem]:
    if prefix.kind is PrefixKind.INVALID:
        yield _error(
            "SecurityRuleInvalidAddressPrefix",
            f"Security rule {rule.name} has invalid address prefix {prefix.text!r}.",
            rule,
            prop,
        )
    elif prefix.kind is PrefixKind.OTHER_TAG:
        yield _warning(
            "LbsimServiceTagNotEmulated",
            f"Security rule {rule.name}: lbsim does not emulate service tag {prefix.text!r}; "
            "it matches no address.",
            rule,
            prop,
        )
    elif prefix.host_bits:
        yield _warning(
            "LbsimAddressPrefixHostBitsSet",
            f"Security rule {rule.name}: address prefix {prefix.text!r} has host bits set; "
            f"lbsim reads it as {prefix.network}.",
            rule,
            prop,
        )


def _overlaps(rule: SecurityRule, prefixes: list[tuple[str, Prefix]]) -> Iterator[Problem]:
    networks = sorted(
        (n.version, int(n.network_address), -n.prefixlen, int(n.broadcast_address), prop, p.text)
        for prop, p in prefixes
        if (n := p.network) is not None
    )
    widest: tuple[int, int, str] | None = None  # version, last address, text
    for version, start, _, end, prop, text in networks:
        if widest is not None and widest[0] == version and start <= widest[1]:
            yield _error(
                "OverlappingSubnetsNotPermittedInSecurityRule",
                f"Security rule {rule.name} contains overlapping subnets "
                f"[{widest[2]}, {text}], which is not permitted.",
                rule,
                prop,
            )
            continue
        widest = (version, end, text)


def _family_problems(rule: SecurityRule) -> Iterator[Problem]:
    found: dict[int, str] = {}
    for side in ("source", "destination"):
        for prop, prefix in _prefixes(rule, side):
            if prefix.network is not None:
                found.setdefault(prefix.network.version, prop)
    if len(found) > 1:
        yield _error(
            "ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies",
            f"Security rule {rule.name} mixes IPv4 and IPv6 address prefixes; all of a "
            "rule's prefixes must be of one address family.",
            rule,
            found[6],
        )


# --- port ranges -------------------------------------------------------------------------------
def _port_problems(rule: SecurityRule, side: str) -> Iterator[Problem]:
    single: str | None = getattr(rule, f"{side}_port_range")
    plural: tuple[str, ...] = getattr(rule, f"{side}_port_ranges")
    texts = [(f"{side}PortRange", single)] if single is not None else []
    texts += [(f"{side}PortRanges", text) for text in plural]
    if not texts:
        yield _error(
            "SecurityRuleInvalidPortRange",
            f"Security rule {rule.name} has no {side} port range.",
            rule,
            f"{side}PortRange",
        )
    for prop, text in texts:
        if parse_port_range(text) is None:
            yield _error(
                "SecurityRuleInvalidPortRange",
                f"Security rule {rule.name} has invalid port range {text!r}: expected an "
                "integer or an integer range with a '-' delimiter, within 0-65535, or '*'.",
                rule,
                prop,
            )
        elif "," in text:
            yield _warning(
                "LbsimCommaSeparatedPortRanges",
                f"Security rule {rule.name}: port range {text!r} is a comma-separated list, "
                f"which Azure's API rejects (use {side}PortRanges); lbsim reads it as a list.",
                rule,
                prop,
            )


# --- problems ----------------------------------------------------------------------------------
def _at(rule: SecurityRule, prop: str) -> Pointer | None:
    return None if rule.at is None else rule.at / "properties" / prop


def _error(code: str, message: str, rule: SecurityRule, prop: str) -> Problem:
    return Problem(code, message, _at(rule, prop))


def _warning(code: str, message: str, rule: SecurityRule, prop: str) -> Problem:
    return Problem(code, message, _at(rule, prop), severity=Severity.WARNING)
