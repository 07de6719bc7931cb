"""Deployment to Plan: what Azure would build, as values the data plane executes."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from lbsim.control.addresses import Addresses
from lbsim.control.backends import backends, reserve_static
from lbsim.control.balancing import plan_balancing
from lbsim.control.bastions import held_bastion_addresses, plan_bastions
from lbsim.control.conflicts import check_load_balancer
from lbsim.control.fleet import Fleet
from lbsim.control.frontends import apply_overrides, plan_frontends
from lbsim.control.index import Index
from lbsim.control.instanceips import held_addresses, instance_entries, instance_public_ips
from lbsim.control.nat import NatExpander
from lbsim.control.nsg import validate_network_security_group
from lbsim.control.ports import held_ports
from lbsim.control.references import check_load_balancer_references
from lbsim.control.types import Plan
from lbsim.errors import Problem, Severity, TemplateInvalid
from lbsim.model import Deployment


def plan(
    deployment: Deployment,
    frontend_addresses: Mapping[str, str] | None = None,
    *,
    fleet: Fleet | None = None,
    previous: Plan | None = None,
) -> Plan:
    """The Plan for ``deployment``; raises TemplateInvalid listing every error found.

    ``fleet`` is the live state of the scale sets (default: a fresh deployment's instances);
    ``previous`` is the plan running before, whose backends keep their private addresses and
    NAT ports where they still can, as Azure keeps them for an instance's life (and instance
    public IPs and bastion hosts their addresses)."""
    index = Index(deployment)
    addresses = Addresses()
    problems: list[Problem] = []
    for nsg in deployment.network_security_groups:
        problems += validate_network_security_group(nsg)
    for lb in deployment.load_balancers:
        problems += check_load_balancer(lb)
    reserve_static(deployment, addresses)
    frontends, found = plan_frontends(deployment, index, addresses, {})
    problems += found
    bastions, found = plan_bastions(
        deployment, index, addresses, held_bastion_addresses(previous) if previous else None
    )
    problems += found
    held = {b.key: b.private_ip_address for b in previous.backends} if previous else None
    members = backends(deployment, index, addresses, fleet, held)
    public_ips, found = instance_public_ips(
        deployment, index, members, frontends, held_addresses(previous) if previous else None
    )
    problems += found
    frontends.update((p.frontend.key, p.frontend) for p in public_ips)
    frontends, found = apply_overrides(frontends, frontend_addresses or {})
    problems += found
    expander = NatExpander(
        index, frontends, members, held=held_ports(previous) if previous else None
    )
    nat = expander.expand(deployment.load_balancers) + instance_entries(public_ips, frontends)
    balancing, found = plan_balancing(deployment.load_balancers, index, frontends, members)
    problems += expander.problems + found + index.problems + addresses.problems
    problems += check_load_balancer_references(deployment, index)
    errors = list(dict.fromkeys(p for p in problems if p.severity is Severity.ERROR))
    if errors:
        raise TemplateInvalid(errors)
    return Plan(
        frontends=tuple(frontends.values()),
        backends=tuple(m.backend for m in members),
        nat=tuple(nat),
        balancing=tuple(balancing),
        warnings=tuple(p for p in problems if p.severity is Severity.WARNING),
        bastions=tuple(bastions),
    )


def with_warnings(result: Plan, extra: tuple[Problem, ...]) -> Plan:
    return attrs.evolve(result, warnings=(*extra, *result.warnings))
