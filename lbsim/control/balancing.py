"""Load-balancing rules and health probes, with the backends of their pools."""

from __future__ import annotations

from collections.abc import Sequence

from lbsim.control.backends import Member
from lbsim.control.index import Index
from lbsim.control.nat import pool_members
from lbsim.control.types import Backend, BalancingEntry, Frontend, PlannedProbe
from lbsim.errors import Problem, Severity
from lbsim.model import (
    BackendAddressPool,
    FrontendIPConfiguration,
    LoadBalancer,
    LoadBalancingRule,
    Probe,
)


def plan_probe(lb: LoadBalancer, probe: Probe) -> PlannedProbe:
    """Azure's probe timing: ``probeThreshold`` (or legacy ``numberOfProbes``) flips state."""
    threshold = probe.probe_threshold or probe.number_of_probes or 1
    return PlannedProbe(
        load_balancer=lb.name,
        name=probe.name,
        protocol=probe.protocol,
        port=probe.port,
        interval_s=float(probe.interval_in_seconds),
        threshold=threshold,
        request_path=probe.request_path,
        at=probe.at,
    )


def plan_balancing(
    balancers: Sequence[LoadBalancer],
    index: Index,
    frontends: dict[str, Frontend],
    members: Sequence[Member],
) -> tuple[list[BalancingEntry], list[Problem]]:
    entries: list[BalancingEntry] = []
    problems: list[Problem] = []
    for lb in balancers:
        if lb.tier.lower() == "global":
            problems += [_global(lb, rule) for rule in lb.load_balancing_rules]
            continue
        probes = {p.id.lower(): plan_probe(lb, p) for p in lb.probes}
        for rule in lb.load_balancing_rules:
            if rule.frontend_port == 0 and rule.backend_port == 0:
                problems.append(_ha_ports(rule))
                continue
            frontend = frontends.get(rule.frontend_ip_configuration.key)
            if frontend is None:
                index.resolve(rule.frontend_ip_configuration, FrontendIPConfiguration, rule.id)
                continue
            backends = _backends(rule, index, members)
            probe = _probe(rule, index, probes)
            entries += _entries(lb, rule, frontend, backends, probe)
    return entries, problems


def _backends(
    rule: LoadBalancingRule, index: Index, members: Sequence[Member]
) -> tuple[Backend, ...]:
    found: dict[str, Backend] = {}
    for ref in rule.backend_address_pools:
        pool = index.resolve(ref, BackendAddressPool, rule.id)
        if pool is not None:
            found.update((b.key, b) for b in pool_members(pool, members))
    return tuple(found.values())


def _probe(
    rule: LoadBalancingRule, index: Index, probes: dict[str, PlannedProbe]
) -> PlannedProbe | None:
    if rule.probe is None:
        return None
    if rule.probe.key not in probes:
        index.resolve(rule.probe, Probe, rule.id)
        return None
    return probes[rule.probe.key]


def _entries(
    lb: LoadBalancer,
    rule: LoadBalancingRule,
    frontend: Frontend,
    backends: tuple[Backend, ...],
    probe: PlannedProbe | None,
) -> list[BalancingEntry]:
    return [
        BalancingEntry(
            load_balancer=lb.name,
            rule_name=rule.name,
            frontend=frontend,
            protocol=protocol,
            frontend_port=rule.frontend_port,
            backend_port=rule.backend_port,
            backends=backends,
            probe=probe,
            load_distribution=rule.load_distribution,
            idle_timeout_s=rule.idle_timeout_in_minutes * 60.0,
            enable_tcp_reset=rule.enable_tcp_reset,
            enable_floating_ip=rule.enable_floating_ip,
            at=rule.at,
        )
        for protocol in rule.protocol.transports()
    ]


def _global(lb: LoadBalancer, rule: LoadBalancingRule) -> Problem:
    return Problem(
        "GlobalLoadBalancerNotEmulated",
        f"'{lb.name}' is a cross-region (Global tier) load balancer, whose pool members are "
        f"regional load balancers' frontends; lbsim leaves its rule '{rule.name}' out. The "
        "regional load balancers run as usual.",
        rule.at,
        severity=Severity.WARNING,
    )


def _ha_ports(rule: LoadBalancingRule) -> Problem:
    return Problem(
        "HaPortsNotEmulated",
        f"The rule '{rule.name}' is an HA-ports rule (all ports); lbsim does not listen on "
        "every port and leaves it out.",
        rule.at,
        severity=Severity.WARNING,
    )
