"""The Runtime: executes a Plan. Built-in instance servers, a listener per NAT entry and
load-balancing rule, the NSG verdict on every new flow, relays, counters, flow events.

TCP listeners and relayed connections live in an :class:`~lbsim.dataplane.engines.Engine`
(lbsim's reactor, or trio streams), which the runtime never asks about: a new connection is
judged, routed and connected inside the accept handler, with no task of its own, unless
something has to wait (a connect still in progress, a denial held or reset after a moment, an
unreachable backend): those few run as tasks.

It is the only mutable root of the data plane. ``run`` starts everything and reports itself
ready through ``task_status``; ``stop`` stops accepting, lets open flows drain for a bounded
time, then ends.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from lbsim.control.check import Guard
from lbsim.control.diff import ListenKey, PlanChange, diff, listen_table
from lbsim.control.types import BalancingEntry, NatEntry, Plan
from lbsim.dataplane import socks
from lbsim.dataplane.backends import Backends, Pending
from lbsim.dataplane.connect import (
    BackendUnreachableError,
    begin_connect,
    finish_connect,
    reset_soon,
)
from lbsim.dataplane.engines import Engine, engine_for
from lbsim.dataplane.events import NsgHit, RecordSink, discard
from lbsim.dataplane.faults import Fault, Faults, Toxics, rules_of
from lbsim.dataplane.instances import InstanceServer
from lbsim.dataplane.listeners import Listener, Route, same_family
from lbsim.dataplane.probes import ProbeState
from lbsim.dataplane.relay import (
    reset_socket,
)
from lbsim.dataplane.reports import About, FlowReporter
from lbsim.dataplane.serving import Serving
from lbsim.dataplane.serving import bind as bind_listeners
from lbsim.dataplane.settings import DenyMode, RuntimeSettings
from lbsim.dataplane.ssh import SshHost
from lbsim.dataplane.stats import FlowStats
from lbsim.dataplane.toxic import ToxicEngine, hold_down
from lbsim.dataplane.udpflows import serve_udp
from lbsim.dataplane.verdicts import UNJUDGED, Verdicts
from lbsim.dataplane.vnet import VirtualNetwork
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol


class Runtime:
    def __init__(
        self,
        plan: Plan,
        settings: RuntimeSettings | None = None,
        sink: RecordSink = discard,
        engine: Engine | None = None,
    ) -> None:
        self.plan = plan
        self.settings = settings or RuntimeSettings()
        self.port_map = self.settings.port_map  # as it started, like the engine
        self._engine = engine  # (made by run() if not given: the hosted reactor is the run's)
        self.reports = FlowReporter(sink)
        self.guard = Guard(plan)
        self.backends = Backends(plan, self.settings)
        self._serving: dict[ListenKey, Serving] = {}  # by identity, in the order opened
        self.nsg_decisions: dict[tuple[str, str, str, str], int] = {}
        self.verdicts = Verdicts(self.guard, explain=self.settings.explain_nsg)
        self.started_at = time.time()
        self._stop = trio.Event()
        self._all_closed = trio.Event()
        self._draining = False
        self._waiting: trio.Nursery | None = None  # flows that wait for something
        self._accepting: trio.Nursery | None = None  # UDP listeners' tasks
        self._applying = trio.Lock()
        self.faults = Faults()  # (see add_fault: a flow with no fault set pays one test)
        self._toxic = ToxicEngine()  # relays the flows that faults act on
        self.notice: Callable[[str], None] = _ignore  # one line for the operator (lbsim up)
        self.vnet = VirtualNetwork(self)  # connections from inside the virtual network
        self.ssh = SshHost(self.settings.ssh, self.vnet, self.vnet.notice)  # instances' SSH
        self.socks = socks.SocksEndpoint(self.vnet)  # serves when settings.socks is set
        self.socks_address: tuple[str, int] | None = None  # where the SOCKS endpoint listens

    @property
    def engine(self) -> Engine:
        """What accepts and relays TCP and reads UDP (see :mod:`lbsim.dataplane.engines`)."""
        assert self._engine is not None, "the runtime is not running"
        return self._engine

    @property
    def listeners(self) -> list[Listener]:
        """The listeners serving, in the order they were opened."""
        return [serving.listener for serving in self._serving.values()]

    @property
    def instances(self) -> list[InstanceServer]:
        """The built-in instance servers running."""
        return self.backends.instances

    @property
    def probes(self) -> list[ProbeState]:
        """The health probes running, one per (probe, backend)."""
        return self.backends.probes

    @property
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""
        return self._stop.is_set()

    def stop(self) -> None:
        """Stop accepting new flows; ``run`` returns once open flows drained (or the drain
        time ran out)."""
        self._stop.set()

    async def run(
        self, *, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.reports.now = trio.lowlevel.current_clock().current_time
        if self._engine is None:
            self._engine = engine_for(self.settings.tcp_engine)
        self._engine.on_end = self._toxic.on_end = self._flow_ended
        async with trio.open_nursery() as servers:
            await servers.start(self._engine.run)
            await servers.start(self._toxic.run)
            await servers.start(self.ssh.run)
            if self.settings.socks is not None:
                where = self.settings.socks
                self.socks_address = await servers.start(self.socks.serve, where)
            try:
                await self._serve(servers, task_status)
            finally:  # also when cancelled: no listening socket outlives the runtime
                for serving in self._serving.values():
                    self._close(serving)
            servers.cancel_scope.cancel()

    async def _serve(self, servers: trio.Nursery, task_status: trio.TaskStatus[Runtime]) -> None:
        async with trio.open_nursery() as waiting:
            self._waiting = waiting
            async with trio.open_nursery() as accepting:
                self._accepting = accepting
                first = self.plan
                self.backends = Backends(Plan(), self.settings, self.ssh)
                await self.backends.start(servers)
                self.plan = Plan()
                await self.apply(diff(self.plan, first))
                task_status.started(self)
                await self._stop.wait()
                for serving in self._serving.values():
                    self._close(serving)
                accepting.cancel_scope.cancel()
            self._accepting = None  # no change is applied any more
            deadline = trio.current_time() + self.settings.drain_timeout_s
            waiting.cancel_scope.deadline = deadline
            self._draining = True
            await self._drain(deadline)
        await self._drain(deadline)  # flows that a waiting connection opened meanwhile
        self.engine.abort_all()  # what the drain left open ends as cancelled
        self._toxic.abort_all()

    def count_kernel_drops(self) -> None:
        """Bring the UDP listeners' dropped counts up to date with the kernel's (its drops on
        full receive buffers are read off the hot path: the metrics collector calls this)."""
        for serving in self._serving.values():
            if serving.udp is not None:
                serving.udp.count_kernel_drops()

    @property
    def open_flows(self) -> int:
        """How many relayed TCP flows are open (on the engine, and faulted ones)."""
        return self.engine.open_flows + self._toxic.open_flows

    # --- faults -------------------------------------------------------------------------------
    def add_fault(self, fault: Fault) -> None:
        """Set ``fault``: it acts on new flows (and new UDP datagrams) from now on."""
        self.faults.add(fault)
        self._mark_down()

    def remove_fault(self, name: str) -> Fault:
        """Remove a fault: new flows go as before; connections a ``down`` held are reset."""
        fault = self.faults.remove(name)
        self._mark_down()
        return fault

    def _mark_down(self) -> None:
        """The probes of instances a ``down`` fault names fail, as a crashed VM's would."""
        for probe in self.probes:
            probe.down = self.faults.on and self.faults.down(probe.backend.label)

    # --- changes ------------------------------------------------------------------------------
    async def apply(
        self,
        change: PlanChange,
        settings: RuntimeSettings | None = None,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        """Run ``change.new`` instead of the plan running now (with ``settings``, if given,
        for new flows): the one place where listeners open and close, built-in servers and
        probes start and stop, and routes and cached NSG verdicts are replaced.

        In two steps. First what is new is made ready: new listeners bound, new servers and
        probes started; a failure (``FrontendBindFailed``, say) or a cancellation there
        undoes it and changes nothing. Then, with no checkpoint, the change is made whole:
        listeners that stay keep their sockets, counters and the flows on routes that stay;
        flows on a route that went (a removed or stopped instance) and flows of a removed
        listener are reset before their servers stop; ``on_commit`` runs last, inside the
        same step (the caller's own state changes with the runtime's or not at all). NSG
        changes apply to new flows only."""
        async with self._applying:
            if self._accepting is None or self.stopping:
                raise LbsimError("OperationNotAllowed", "lbsim is not serving")
            table = listen_table(change.new)
            bound = bind_listeners(
                [table[key] for key in change.listeners_added],
                self.port_map,
                self._serving.values(),
                self.instances,
            )
            try:
                pending = await self.backends.prepare(change.new, settings)
            except BaseException:
                for _, sock in bound:  # (not yet the engine's)
                    sock.close()
                raise
            self._commit(change, pending, bound)
            if on_commit is not None:
                on_commit()

    def _commit(
        self, change: PlanChange, pending: Pending, bound: list[tuple[Listener, socket.socket]]
    ) -> None:
        """The change, whole (no checkpoint)."""
        self.settings = pending.settings
        table = listen_table(change.new)
        stale: dict[Listener, set[_RouteKey] | None] = {}
        for key in change.listeners_removed:
            stale[self._unlisten(key)] = None
        self.backends.commit(pending)  # (servers stop at the next checkpoint: after this)
        self.plan = change.new
        self.guard = Guard(change.new)
        self.verdicts = Verdicts(self.guard, explain=self.settings.explain_nsg)
        self.reports.forget()
        for key, serving in self._serving.items():
            gone = self._reroute(serving.listener, table[key])
            if gone:
                stale[serving.listener] = gone
        self._reset_flows(stale)
        if self.faults.on:
            self._mark_down()
        for listener, sock in bound:
            listener.routes, listener.health = self.backends.routes(listener.entry)
            listener.idle_timeout_s *= self.settings.idle_timeout_scale
            self._listen(listener, sock)

    def _reroute(self, listener: Listener, entry: NatEntry | BalancingEntry) -> set[_RouteKey]:
        """Give ``listener`` the entry's current routes; the keys of routes it lost."""
        routes, health = self.backends.routes(entry)
        before = {r.key for r in listener.routes}
        listener.entry, listener.routes, listener.health = entry, routes, health
        listener.idle_timeout_s = entry.idle_timeout_s * self.settings.idle_timeout_scale
        serving = self._serving[listener.key]
        if serving.udp is not None:
            serving.udp.idle_timeout_s = listener.idle_timeout_s
        return before - {r.key for r in routes}

    def _listen(self, listener: Listener, sock: socket.socket) -> None:
        """Serve ``listener`` on its bound socket (the reactor's, or a task of its own)."""
        assert self._accepting is not None
        serving = Serving(listener, sock)
        self._serving[listener.key] = serving
        name = f"lbsim listener {listener.protocol.value} {listener.label}"
        if listener.protocol is TransportProtocol.UDP:
            self._accepting.start_soon(serve_udp, self, serving, name=name)
        else:
            self.engine.listen(sock, partial(self._accepted, listener))

    def _unlisten(self, key: ListenKey) -> Listener:
        """Stop serving a listener: its socket closes (its flows are reset by the caller)."""
        serving = self._serving.pop(key)
        self._close(serving)
        return serving.listener

    def _close(self, serving: Serving) -> None:
        """Stop a listener accepting: its UDP task ends, or the engine closes its socket
        (closing twice is harmless)."""
        serving.scope.cancel()
        if serving.listener.protocol is TransportProtocol.TCP:
            self.engine.close_listener(serving.sock)

    def _reset_flows(self, stale: dict[Listener, set[_RouteKey] | None]) -> None:
        """Reset the TCP flows on stale routes (None: every route of the listener) and
        forget the UDP flows whose backend went."""
        if not stale:
            return

        def doomed(tag: tuple[Listener, About]) -> bool:
            keys = stale.get(tag[0], set())
            return keys is None or tag[1][0].key in keys

        self.engine.reset(doomed)
        self._toxic.reset(doomed)
        for listener, keys in stale.items():
            serving = self._serving.get(listener.key)
            if keys is not None and serving is not None and serving.udp is not None:
                serving.udp.drop({k[2] for k in keys}.__contains__)

    async def _drain(self, deadline: float) -> None:
        """Return once no relayed flow is open, or at ``deadline``."""
        with trio.move_on_at(deadline):
            while self.open_flows:
                self._all_closed = trio.Event()
                await self._all_closed.wait()

    # --- TCP ----------------------------------------------------------------------------------
    def _accepted(self, listener: Listener, conn: socket.socket, address: Any) -> None:
        """A new connection: its route, the NSG verdict, the backend connect and the relay,
        all before the reactor goes on, unless something has to wait."""
        peer: tuple[str, int] = address[:2]
        route = listener.pick(peer)
        source = self.settings.sources.present(same_family(peer[0], route))
        if route is None:  # every backend of the rule is probed down: no new flows
            self._unreachable(listener, conn, None, source, peer, reason="no-healthy-backend")
            return
        if route.target is None:  # a stopped instance answers nothing
            self._unreachable(listener, conn, route, source, peer, reason="instance-stopped")
            return
        allowed, hits = self.admit(listener, route, source, peer)
        if not allowed:
            self._later(self._deny, conn)
            return
        if self.faults.on and self._faulted(listener, conn, (route, source, peer, hits)):
            return
        try:
            backend, connected = begin_connect(route.target)
        except BackendUnreachableError as error:  # (or out of descriptors: said as such)
            self._unreachable(listener, conn, route, source, peer, reason=error.reason)
            return
        if connected:
            self._relay(listener, conn, backend, (route, source, peer, hits))
        else:
            self._later(self._connect, conn, listener, backend, (route, source, peer, hits))

    def _later(self, task: Any, conn: socket.socket, *args: Any) -> None:
        """Run ``task`` for a connection that has to wait (in a task of its own)."""
        assert self._waiting is not None, "connections are accepted only while serving"
        self._waiting.start_soon(task, conn, *args)

    def _faulted(self, listener: Listener, conn: socket.socket, about: About) -> bool:
        """Whether faults act on a new flow; if so it is theirs (held by ``down``, or
        relayed by the toxic relay) and leaves the engine's fast path."""
        route = about[0]
        entry = listener.entry
        toxics = self.faults.tcp(entry.frontend_port, rules_of(entry), route.backend.label)
        if toxics is None:
            return False
        if toxics.down is not None:
            self._later(hold_down, conn, toxics.down, self._stop)
            return True
        self._later(self._connect_toxic, conn, listener, about, toxics)
        return True

    async def _connect_toxic(
        self, conn: socket.socket, listener: Listener, about: About, toxics: Toxics
    ) -> None:
        """Connect a faulted flow's backend, then relay it with its toxics."""
        route, source, peer, _ = about
        assert route.target is not None
        try:
            backend, _ = begin_connect(route.target)
        except BackendUnreachableError as error:
            self._unreachable(listener, conn, route, source, peer, reason=error.reason)
            return
        await self._connect(conn, listener, backend, about, toxics)

    async def _connect(
        self,
        conn: socket.socket,
        listener: Listener,
        backend: socket.socket,
        about: About,
        toxics: Toxics | None = None,
    ) -> None:
        """Wait for a backend connect in progress, then relay; or reset the client."""
        route, source, peer, _ = about
        assert route.target is not None
        try:
            connected = await finish_connect(
                backend, route.target, timeout_s=self.settings.connect_timeout_s
            )
        except BackendUnreachableError:
            listener.stats.backend_failures += 1
            await reset_soon(conn)
            self.reports.unreachable(listener, route, source, peer, "backend-unreachable")
            return
        except BaseException:
            reset_socket(conn)
            raise
        if not self._current(listener, route):  # a change took its route while it waited
            reset_socket(conn)
            reset_socket(connected)
            self.reports.unreachable(listener, route, source, peer, "route-removed")
            return
        if toxics is not None:
            self._relay_toxic(listener, conn, connected, about, toxics)
            return
        self._relay(listener, conn, connected, about)

    def _current(self, listener: Listener, route: Route) -> bool:
        """Whether ``listener`` still serves and ``route`` is still one of its routes."""
        serving = self._serving.get(listener.key)
        key = route.key
        return (
            serving is not None
            and serving.listener is listener
            and any(r.key == key for r in listener.routes)
        )

    def _unreachable(
        self,
        listener: Listener,
        conn: socket.socket,
        route: Route | None,
        source: str,
        peer: tuple[str, int],
        *,
        reason: str,
    ) -> None:
        listener.stats.backend_failures += 1
        self._later(reset_soon, conn)
        self.reports.unreachable(listener, route, source, peer, reason)

    def _relay(
        self, listener: Listener, conn: socket.socket, backend: socket.socket, about: About
    ) -> None:
        engine = self.engine
        engine.relay(
            conn,
            backend,
            listener.stats.open_flow(engine.now()),
            idle_timeout_s=listener.idle_timeout_s,
            tcp_reset=listener.entry.enable_tcp_reset,
            idle_hold_s=self.settings.idle_hold_s,
            tag=(listener, about),
        )

    def _relay_toxic(
        self,
        listener: Listener,
        conn: socket.socket,
        backend: socket.socket,
        about: About,
        toxics: Toxics,
    ) -> None:
        self._toxic.relay_toxic(
            conn,
            backend,
            listener.stats.open_flow(self._toxic.now()),
            idle_timeout_s=listener.idle_timeout_s,
            tcp_reset=listener.entry.enable_tcp_reset,
            idle_hold_s=self.settings.idle_hold_s,
            tag=(listener, about),
            toxics=toxics,
        )

    def _flow_ended(self, tag: tuple[Listener, About], stats: FlowStats) -> None:
        """A relayed TCP flow ended (a flow cut at the end of the drain is logged too)."""
        self.reports.close(tag[0], tag[1], stats)
        if self._draining and not self.open_flows:
            self._all_closed.set()

    async def _deny(self, conn: socket.socket) -> None:
        if self.settings.deny_mode is DenyMode.RESET:
            await reset_soon(conn)
            return
        with conn, trio.move_on_after(self.settings.deny_hold_s):
            await self._stop.wait()  # a held connection is no flow to drain

    # --- decisions and events -------------------------------------------------------------------
    def admit(
        self, listener: Listener, route: Route, source: str, peer: tuple[str, int]
    ) -> tuple[bool, tuple[NsgHit, ...]]:
        """The NSG verdict on a new flow, counted and reported; with ``explain_nsg``, the
        rule each NSG matched."""
        verdict = self.verdicts.of(listener, route, source, peer[1])
        tcp = listener.protocol is TransportProtocol.TCP  # the UDP relay counts its own
        if verdict is UNJUDGED:
            if tcp:
                listener.stats.denied += 1
            return False, ()
        self.nsg_decisions[verdict.counted] = self.nsg_decisions.get(verdict.counted, 0) + 1
        if tcp:
            if verdict.allowed:
                listener.stats.allowed += 1
            else:
                listener.stats.denied += 1
        if self.reports.on:
            self.reports.decision(listener, route, peer, source, verdict)
        return verdict.allowed, verdict.hits


_RouteKey = tuple[str, int, tuple[str, int] | None]


def _ignore(line: str) -> None:
    """A notice nobody reads."""
