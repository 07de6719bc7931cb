"""The backends a plan's flows and probes reach: built-in instance servers (one loopback
address per instance), the user's own services, and the health probes that watch them; and
the listeners built over them."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from typing import Generic, TypeVar

import attrs
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
    """Starts what stands behind each backend port, knows where it listens, and keeps that
    in step with the plan: :meth:`apply` starts the built-in servers and probes a new plan
    needs and stops those it no longer needs, each in a cancel scope of its own, and leaves
    the rest running. A built-in instance keeps its loopback address for as long as it is in
    the plan (the lowest free one of ``instance_network`` when it first appears), so a change
    to one scale set never renumbers another's instances."""

    def __init__(self, plan: Plan, settings: RuntimeSettings) -> None:
        self.plan = plan
        self.settings = settings
        self.targets: dict[TargetKey, Target] = {}
        self._servers: dict[TargetKey, _Running[list[InstanceServer]]] = {}
        self._probes: dict[tuple[str, str, str], _Running[ProbeState]] = {}
        self._hosts: dict[str, str] = {}  # backend key -> its loopback address
        self._nursery: trio.Nursery | None = None

    @property
    def instances(self) -> list[InstanceServer]:
        """The built-in instance servers running."""
        return [server for running in self._servers.values() for server in running.value]

    @property
    def probes(self) -> list[ProbeState]:
        """The health probes running, one per (probe, backend)."""
        return [running.value for running in self._probes.values()]

    async def start(self, nursery: trio.Nursery) -> None:
        """Start the built-in servers and probes of the plan in ``nursery``; returns once
        every probe has a first result."""
        self._nursery = nursery
        await self.apply(self.plan)

    async def apply(self, plan: Plan) -> None:
        """Run what ``plan`` needs: servers and probes it no longer needs stop, new ones start
        (returns once each new probe has a first result), the rest keep running."""
        assert self._nursery is not None, "start() comes first"
        self.plan = plan
        present = {b.key for b in plan.backends}
        for key in [k for k in self._hosts if k not in present]:
            del self._hosts[key]
        await self._apply_servers(self._nursery)
        await self._apply_probes(self._nursery)

    def target(self, backend: Backend, protocol: TransportProtocol, port: int) -> Target | None:
        """Where flows to ``port`` of ``backend`` go; None while the instance is stopped."""
        if not backend.running:
            return None
        return self.targets.get((backend.key, protocol.value, port))

    async def _apply_servers(self, nursery: trio.Nursery) -> None:
        probed = self._probe_protocols()
        wanted: dict[TargetKey, tuple[Backend, TransportProtocol, int, _Shape]] = {}
        for backend, protocol, port in self._needs():
            key = (backend.key, protocol.value, port)
            made = (_identity(backend), probed.get((backend.key, port)), backend.running)
            wanted[key] = (backend, protocol, port, made)
        for key, running in list(self._servers.items()):
            if key not in wanted or wanted[key][3] != running.shape:
                running.scope.cancel()
                del self._servers[key]
                self.targets.pop(key, None)
        for key in [k for k in self.targets if k not in wanted]:
            del self.targets[key]  # a user's service no longer reached
        for key, (backend, protocol, port, shape) in wanted.items():
            if key in self._servers or key in self.targets:
                continue
            user = self._user_target(backend, port)
            if user is not None:
                self.targets[key] = user
            elif backend.running and shape is not None:
                host = self._host(backend)
                start = partial(self._start_one, shape[0], protocol, port, host, probed=shape[1])
                started: _Running[list[InstanceServer]] = await nursery.start(_scoped, start, shape)
                self._servers[key] = started
                self.targets[key] = started.value[0].address

    async def _start_one(
        self,
        identity: InstanceIdentity,
        protocol: TransportProtocol,
        port: int,
        host: str,
        nursery: trio.Nursery,
        *,
        probed: ProbeProtocol | None,
    ) -> list[InstanceServer]:
        try:
            return await start_instance(nursery, identity, protocol, port, host=host, probed=probed)
        except OSError:  # a privileged or busy port: any free port stands in for it
            return await start_instance(
                nursery, identity, protocol, port, host=host, port=0, probed=probed
            )

    def _host(self, backend: Backend) -> str:
        """The backend's loopback address: kept while it is in the plan, else the lowest free
        address of the instance network."""
        host = self._hosts.get(backend.key)
        if host is None:
            network = ipaddress.ip_network(self.settings.instance_network)
            taken = set(self._hosts.values())
            host = next(str(a) for a in network.hosts() if str(a) not in taken)
            self._hosts[backend.key] = host
        return host

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

    async def _apply_probes(self, nursery: trio.Nursery) -> None:
        """One prober per (probe, backend); a prober whose probe or target changed starts
        again. New ones start at once; returns after each new one's first result, so a
        rule's backends are known up or down before their listener serves."""
        wanted: dict[tuple[str, str, str], tuple[PlannedProbe, Backend, Target]] = {}
        for probe, backend in self._probed():
            key = (probe.load_balancer, probe.name, backend.key)
            target = self.targets.get((backend.key, TransportProtocol.TCP.value, probe.port))
            if target is None and not backend.running:  # a stopped instance: its address
                target = (self._host(backend), probe.port)
            if target is not None:
                wanted.setdefault(key, (probe, backend, target))
        for key, running in list(self._probes.items()):
            found = wanted.get(key)
            state = running.value
            if found is None or found[0] != state.probe:
                running.scope.cancel()
                del self._probes[key]
            else:  # its power state and address, for the next check: a stopped instance
                state.backend, state.target = found[1], found[2]  # fails threshold times
        async with trio.open_nursery() as starting:
            for key, (probe, backend, target) in wanted.items():
                if key not in self._probes:
                    starting.start_soon(self._start_probe, nursery, key, probe, backend, target)

    async def _start_probe(
        self,
        nursery: trio.Nursery,
        key: tuple[str, str, str],
        probe: PlannedProbe,
        backend: Backend,
        target: Target,
    ) -> None:
        state = ProbeState(probe, backend, target)
        self._probes[key] = await nursery.start(_scoped, partial(_run_probe, state), None)

    def _probe_of(self, entry: NatEntry | BalancingEntry, backend: Backend) -> ProbeState | None:
        probe = getattr(entry, "probe", None)
        if probe is None:
            return None
        running = self._probes.get((probe.load_balancer, probe.name, backend.key))
        return running.value if running is not None else None

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
        for entry in self._entries():
            yield self.listener(entry)

    def listener(self, entry: NatEntry | BalancingEntry) -> Listener:
        """A new listener for ``entry``, with its routes and their probes."""
        routes, health = self.routes(entry)
        scale = self.settings.idle_timeout_scale
        return Listener(entry, routes, entry.idle_timeout_s * scale, health=health)

    def routes(
        self, entry: NatEntry | BalancingEntry
    ) -> tuple[tuple[Route, ...], tuple[ProbeState | None, ...]]:
        """The routes of ``entry`` (a stopped instance's has no target) and each one's probe."""
        routes = tuple(
            Route(b, entry.backend_port, self.target(b, entry.protocol, entry.backend_port))
            for b in _backends_of(entry)
        )
        return routes, tuple(self._probe_of(entry, r.backend) for r in routes)


def _backends_of(entry: NatEntry | BalancingEntry) -> tuple[Backend, ...]:
    if isinstance(entry, NatEntry):
        return (entry.backend,) if entry.backend is not None else ()
    return entry.backends


_Shape = tuple[InstanceIdentity, ProbeProtocol | None, bool] | None
T = TypeVar("T")


@attrs.frozen
class _Running(Generic[T]):
    """Something started in a cancel scope of its own: cancelling the scope stops it."""

    value: T
    scope: trio.CancelScope
    shape: _Shape = None  # what it was started as (a change of shape restarts it)


async def _scoped(
    start: Callable[[trio.Nursery], Awaitable[T]],
    shape: _Shape,
    *,
    task_status: trio.TaskStatus[_Running[T]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run what ``start`` starts in a nursery of its own until the scope is cancelled."""
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            value = await start(nursery)
            task_status.started(_Running(value, scope, shape))


async def _run_probe(state: ProbeState, nursery: trio.Nursery) -> ProbeState:
    await nursery.start(probes.run, state)
    return state


def _identity(backend: Backend) -> InstanceIdentity:
    return InstanceIdentity(
        backend.scale_set or backend.name,
        backend.instance_id if backend.scale_set is not None else None,
        backend.private_ip_address,
    )
