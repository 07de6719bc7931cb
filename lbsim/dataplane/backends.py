"""The backends a plan's flows and probes reach: built-in instance servers (one loopback
address per instance), the user's own services, and the health probes that watch them; and
the listeners built over them."""

from __future__ import annotations

import contextlib
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
from lbsim.dataplane.ssh import SshHost, SshInstance
from lbsim.model import ProbeProtocol, TransportProtocol

Target = tuple[str, int]
TargetKey = tuple[str, str, int]  # (backend key, transport, backend port)


class Backends:
    """Starts what stands behind each backend port, knows where it listens, and keeps that
    in step with the plan, in two steps: :meth:`prepare` starts the built-in servers and
    probes a new plan needs and changes nothing that runs (so a failure or a cancellation
    leaves everything as it was: :meth:`abandon` stops what it started); :meth:`commit`, with
    no checkpoint, makes the new plan current and stops what it no longer needs. Each server
    and prober runs in a cancel scope of its own. A built-in instance keeps its loopback
    address for as long as it is in the plan (the lowest free one of ``instance_network``
    when it first appears), so a change to one scale set never renumbers another's. With an
    ``ssh`` host, a built-in instance's SSH ports (22 on Linux, and ``settings.ssh.ports``)
    speak real SSH."""

    def __init__(self, plan: Plan, settings: RuntimeSettings, ssh: SshHost | None = None) -> None:
        self.plan = plan
        self.settings = settings
        self.ssh = ssh
        self.targets: dict[TargetKey, Target] = {}
        self._servers: dict[TargetKey, _Running[list[InstanceServer]]] = {}
        self._probes: dict[ProbeKey, _Running[ProbeState]] = {}
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
        self.commit(await self.prepare(self.plan))

    async def prepare(self, plan: Plan, settings: RuntimeSettings | None = None) -> Pending:
        """Start what ``plan`` needs and does not run yet (returns once each new probe has a
        first result). Nothing running is changed, except a server that must start again on
        the same address (its instance's identity or probe protocol changed)."""
        assert self._nursery is not None, "start() comes first"
        pending = Pending(plan, settings or self.settings, dict(self._hosts))
        try:
            await self._prepare_servers(pending)
            await self._prepare_probes(pending)
        except BaseException:
            self.abandon(pending)
            raise
        return pending

    def abandon(self, pending: Pending) -> None:
        """Stop what ``prepare`` started for a change that is not made."""
        for server in pending.servers.values():
            server.scope.cancel()
        for prober in pending.probes.values():
            prober.scope.cancel()

    def commit(self, pending: Pending) -> None:
        """Make ``pending``'s plan the current one (no checkpoint): stop the servers and
        probes it does not need, keep the rest, and forget removed instances' addresses."""
        for key, running in list(self._servers.items()):
            if key not in pending.wanted or key in pending.servers:
                running.scope.cancel()
                del self._servers[key]
        self._servers.update(pending.servers)
        for name, prober in list(self._probes.items()):
            kept = pending.kept_probes.get(name)
            if kept is None:
                prober.scope.cancel()
                del self._probes[name]
            else:  # its power state and address, for the next check: a stopped instance
                prober.value.backend, prober.value.target = kept  # fails threshold times
        self._probes.update(pending.probes)
        present = {b.key for b in pending.plan.backends}
        self._hosts = {k: v for k, v in pending.hosts.items() if k in present}
        self.targets = pending.targets
        self.plan, self.settings = pending.plan, pending.settings
        if self.ssh is not None:  # (instances that left the plan forget their host keys)
            self.ssh.commit(pending.plan)

    def target(self, backend: Backend, protocol: TransportProtocol, port: int) -> Target | None:
        """Where flows to ``port`` of ``backend`` go; None while the instance is stopped."""
        if not backend.running:
            return None
        return self.targets.get((backend.key, protocol.value, port))

    async def _prepare_servers(self, pending: Pending) -> None:
        """The targets of ``pending``'s plan: users' services, the built-in servers running
        that stay, and new built-in servers for the rest."""
        probed = _probe_protocols(pending.plan)
        for backend, protocol, port in _needs(pending.plan):
            key = (backend.key, protocol.value, port)
            user = self.user_target(pending.settings, backend, port)
            if user is not None:
                pending.targets[key] = user
                continue
            if not backend.running:  # a stopped instance has no server
                continue
            probe = probed.get((backend.key, port))
            shape = (
                _identity(backend),
                probe,
                backend.running,
                backend.generation,  # a reimaged instance starts again, with a new host key
                self._speaks_ssh(pending.settings, backend, protocol, port, probe),
            )
            pending.wanted.add(key)
            running = self._servers.get(key)
            if running is not None and running.shape == shape:
                pending.targets[key] = running.value[0].address
                continue
            if running is not None:  # the same address, another server: this one goes now
                running.scope.cancel()
                del self._servers[key]
            host = _host(pending.hosts, backend, pending.settings, self._hosts)
            free = _shared(pending.settings)  # one address for all: each on a port of its own
            ssh = backend if shape[4] else None
            start = partial(
                self._start_one, shape[0], protocol, port, host, probed=shape[1], free=free, ssh=ssh
            )
            assert self._nursery is not None
            started: _Running[list[InstanceServer]] = await self._nursery.start(
                _scoped, start, shape
            )
            pending.servers[key] = started
            pending.targets[key] = started.value[0].address

    async def _start_one(
        self,
        identity: InstanceIdentity,
        protocol: TransportProtocol,
        port: int,
        host: str,
        nursery: trio.Nursery,
        *,
        probed: ProbeProtocol | None,
        free: bool = False,
        ssh: Backend | None = None,
    ) -> list[InstanceServer]:
        serve = None
        if ssh is not None:
            assert self.ssh is not None
            instance = await self.ssh.start(ssh, identity, partial(self._own, ssh.key))
            nursery.start_soon(_ssh_lifetime, self.ssh, instance)
            serve = partial(self.ssh.serve, instance)
        start = partial(start_instance, nursery, identity, protocol, port, host=host)
        if not free:  # a privileged or busy port: any free port stands in for it
            with contextlib.suppress(OSError):
                return await start(probed=probed, ssh=serve)
        return await start(port=0, probed=probed, ssh=serve)

    def _own(self, key: str, port: int) -> Target | None:
        """Where the instance ``key``'s own TCP ``port`` is served (an SSH login's
        ``ssh -L 8080:localhost:80``); None when nothing serves it."""
        return self.targets.get((key, TransportProtocol.TCP.value, port))

    def _speaks_ssh(
        self,
        settings: RuntimeSettings,
        backend: Backend,
        protocol: TransportProtocol,
        port: int,
        probed: ProbeProtocol | None,
    ) -> bool:
        """Whether a built-in server is an SSH server: port 22 of a Linux instance or a port
        ``ssh_ports`` adds, over TCP, that no HTTP(S) health probe checks (that probe's
        protocol wins, as for any port)."""
        web = probed in (ProbeProtocol.HTTP, ProbeProtocol.HTTPS)
        tcp = TransportProtocol.TCP in protocol.transports()
        login = port == 22 == service_port(backend)
        ssh_port = login or port in settings.ssh.ports
        return self.ssh is not None and ssh_port and tcp and not web

    async def _prepare_probes(self, pending: Pending) -> None:
        """One prober per (probe, backend): those whose probe is unchanged are kept (their
        backend and target take effect at commit); new ones start at once, and this returns
        after each one's first result, so a rule's backends are known up or down before
        their listener serves."""
        wanted: dict[ProbeKey, tuple[PlannedProbe, Backend, Target]] = {}
        for probe, backend in _probed(pending.plan):
            key = (probe.load_balancer, probe.name, backend.key)
            target = pending.targets.get((backend.key, TransportProtocol.TCP.value, probe.port))
            if target is None or not backend.running:  # a stopped instance: its own address
                target = (_host(pending.hosts, backend, pending.settings, self._hosts), probe.port)
            wanted.setdefault(key, (probe, backend, target))
        starting: list[tuple[ProbeKey, ProbeState]] = []
        for key, (probe, backend, target) in wanted.items():
            running = self._probes.get(key)
            if running is not None and running.value.probe == probe:
                pending.kept_probes[key] = (backend, target)
            else:
                starting.append((key, ProbeState(probe, backend, target)))
        assert self._nursery is not None
        nursery = self._nursery

        async def start(key: ProbeKey, state: ProbeState) -> None:
            pending.probes[key] = await nursery.start(_scoped, partial(_run_probe, state), None)

        async with trio.open_nursery() as all_at_once:
            for key, state in starting:
                all_at_once.start_soon(start, key, state)

    def _probe_of(self, entry: NatEntry | BalancingEntry, backend: Backend) -> ProbeState | None:
        probe = getattr(entry, "probe", None)
        if probe is None:
            return None
        running = self._probes.get((probe.load_balancer, probe.name, backend.key))
        return running.value if running is not None else None

    @staticmethod
    def user_target(
        settings: RuntimeSettings, backend: Backend, port: int
    ) -> tuple[str, int] | None:
        names = [backend.scale_set, backend.name] if backend.scale_set else [backend.name]
        for name in names:
            pattern = settings.backends.get((name or "").lower())
            if pattern is not None:
                return pattern.address(backend.instance_id or 0, port)
        return None

    # --- listeners ------------------------------------------------------------------------
    def listeners(self) -> Iterator[Listener]:
        """A listener for every NAT entry with a backend and every rule with backends."""
        for entry in _entries(self.plan):
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


ProbeKey = tuple[str, str, str]  # (load balancer, probe, backend key)


@attrs.define
class Pending:
    """A change :meth:`Backends.prepare` made ready: what it started, what the new plan's
    flows reach, and which running probers stay (with their new backend and target)."""

    plan: Plan
    settings: RuntimeSettings
    hosts: dict[str, str]
    targets: dict[TargetKey, Target] = attrs.Factory(dict)
    wanted: set[TargetKey] = attrs.Factory(set)  # built-in servers the plan needs
    servers: dict[TargetKey, _Running[list[InstanceServer]]] = attrs.Factory(dict)
    probes: dict[ProbeKey, _Running[ProbeState]] = attrs.Factory(dict)
    kept_probes: dict[ProbeKey, tuple[Backend, Target]] = attrs.Factory(dict)


def _host(
    hosts: dict[str, str], backend: Backend, settings: RuntimeSettings, current: dict[str, str]
) -> str:
    """The backend's loopback address: the one it has, else the lowest free address of the
    instance network (not one of the addresses in use now, even if its instance goes in
    this change: its server still runs until the change is committed). A network of one
    address (``offset:N``, ``ephemeral``) is every instance's, each on a free port."""
    host = hosts.get(backend.key)
    if host is None:
        network = ipaddress.ip_network(settings.instance_network)
        taken = set() if _shared(settings) else {*hosts.values(), *current.values()}
        host = next(str(a) for a in network.hosts() if str(a) not in taken)
        hosts[backend.key] = host
    return host


def _shared(settings: RuntimeSettings) -> bool:
    """Whether built-in instances share one address (each then on a free port)."""
    return ipaddress.ip_network(settings.instance_network).num_addresses == 1


def _entries(plan: Plan) -> Iterator[NatEntry | BalancingEntry]:
    yield from (e for e in plan.nat if e.backend is not None)
    yield from (e for e in plan.balancing if e.backends)


def _probed(plan: Plan) -> Iterator[tuple[PlannedProbe, Backend]]:
    for entry in plan.balancing:
        if entry.probe is not None:
            for backend in entry.backends:
                yield entry.probe, backend


def _probe_protocols(plan: Plan) -> dict[tuple[str, int], ProbeProtocol]:
    """What the health probes speak to each (backend, port): a built-in server there
    answers in kind (HTTPS before HTTP before TCP where probes differ)."""
    rank = {ProbeProtocol.TCP: 0, ProbeProtocol.HTTP: 1, ProbeProtocol.HTTPS: 2}
    found: dict[tuple[str, int], ProbeProtocol] = {}
    for probe, backend in _probed(plan):
        key = (backend.key, probe.port)
        if key not in found or rank[probe.protocol] > rank[found[key]]:
            found[key] = probe.protocol
    return found


def _needs(plan: Plan) -> list[tuple[Backend, TransportProtocol, int]]:
    """Every (backend, transport, port) that flows or probes reach, and every running
    instance's remote-login port (:func:`service_port`), which flows inside the virtual
    network reach (lbsim.dataplane.vnet)."""
    tcp = TransportProtocol.TCP
    seen: dict[tuple[str, str, int], tuple[Backend, TransportProtocol, int]] = {}
    for entry in _entries(plan):
        for backend in _backends_of(entry):
            key = (backend.key, entry.protocol.value, entry.backend_port)
            seen.setdefault(key, (backend, entry.protocol, entry.backend_port))
    for probe, backend in _probed(plan):
        seen.setdefault((backend.key, tcp.value, probe.port), (backend, tcp, probe.port))
    for backend in plan.backends:
        port = service_port(backend)
        seen.setdefault((backend.key, tcp.value, port), (backend, tcp, port))
    return list(seen.values())


def service_port(backend: Backend) -> int:
    """The port a VM's operating system serves remote logins on: 3389 (RDP) on Windows, 22
    (SSH) otherwise."""
    return 3389 if (backend.os_type or "").lower() == "windows" else 22


def _backends_of(entry: NatEntry | BalancingEntry) -> tuple[Backend, ...]:
    if isinstance(entry, NatEntry):
        return (entry.backend,) if entry.backend is not None else ()
    return entry.backends


_Shape = tuple[InstanceIdentity, ProbeProtocol | None, bool, int, bool] | None
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


async def _ssh_lifetime(ssh: SshHost, instance: SshInstance) -> None:
    """Live as long as the instance's server: when it stops, so do its SSH connections."""
    try:
        await trio.sleep_forever()
    finally:
        ssh.stop(instance)


async def _run_probe(state: ProbeState, nursery: trio.Nursery) -> ProbeState:
    await nursery.start(probes.run, state)
    return state


def _identity(backend: Backend) -> InstanceIdentity:
    return InstanceIdentity(
        backend.scale_set or backend.name,
        backend.instance_id if backend.scale_set is not None else None,
        backend.private_ip_address,
    )
