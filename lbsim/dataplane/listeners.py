"""Listeners: one per (frontend address, transport, frontend port) of a Plan, each with the
route(s) its flows take and the counters they bump."""

from __future__ import annotations

import zlib

import attrs

from lbsim.control.types import Backend, BalancingEntry, NatEntry
from lbsim.dataplane.stats import RuleStats
from lbsim.model import LoadDistribution, TransportProtocol


@attrs.frozen
class Route:
    """Where a flow goes: a backend, its backend port, and the local address standing in."""

    backend: Backend
    backend_port: int
    target: tuple[str, int]


@attrs.define(eq=False)
class Listener:
    """The runtime side of one NAT entry or load-balancing rule (for one transport)."""

    entry: NatEntry | BalancingEntry
    routes: tuple[Route, ...]
    idle_timeout_s: float
    stats: RuleStats = attrs.Factory(RuleStats)
    bound: tuple[str, int] | None = None

    @property
    def protocol(self) -> TransportProtocol:
        return self.entry.protocol

    @property
    def address(self) -> tuple[str, int]:
        return (self.entry.frontend.address, self.entry.frontend_port)

    @property
    def label(self) -> str:
        return f"{self.entry.frontend.address}:{self.entry.frontend_port}"

    def pick(self, client: tuple[str, int]) -> Route:
        """The route of a new flow: a NAT entry has one; a load-balancing rule hashes the
        flow's tuple as its distribution mode says (azure-facts.md §3.1)."""
        if len(self.routes) == 1:
            return self.routes[0]
        mode = getattr(self.entry, "load_distribution", LoadDistribution.DEFAULT)
        frontend = self.label
        if mode is LoadDistribution.SOURCE_IP:
            key = f"{client[0]}|{frontend.rpartition(':')[0]}"
        elif mode is LoadDistribution.SOURCE_IP_PROTOCOL:
            key = f"{client[0]}|{frontend.rpartition(':')[0]}|{self.protocol.value}"
        else:
            key = f"{client[0]}|{client[1]}|{frontend}|{self.protocol.value}"
        return self.routes[zlib.crc32(key.encode()) % len(self.routes)]
