"""Inbound NAT: pools (V1, for scale sets), rules V1 (one port to one NIC) and rules V2 (a port
range over a backend pool), expanded into one ``NatEntry`` per backend and transport.

Ports (lbsim.control.ports): each backend takes the lowest free port of the range, in backend
order, and keeps it, so a fresh scale set maps instance i to ``start + i`` unless a
load-balancing rule or V1 NAT rule holds a port of the range. On a load balancer every range
re-takes its backends' held ports before any new backend takes one, so a scale-out behind one
range never moves a backend of another range that overlaps it. Azure's pages: NAT pools,
https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-nat-pool-migration, and port
mappings that persist while a backend pool scales,
https://learn.microsoft.com/en-us/azure/load-balancer/inbound-nat-rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import attrs

from lbsim.control.backends import Member
from lbsim.control.index import Index
from lbsim.control.ports import HeldPorts, RangeAllocator, Taken
from lbsim.control.types import Backend, Frontend, NatEntry, NatKind
from lbsim.errors import Problem
from lbsim.model import (
    BackendAddressPool,
    FrontendIPConfiguration,
    InboundNatPool,
    InboundNatRule,
    LoadBalancer,
)


def entries_for(
    lb: LoadBalancer,
    source: InboundNatPool | InboundNatRule,
    kind: NatKind,
    frontend: Frontend,
    *,
    port: int,
    backend: Backend | None,
    name: str,
) -> Iterator[NatEntry]:
    """One entry per concrete transport (``All`` gives Tcp and Udp)."""
    for protocol in source.protocol.transports():
        yield NatEntry(
            load_balancer=lb.name,
            rule_name=name,
            kind=kind,
            frontend=frontend,
            protocol=protocol,
            frontend_port=port,
            backend_port=source.backend_port,
            backend=backend,
            idle_timeout_s=source.idle_timeout_in_minutes * 60.0,
            enable_tcp_reset=source.enable_tcp_reset,
            enable_floating_ip=source.enable_floating_ip,
            source_rule=source.name,
            source_id=source.id,
            at=source.at,
        )


@attrs.frozen
class _Range:
    """A pool or V2 rule on its frontend, its backends, and the ports they get."""

    source: InboundNatPool | InboundNatRule
    kind: NatKind
    frontend: Frontend
    backends: tuple[Backend, ...]
    allocator: RangeAllocator

    def entries(self, lb: LoadBalancer) -> list[NatEntry]:
        """One entry per backend that got a port, and transport, in backend order."""
        entries: list[NatEntry] = []
        ports = self.allocator.ports
        for backend in self.backends:
            if backend.key not in ports:
                continue
            name = self.source.name
            if self.kind is NatKind.POOL:
                instance = backend.instance_id
                name = f"{name}.{backend.name if instance is None else instance}"
            entries += entries_for(
                lb,
                self.source,
                self.kind,
                self.frontend,
                port=ports[backend.key],
                backend=backend,
                name=name,
            )
        return entries


class NatExpander:
    """Expands every NAT pool and rule of the deployment's load balancers.

    ``held``: the ports backends already hold, keyed by (pool or V2 rule id lowered,
    ``Backend.key``), as ``held_ports`` reads them from an earlier plan. A running load
    balancer that re-plans passes them so that a backend keeps its port while it exists, as
    Azure's do; a held port outside the range or taken by another claim is given up.
    """

    def __init__(
        self,
        index: Index,
        frontends: dict[str, Frontend],
        members: Sequence[Member],
        held: HeldPorts | None = None,
    ) -> None:
        self.index, self.frontends, self.members = index, frontends, members
        self.held: HeldPorts = held or {}
        self.problems: list[Problem] = []

    def expand(self, balancers: Iterable[LoadBalancer]) -> list[NatEntry]:
        """Pools' entries, then rules', per load balancer. Single ports are held first; then
        every V2 rule and pool re-takes the ports its backends hold; then their new backends
        take the lowest free ports, V2 rules' first, then pools' (which skip the V2 rules')."""
        entries: list[NatEntry] = []
        for lb in balancers:
            taken = Taken.single_ports(lb)
            rules = [self._rule(lb, rule, taken) for rule in lb.inbound_nat_rules]
            pools = [self._pool(lb, pool, taken) for pool in lb.inbound_nat_pools]
            ranges = [r for r in (*rules, *pools) if isinstance(r, _Range)]
            for ranged in ranges:
                ranged.allocator.keep(ranged.source.id.lower(), ranged.backends, self.held)
            for ranged in ranges:
                ranged.allocator.fill(ranged.backends)
                if len(ranged.allocator.ports) < len(ranged.backends):
                    self._too_small(ranged.source, ranged.allocator, len(ranged.backends))
            for found in (*pools, *rules):
                entries += found.entries(lb) if isinstance(found, _Range) else found
        return entries

    def _frontend(
        self, lb: LoadBalancer, source: InboundNatPool | InboundNatRule
    ) -> Frontend | None:
        frontend = self.frontends.get(source.frontend_ip_configuration.key)
        if frontend is None:
            self.index.resolve(source.frontend_ip_configuration, FrontendIPConfiguration, source.id)
        return frontend

    def _ranged(
        self,
        lb: LoadBalancer,
        source: InboundNatPool | InboundNatRule,
        kind: NatKind,
        backends: Sequence[Backend],
        taken: Taken,
    ) -> _Range | None:
        """A pool or V2 rule whose backends each get one port of its range."""
        frontend = self._frontend(lb, source)
        start, end = source.frontend_port_range_start or 0, source.frontend_port_range_end or 0
        if frontend is None or not backends or start > end:  # start > end: InvalidFrontendPortRange
            return None
        allocator = RangeAllocator(taken, frontend.key, source.protocol.transports(), start, end)
        return _Range(source, kind, frontend, tuple(backends), allocator)

    def _too_small(
        self, source: InboundNatPool | InboundNatRule, ranged: RangeAllocator, wanted: int
    ) -> None:
        code = (
            "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"
            if isinstance(source, InboundNatPool)
            else "InboundNatRuleFrontendPortRangeSmallerThanRequestedPorts"
        )
        others = ""
        if ranged.others:
            others = f", {ranged.others} of them held by other rules on its frontend and protocol,"
        self.problems.append(
            Problem(
                code,
                f"The frontend port range {ranged.start}-{ranged.end} of '{source.name}' has "
                f"{ranged.size} port(s){others} but {wanted} backend(s) need one each.",
                source.at,
            )
        )

    # --- pools --------------------------------------------------------------------------------
    def _pool(
        self, lb: LoadBalancer, pool: InboundNatPool, taken: Taken
    ) -> list[NatEntry] | _Range:
        key = pool.id.lower()
        users = [
            m.backend
            for m in self.members
            if any(r.key == key for r in m.ip_configuration.load_balancer_inbound_nat_pools)
        ]
        return self._ranged(lb, pool, NatKind.POOL, users, taken) or []

    # --- rules ------------------------------------------------------------------------------
    def _rule(
        self, lb: LoadBalancer, rule: InboundNatRule, taken: Taken
    ) -> list[NatEntry] | _Range:
        if not self._rule_shape_ok(rule):
            return []
        if rule.is_v2:
            pool = self.index.resolve(rule.backend_address_pool, BackendAddressPool, rule.id)
            if pool is None:
                self._frontend(lb, rule)
                return []
            members = pool_members(pool, self.members)
            return self._ranged(lb, rule, NatKind.RULE_V2, members, taken) or []
        frontend = self._frontend(lb, rule)
        if frontend is None:
            return []
        key = rule.id.lower()
        users = [
            m.backend
            for m in self.members
            if any(r.key == key for r in m.ip_configuration.load_balancer_inbound_nat_rules)
        ]
        backend = users[0] if users else None
        return list(
            entries_for(
                lb,
                rule,
                NatKind.RULE_V1,
                frontend,
                port=rule.frontend_port or 0,
                backend=backend,
                name=rule.name,
            )
        )

    def _rule_shape_ok(self, rule: InboundNatRule) -> bool:
        has_range = (
            rule.frontend_port_range_start is not None or rule.frontend_port_range_end is not None
        )
        if rule.frontend_port is not None and has_range:
            self.problems.append(
                Problem(
                    "UnsupportedSetOfInboundNatRulePropertiesWhenFrontendPortIsSpecified",
                    f"If FrontendPort {rule.frontend_port} is set on '{rule.name}', properties "
                    "FrontendPortRangeStart and FrontendPortRangeEnd must not be set.",
                    rule.at,
                )
            )
            return False
        complete = (
            rule.frontend_port_range_start is not None and rule.frontend_port_range_end is not None
        )
        v2_shaped = rule.is_v2 or has_range
        if (v2_shaped and not (complete and rule.is_v2)) or (
            rule.frontend_port is None and not v2_shaped
        ):
            self.problems.append(
                Problem(
                    "MissedInboundNatRuleV2Properties",
                    f"The inbound NAT rule '{rule.name}' needs either frontendPort (V1) or "
                    "frontendPortRangeStart, frontendPortRangeEnd and backendAddressPool (V2).",
                    rule.at,
                )
            )
            return False
        return True


def pool_members(pool: BackendAddressPool, members: Sequence[Member]) -> list[Backend]:
    """The backends of a backend pool: NIC ipconfigs that join it, then members by address."""
    key = pool.id.lower()
    found = [
        m.backend
        for m in members
        if any(r.key == key for r in m.ip_configuration.load_balancer_backend_address_pools)
    ]
    seen = {b.key for b in found}
    for address in pool.load_balancer_backend_addresses:
        match = _by_address(address.ip_address, address.network_interface_ip_configuration, members)
        if match is not None and match.key not in seen:
            found.append(match)
            seen.add(match.key)
    return found


def _by_address(ip: str | None, ref: object, members: Sequence[Member]) -> Backend | None:
    ref_key = getattr(ref, "key", None)
    for member in members:
        if ip is not None and member.backend.private_ip_address == ip:
            return member.backend
        if ref_key is not None and member.backend.key == ref_key:
            return member.backend
    return None
