"""Frontend port allocation for NAT pools and V2 NAT rules.

Azure gives each backend of a NAT pool (or of a V2 NAT rule's backend pool) one port of the
range, and a backend keeps its port for as long as it exists: when the pool scales in, the
mappings of the remaining backends persist, and new backends get new ones
(https://learn.microsoft.com/en-us/azure/load-balancer/inbound-nat-rules). So a port belongs
to whoever really holds it, not to the whole range: a load-balancing rule or a single-port NAT
rule may sit on a port inside a NAT pool's range (Microsoft's own Service Fabric sample
templates do so), and the pool's backends simply take the other ports. A range runs out only
when no port of it is left.

The order here, per load balancer: ports that single-port rules hold come first; then every
range (each NAT pool and V2 NAT rule) lets the backends that already hold a free port of it
keep it (``RangeAllocator.keep``); only then do the other backends take the lowest free port,
in member order, range by range (``RangeAllocator.fill``). So a new backend in one range
never takes a port that a backend of an overlapping range holds (a V2 rule's range may
overlap a pool's on one frontend): nobody's port moves when another range scales. A held
port that is outside the range now, or that a single-port rule holds, is given up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from lbsim.control.types import Backend, NatKind, Plan
from lbsim.model import LoadBalancer, TransportProtocol

Slot = tuple[str, TransportProtocol, int]  # (frontend key, transport, port)
HeldPorts = Mapping[tuple[str, str], int]  # (pool or V2 rule id lowered, Backend.key) -> port


class Taken:
    """The (frontend, transport, port) slots that something on a load balancer holds."""

    def __init__(self) -> None:
        self._slots: set[Slot] = set()

    @classmethod
    def single_ports(cls, lb: LoadBalancer) -> Taken:
        """The ports that ``lb``'s load-balancing rules and V1 NAT rules hold."""
        taken = cls()
        for rule in lb.load_balancing_rules:
            if rule.frontend_port != 0:  # 0: an HA ports rule, which lbsim leaves out
                taken.hold(
                    rule.frontend_ip_configuration.key,
                    rule.protocol.transports(),
                    rule.frontend_port,
                )
        for nat_rule in lb.inbound_nat_rules:
            if nat_rule.frontend_port is not None:
                taken.hold(
                    nat_rule.frontend_ip_configuration.key,
                    nat_rule.protocol.transports(),
                    nat_rule.frontend_port,
                )
        return taken

    def hold(self, frontend: str, transports: Iterable[TransportProtocol], port: int) -> None:
        self._slots.update((frontend, t, port) for t in transports)

    def free(self, frontend: str, transports: Iterable[TransportProtocol], port: int) -> bool:
        return all((frontend, t, port) not in self._slots for t in transports)


class RangeAllocator:
    """Hands out the ports of one range (one pool or V2 rule on one frontend) to backends, in
    two passes that ``NatExpander`` runs over every range of a load balancer: ``keep`` (the
    ports backends hold already), then ``fill`` (new backends)."""

    def __init__(
        self,
        taken: Taken,
        frontend: str,
        transports: Sequence[TransportProtocol],
        start: int,
        end: int,
    ) -> None:
        self.taken, self.frontend, self.transports = taken, frontend, tuple(transports)
        self.start, self.end = start, end
        self.ports: dict[str, int] = {}  # Backend.key -> port

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def others(self) -> int:
        """The ports of the range that something else holds (single-port rules, other
        ranges' backends)."""
        busy = sum(1 for p in range(self.start, self.end + 1) if not self._free(p))
        return busy - len(self.ports)

    def _free(self, port: int) -> bool:
        return self.taken.free(self.frontend, self.transports, port)

    def _take(self, port: int) -> int:
        self.taken.hold(self.frontend, self.transports, port)
        return port

    def keep(self, source_key: str, backends: Sequence[Backend], held: HeldPorts) -> None:
        """First pass: each backend that holds a port of this range that is still free keeps
        it (the first in member order, should two claim one port)."""
        for backend in backends:
            port = held.get((source_key, backend.key))
            if port is not None and self.start <= port <= self.end and self._free(port):
                self.ports[backend.key] = self._take(port)

    def fill(self, backends: Sequence[Backend]) -> dict[str, int]:
        """Second pass: the backends without a port take the lowest free ones, in member
        order, while the range has any. Backend key -> port, for every backend served."""
        free = self._lowest_free()
        for backend in backends:
            if backend.key in self.ports:
                continue
            port = next(free, None)
            if port is None:
                break
            self.ports[backend.key] = self._take(port)
        return self.ports

    def _lowest_free(self) -> Iterator[int]:
        """The free ports, lowest first; a port is checked again when it is reached, so ports
        taken meanwhile are skipped."""
        return (p for p in range(self.start, self.end + 1) if self._free(p))


def held_ports(plan: Plan) -> dict[tuple[str, str], int]:
    """The ports that each backend of a NAT pool or V2 NAT rule holds in ``plan``, keyed as
    ``NatExpander`` takes them, so that a new plan of the same load balancer keeps them."""
    return {
        (entry.source_id.lower(), entry.backend.key): entry.frontend_port
        for entry in plan.nat
        if entry.source_id
        and entry.backend is not None
        and entry.kind in (NatKind.POOL, NatKind.RULE_V2)
    }
