"""The backends a plan's flows and probes reach: built-in instance servers (one loopback
address per instance), the user's own services, and the health probes that watch them; and
the listeners built over them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import trio

from lbsim.control.types import Backend, BalancingEntry, NatEntry, Plan, PlannedProbe
from lbsim.dataplane import probes
from lbsim.dataplane.instances import InstanceIdentity, InstanceServer, start_instance
from lbsim.dataplane.listeners import Listener, Route
from lbsim.dataplane.probes import ProbeState
from lbsim.dataplane.settings import RuntimeSettings
from lbsim.model import ProbeProtocol, TransportProtocol

Target = tuple[str, int]
TargetKey = tuple[str, str, int]  # (backend key, transport, backend port)


class Backends:
    """Starts what stands behind each backend port and knows where it listens."""

    def __init__(self, plan: Plan, settings: RuntimeSettings) -> None:
        self.plan = plan
        self.settings = settings
        self.instances: list[InstanceServer] = []
        self.probes: list[ProbeState] = []
        self.targets: dict[TargetKey, Target] = {}

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the built-in servers and the probes in ``nursery``; returns once every
        probe has a first result."""
        self.targets = await self._start_instances(nursery)
        await self._start_probes(nursery, self.targets)

    async def _start_instances(self, nursery: trio.Nursery) -> dict[TargetKey, Target]:
        """Start a built-in server for every (backend, transport, port) no user service
        covers; the local address of each (backend, transport, port)."""
        targets: dict[TargetKey, Target] = {}
        hosts = self._instance_hosts()
        probed = self._probe_protocols()
        for backend, protocol, port in self._needs():
            key = (backend.key, protocol.value, port)
            user = self._user_target(backend, port)
            if user is not None:
                targets[key] = user
                continue
            identity = InstanceIdentity(
                backend.scale_set or backend.name,
                backend.instance_id if backend.instance_id is not None else 0,
                backend.private_ip_address,
            )
            speaks = probed.get((backend.key, port))
            host = hosts[backend.key]
            servers = await self._start_one(nursery, identity, protocol, port, host, probed=speaks)
            self.instances += servers
            targets[key] = servers[0].address
        return targets

    async def _start_one(
        self,
        nursery: trio.Nursery,
        identity: InstanceIdentity,
        protocol: TransportProtocol,
        port: int,
        host: str,
        *,
        probed: ProbeProtocol | None,
    ) -> list[InstanceServer]:
        try:
            return await start_instance(nursery, identity, protocol, port, host=host, probed=probed)
        except OSError:  # a privileged or busy port: any free port stands in for it
            return await start_instance(
                nursery, identity, protocol, port, host=host, port=0, probed=probed
            )

    def _probe_protocols(self) -> dict[tuple[str, int], ProbeProtocol]:
        """What the health probes speak to each (backend, port): a built-in server there
        answers in kind (HTTPS before HTTP before TCP where probes differ)."""
        rank = {ProbeProtocol.TCP: 0, ProbeProtocol.HTTP: 1, ProbeProtocol.HTTPS: 2}
        found: dict[tuple[str, int], ProbeProtocol] = {}
        for probe, backend in self._probed():
            key = (backend.key, probe.port)
            if key not in found or rank[probe.protocol] > rank[found[key]]:
                found[key] = probe.protocol
        return found

    def _needs(self) -> list[tuple[Backend, TransportProtocol, int]]:
        """Every (backend, transport, port) that flows or probes reach."""
        tcp = TransportProtocol.TCP
        seen: dict[tuple[str, str, int], tuple[Backend, TransportProtocol, int]] = {}
        for entry in self._entries():
            for backend in _backends_of(entry):
                key = (backend.key, entry.protocol.value, entry.backend_port)
                seen.setdefault(key, (backend, entry.protocol, entry.backend_port))
        for probe, backend in self._probed():
            seen.setdefault((backend.key, tcp.value, probe.port), (backend, tcp, probe.port))
        return list(seen.values())

    def _probed(self) -> Iterator[tuple[PlannedProbe, Backend]]:
        for entry in self.plan.balancing:
            if entry.probe is not None:
                for backend in entry.backends:
                    yield entry.probe, backend

    async def _start_probes(self, nursery: trio.Nursery, targets: dict[TargetKey, Target]) -> None:
        """One prober per (probe, backend), all started at once; returns after every first
        result, so a rule's backends are known up or down before lbsim reports ready."""
        found: dict[tuple[str, str, str], ProbeState] = {}
        for probe, backend in self._probed():
            key = (probe.load_balancer, probe.name, backend.key)
            target = targets.get((backend.key, TransportProtocol.TCP.value, probe.port))
            if target is not None and key not in found:
                found[key] = ProbeState(probe, backend, target)
        self.probes = list(found.values())
        async with trio.open_nursery() as starting:
            for state in self.probes:
                starting.start_soon(nursery.start, probes.run, state)

    def _probe_of(self, entry: NatEntry | BalancingEntry, backend: Backend) -> ProbeState | None:
        probe = getattr(entry, "probe", None)
        if probe is None:
            return None
        return next(
            (s for s in self.probes if s.probe == probe and s.backend.key == backend.key), None
        )

    def _instance_hosts(self) -> dict[str, str]:
        network = ipaddress.ip_network(self.settings.instance_network)
        return {
            b.key: str(network.network_address + i + 1) for i, b in enumerate(self.plan.backends)
        }

    def _user_target(self, backend: Backend, port: int) -> tuple[str, int] | None:
        names = [backend.scale_set, backend.name] if backend.scale_set else [backend.name]
        for name in names:
            pattern = self.settings.backends.get((name or "").lower())
            if pattern is not None:
                return pattern.address(backend.instance_id or 0, port)
        return None

    # --- listeners ------------------------------------------------------------------------
    def _entries(self) -> Iterator[NatEntry | BalancingEntry]:
        yield from (e for e in self.plan.nat if e.backend is not None)
        yield from (e for e in self.plan.balancing if e.backends)

    def listeners(self) -> Iterator[Listener]:
        """A listener for every NAT entry with a backend and every rule with backends."""
        targets, scale = self.targets, self.settings.idle_timeout_scale
        for entry in self._entries():
            routes = tuple(
                Route(
                    b,
                    entry.backend_port,
                    targets[(b.key, entry.protocol.value, entry.backend_port)],
                )
                for b in _backends_of(entry)
            )
            health = tuple(self._probe_of(entry, r.backend) for r in routes)
            yield Listener(entry, routes, entry.idle_timeout_s * scale, health=health)


def _backends_of(entry: NatEntry | BalancingEntry) -> tuple[Backend, ...]:
    if isinstance(entry, NatEntry):
        return (entry.backend,) if entry.backend is not None else ()
    return entry.backends
