"""Inbound NAT: pools (V1, for scale sets), rules V1 (one port to one NIC) and rules V2 (a port
range over a backend pool), expanded into one ``NatEntry`` per backend and transport.

Ports: each backend takes the lowest free port of the range, in backend order, and keeps it
(azure-facts.md §1.4), so a fresh scale set maps instance i to ``start + i``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from lbsim.control.backends import Member
from lbsim.control.index import Index
from lbsim.control.types import Backend, Frontend, NatEntry, NatKind
from lbsim.errors import Problem
from lbsim.model import (
    BackendAddressPool,
    FrontendIPConfiguration,
    InboundNatPool,
    InboundNatRule,
    LoadBalancer,
)


class PortRange:
    """The free ports of one frontend port range, handed out lowest first."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self._next = start

    def take(self) -> int | None:
        if self._next > self.end:
            return None
        port, self._next = self._next, self._next + 1
        return port


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
            at=source.at,
        )


class NatExpander:
    """Expands every NAT pool and rule of the deployment's load balancers."""

    def __init__(
        self, index: Index, frontends: dict[str, Frontend], members: Sequence[Member]
    ) -> None:
        self.index, self.frontends, self.members = index, frontends, members
        self.problems: list[Problem] = []

    def expand(self, balancers: Iterable[LoadBalancer]) -> list[NatEntry]:
        entries: list[NatEntry] = []
        for lb in balancers:
            for pool in lb.inbound_nat_pools:
                entries += self._pool(lb, pool)
            for rule in lb.inbound_nat_rules:
                entries += self._rule(lb, rule)
        return entries

    def _frontend(
        self, lb: LoadBalancer, source: InboundNatPool | InboundNatRule
    ) -> Frontend | None:
        frontend = self.frontends.get(source.frontend_ip_configuration.key)
        if frontend is None:
            self.index.resolve(source.frontend_ip_configuration, FrontendIPConfiguration, source.id)
        return frontend

    # --- pools --------------------------------------------------------------------------------
    def _pool(self, lb: LoadBalancer, pool: InboundNatPool) -> list[NatEntry]:
        frontend = self._frontend(lb, pool)
        users = [
            m
            for m in self.members
            if any(
                r.key == pool.id.lower() for r in m.ip_configuration.load_balancer_inbound_nat_pools
            )
        ]
        inverted = pool.frontend_port_range_start > pool.frontend_port_range_end
        if frontend is None or not users or inverted:  # inverted: InvalidFrontendPortRange
            return []
        ports = PortRange(pool.frontend_port_range_start, pool.frontend_port_range_end)
        entries: list[NatEntry] = []
        for member in users:
            port = ports.take()
            if port is None:
                self._too_small(
                    pool, len(users), "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"
                )
                return entries
            instance = member.backend.instance_id
            name = f"{pool.name}.{member.backend.name if instance is None else instance}"
            entries += entries_for(
                lb, pool, NatKind.POOL, frontend, port=port, backend=member.backend, name=name
            )
        return entries

    def _too_small(self, source: InboundNatPool | InboundNatRule, wanted: int, code: str) -> None:
        start, end = source.frontend_port_range_start, source.frontend_port_range_end
        size = (end or 0) - (start or 0) + 1
        self.problems.append(
            Problem(
                code,
                f"The frontend port range {start}-{end} of '{source.name}' has {size} port(s) "
                f"but {wanted} backend(s) need one each.",
                source.at,
            )
        )

    # --- rules ------------------------------------------------------------------------------
    def _rule(self, lb: LoadBalancer, rule: InboundNatRule) -> list[NatEntry]:
        if not self._rule_shape_ok(rule):
            return []
        frontend = self._frontend(lb, rule)
        if frontend is None:
            return []
        if rule.is_v2:
            return self._rule_v2(lb, rule, frontend)
        users = [
            m.backend
            for m in self.members
            if any(
                r.key == rule.id.lower() for r in m.ip_configuration.load_balancer_inbound_nat_rules
            )
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

    def _rule_v2(
        self, lb: LoadBalancer, rule: InboundNatRule, frontend: Frontend
    ) -> list[NatEntry]:
        pool = self.index.resolve(rule.backend_address_pool, BackendAddressPool, rule.id)
        start, end = rule.frontend_port_range_start or 0, rule.frontend_port_range_end or 0
        if pool is None or start > end:  # start > end: InvalidFrontendPortRange
            return []
        ports = PortRange(start, end)
        entries: list[NatEntry] = []
        members = pool_members(pool, self.members)
        for backend in members:
            port = ports.take()
            if port is None:
                self._too_small(
                    rule, len(members), "InboundNatRuleFrontendPortRangeSmallerThanRequestedPorts"
                )
                break
            entries += entries_for(
                lb, rule, NatKind.RULE_V2, frontend, port=port, backend=backend, name=rule.name
            )
        return entries


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
