"""The Runtime: executes a Plan. Built-in instance servers, a listener per NAT entry and
load-balancing rule, the NSG verdict on every new flow, relays, counters, flow events.

TCP listeners and relayed connections live in one :class:`~lbsim.dataplane.reactor.Reactor`:
a new connection is judged, routed and connected inside the accept handler, with no task of
its own, unless something has to wait (a connect still in progress, a denial held or reset
after a moment, an unreachable backend): those few run as tasks.

It is the only mutable root of the data plane. ``run`` starts everything and reports itself
ready through ``task_status``; ``stop`` stops accepting, lets open flows drain for a bounded
time, then ends.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import attrs
import trio

from lbsim.control.check import Guard
from lbsim.control.diff import ListenKey, PlanChange, diff, listen_table
from lbsim.control.types import BalancingEntry, NatEntry, Plan
from lbsim.dataplane import fastpath
from lbsim.dataplane.backends import Backends
from lbsim.dataplane.events import FlowNames, NsgHit, RecordSink, discard
from lbsim.dataplane.instances import InstanceServer
from lbsim.dataplane.listeners import Listener, Route, address_in_use_hint, same_family
from lbsim.dataplane.probes import ProbeState
from lbsim.dataplane.reactor import (
    ACCEPT_EXHAUSTED,
    ACCEPT_GONE,
    EXHAUSTED_RETRY_S,
    Reactor,
    hosted,
)
from lbsim.dataplane.relay import (
    BackendUnreachableError,
    IdleDrop,
    begin_connect,
    finish_connect,
    relay_streams,
    reset_socket,
    reset_soon,
)
from lbsim.dataplane.settings import DenyMode, RuntimeSettings, TcpEngine
from lbsim.dataplane.socketflow import CANCELLED, SocketFlow
from lbsim.dataplane.stats import FlowStats
from lbsim.dataplane.udp import UdpRelay
from lbsim.dataplane.verdicts import UNJUDGED, Verdicts
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol


class Runtime:
    def __init__(
        self, plan: Plan, settings: RuntimeSettings | None = None, sink: RecordSink = discard
    ) -> None:
        self.plan = plan
        self.settings = settings or RuntimeSettings()
        self.sink = sink
        self.guard = Guard(plan)
        self.backends = Backends(plan, self.settings)
        self._serving: dict[ListenKey, _Serving] = {}  # by identity, in the order opened
        self.nsg_decisions: dict[tuple[str, str, str, str], int] = {}
        self.verdicts = Verdicts(self.guard, explain=self.settings.explain_nsg)
        # What events say of a listener and route: formatted once, by the route's id
        self._flow_names: dict[int, FlowNames] = {}
        self.started_at = time.time()
        self._stop = trio.Event()
        self._fast = fastpath.FastPath()
        self._streams = self.settings.tcp_engine is TcpEngine.STREAMS
        self._reactor: Reactor | None = None  # made (or found) by run()
        self._all_closed = trio.Event()
        self._draining = False
        self._waiting: trio.Nursery | None = None  # flows that wait for something
        self._accepting: trio.Nursery | None = None  # listeners served by tasks
        self._stream_flows: dict[trio.CancelScope, tuple[Listener, Route]] = {}
        self._applying = trio.Lock()
        self._now: Callable[[], float] = trio.current_time  # the run's clock, once it runs

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
        self._now = trio.lowlevel.current_clock().current_time
        try:
            async with trio.open_nursery() as servers:
                if not self._streams:  # lbsim up's reactor owns the thread; else a task's
                    self._reactor = hosted() or Reactor(self._fast)
                    if not self._reactor.hosted:
                        servers.start_soon(self._reactor.run, name="lbsim reactor")
                try:
                    await self._serve(servers, task_status)
                finally:  # also when cancelled: no listening socket outlives the runtime
                    self._close_listeners(s.sock for s in self._serving.values())
                servers.cancel_scope.cancel()
        finally:
            if self._reactor is not None and not self._reactor.hosted:
                self._reactor.close()
            self._fast.close()

    async def _serve(self, servers: trio.Nursery, task_status: trio.TaskStatus[Runtime]) -> None:
        reactor = self._reactor
        async with trio.open_nursery() as waiting:
            self._waiting = waiting
            async with trio.open_nursery() as accepting:
                self._accepting = accepting
                first = self.plan
                self.backends = Backends(Plan(), self.settings)
                await self.backends.start(servers)
                self.plan = Plan()
                await self.apply(diff(self.plan, first))
                task_status.started(self)
                await self._stop.wait()
                if reactor is not None:  # (the streams engine's accept tasks close theirs)
                    self._close_listeners(
                        s.sock
                        for s in self._serving.values()
                        if s.listener.protocol is TransportProtocol.TCP
                    )
                accepting.cancel_scope.cancel()
            deadline = trio.current_time() + self.settings.drain_timeout_s
            waiting.cancel_scope.deadline = deadline
            self._draining = True
            await self._drain(deadline)
        if reactor is not None:
            await self._drain(deadline)  # flows that a waiting connection opened meanwhile
            reactor.abort_all()  # what the drain left open ends as cancelled

    # --- changes ------------------------------------------------------------------------------
    async def apply(self, change: PlanChange) -> None:
        """Run ``change.new`` instead of the plan running now: the one place where listeners
        open and close, built-in servers and probes start and stop, and routes and cached NSG
        verdicts are replaced. New listeners are bound first: if one cannot be, nothing
        changes (``FrontendBindFailed``). A listener that stays keeps its socket, counters
        and the flows on routes that stay; flows on a route that is gone (a removed or
        stopped instance) and flows of a removed listener are reset. NSG changes apply to new
        flows only."""
        async with self._applying:
            if self._accepting is None or self.stopping:
                raise LbsimError("OperationNotAllowed", "lbsim is not serving")
            table = listen_table(change.new)
            bound = self._bind([table[key] for key in change.listeners_added])
            try:
                await self.backends.apply(change.new)
            except BaseException:
                self._close_listeners(sock for _, sock in bound)
                raise
            self.plan = change.new
            self.guard = Guard(change.new)
            self.verdicts = Verdicts(self.guard, explain=self.settings.explain_nsg)
            self._flow_names.clear()
            stale: dict[Listener, set[_RouteKey] | None] = {}
            for key in change.listeners_removed:
                stale[self._unlisten(key)] = None
            for key, serving in self._serving.items():
                gone = self._reroute(serving.listener, table[key])
                if gone:
                    stale[serving.listener] = gone
            self._reset_flows(stale)
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
        serving = _Serving(listener, sock)
        self._serving[listener.key] = serving
        name = f"lbsim listener {listener.protocol.value} {listener.label}"
        if listener.protocol is TransportProtocol.UDP:
            self._accepting.start_soon(self._serve_udp, serving, name=name)
        elif self._reactor is None:
            self._accepting.start_soon(self._accept_streams, serving, name=name)
        else:
            self._reactor.listen(sock, partial(self._accepted, listener))

    def _unlisten(self, key: ListenKey) -> Listener:
        """Stop serving a listener: its socket closes (its flows are reset by the caller)."""
        serving = self._serving.pop(key)
        serving.scope.cancel()
        if serving.listener.protocol is TransportProtocol.TCP:
            self._close_listeners([serving.sock])
        return serving.listener

    def _reset_flows(self, stale: dict[Listener, set[_RouteKey] | None]) -> None:
        """Reset the TCP flows on stale routes (None: every route of the listener) and
        forget the UDP flows whose backend went."""
        if not stale:
            return

        def doomed(listener: Listener, route: Route) -> bool:
            keys = stale.get(listener, set())
            return keys is None or route.key in keys

        if self._reactor is not None:
            for flow in list(self._reactor.flows):
                listener, about = flow.tag
                if doomed(listener, about[0]):
                    flow.end(CANCELLED)
        for scope, (listener, route) in list(self._stream_flows.items()):
            if doomed(listener, route):
                scope.cancel()
        for listener, keys in stale.items():
            serving = self._serving.get(listener.key)
            if keys is not None and serving is not None and serving.udp is not None:
                serving.udp.drop({k[2] for k in keys}.__contains__)

    def _close_listeners(self, sockets: Iterable[socket.socket]) -> None:
        """Stop listening: out of the reactor's set first, then closed (closing twice is
        harmless)."""
        for sock in sockets:
            if self._reactor is not None and sock.fileno() >= 0:
                self._reactor.unwatch(sock.fileno())
            sock.close()

    async def _drain(self, deadline: float) -> None:
        """Return once no flow of the reactor is open, or at ``deadline`` (flows of the
        streams engine are tasks: their nursery waits for them)."""
        with trio.move_on_at(deadline):
            while self._reactor is not None and self._reactor.flows:
                self._all_closed = trio.Event()
                await self._all_closed.wait()

    def _bind(
        self, entries: list[NatEntry | BalancingEntry]
    ) -> list[tuple[Listener, socket.socket]]:
        """A bound socket for each new listener, or none at all and ``FrontendBindFailed``."""
        bound: list[tuple[Listener, socket.socket]] = []
        failures: list[str] = []
        in_use: list[int] = []
        for entry in entries:
            listener = Listener(entry, (), entry.idle_timeout_s)
            try:
                sock = listener.open_socket()
            except OSError as error:
                what = f"{listener.protocol.value} {listener.label} ({entry.rule_name})"
                failures.append(f"{what}: {error.strerror}{self._held_by_us(listener)}")
                if error.errno == errno.EADDRINUSE:
                    in_use.append(listener.address[1])
                continue
            listener.bound = sock.getsockname()[:2]
            bound.append((listener, sock))
        if failures:
            for _, sock in bound:
                sock.close()
            message = "cannot listen on " + "; ".join(failures)
            raise LbsimError("FrontendBindFailed", message + address_in_use_hint(in_use))
        return bound

    def _held_by_us(self, listener: Listener) -> str:
        """Which of lbsim's own listeners or built-in servers holds ``listener``'s address."""
        address = listener.address
        for serving in self._serving.values():
            if serving.listener.address == address and serving.listener.protocol is (
                listener.protocol
            ):
                return f" (held by lbsim's own listener for {serving.listener.entry.rule_name})"
        for server in self.instances:
            if server.address == address and server.protocol is listener.protocol:
                return f" (held by lbsim's built-in server of {server.identity.name})"
        return ""

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
        allowed, hits = self._admit(listener, route, source, peer)
        if not allowed:
            self._later(self._deny, conn)
            return
        try:
            backend, connected = begin_connect(route.target)
        except BackendUnreachableError:
            self._unreachable(listener, conn, route, source, peer, reason="backend-unreachable")
            return
        if connected:
            self._relay(listener, conn, backend, (route, source, peer, hits))
        else:
            self._later(self._connect, conn, listener, backend, (route, source, peer, hits))

    def _later(self, task: Any, conn: socket.socket, *args: Any) -> None:
        """Run ``task`` for a connection that has to wait (in a task of its own)."""
        assert self._waiting is not None, "connections are accepted only while serving"
        self._waiting.start_soon(task, conn, *args)

    async def _connect(
        self, conn: socket.socket, listener: Listener, backend: socket.socket, about: _About
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
            self._emit_unreachable(listener, route, source, peer, "backend-unreachable")
            return
        except BaseException:
            reset_socket(conn)
            raise
        self._relay(listener, conn, connected, about)

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
        self._emit_unreachable(listener, route, source, peer, reason)

    def _relay(
        self, listener: Listener, conn: socket.socket, backend: socket.socket, about: _About
    ) -> None:
        reactor = self._reactor
        stats = listener.stats.open_flow(trio.current_time() if reactor is None else reactor.now())
        if reactor is None:
            self._later(self._relay_streams, conn, backend, listener, about, stats)
            return
        reactor.relay(
            conn,
            backend,
            stats,
            idle_timeout_s=listener.idle_timeout_s,
            tcp_reset=listener.entry.enable_tcp_reset,
            on_end=self._flow_ended,
            tag=(listener, about),
            idle_hold_s=self.settings.idle_hold_s,
        )

    def _flow_ended(self, flow: SocketFlow) -> None:
        listener, about = flow.tag
        self._closed(listener, about, flow.stats)

    def _closed(self, listener: Listener, about: _About, stats: FlowStats) -> None:
        """A relayed TCP flow ended (a flow cut at the end of the drain is logged too)."""
        self._emit_close(listener, about, stats)
        if self._draining and self._reactor is not None and not self._reactor.flows:
            self._all_closed.set()

    def _emit_close(self, listener: Listener, about: _About, stats: FlowStats) -> None:
        """The close event of a flow (TCP or UDP), with its counters."""
        if self.sink is discard:
            return
        route, source, peer, hits = about
        names = self._flow_names.get(id(route)) or self._names(listener, route)
        inbound, outbound = stats.inbound, stats.outbound
        self.sink((  # a FlowRecord: FlowEvent's fields in order
            "close", time.time(), names, peer, source, "", "", hits,
            inbound.bytes, outbound.bytes, inbound.packets, outbound.packets,
            self._now() - stats.started_at, stats.close_reason or "cancelled",
        ))  # fmt: skip

    # --- the streams engine: a task per direction, portable ----------------------------------
    async def _accept_streams(self, serving: _Serving) -> None:
        """Accept until the listener is cancelled; each connection as ``_accepted`` says."""
        listener, sock = serving.listener, serving.sock
        with serving.scope, sock:
            while True:
                try:
                    conn, peer = sock.accept()
                except BlockingIOError:
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except OSError as error:
                    if error.errno in ACCEPT_EXHAUSTED:
                        await trio.sleep(EXHAUSTED_RETRY_S)
                    elif error.errno not in ACCEPT_GONE:
                        raise
                    continue
                conn.setblocking(False)
                self._accepted(listener, conn, peer)
                await trio.lowlevel.checkpoint()

    async def _relay_streams(
        self,
        conn: socket.socket,
        backend: socket.socket,
        listener: Listener,
        about: _About,
        stats: FlowStats,
    ) -> None:
        client = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
        server = trio.SocketStream(trio.socket.from_stdlib_socket(backend))
        with trio.CancelScope() as scope:  # cancelled when its route goes (see apply)
            self._stream_flows[scope] = (listener, about[0])
            try:
                await self._relay_stream_flow(client, server, listener, about, stats)
            finally:
                del self._stream_flows[scope]

    async def _relay_stream_flow(
        self,
        client: trio.SocketStream,
        server: trio.SocketStream,
        listener: Listener,
        about: _About,
        stats: FlowStats,
    ) -> None:
        await relay_streams(
            client,
            server,
            idle_timeout_s=listener.idle_timeout_s,
            tcp_reset=listener.entry.enable_tcp_reset,
            stats=stats,
            idle_drop=IdleDrop(self.settings.idle_hold_s, self._stop),
            on_close=lambda _: self._closed(listener, about, stats),
        )

    async def _deny(self, conn: socket.socket) -> None:
        if self.settings.deny_mode is DenyMode.RESET:
            await reset_soon(conn)
            return
        with conn, trio.move_on_after(self.settings.deny_hold_s):
            await self._stop.wait()  # a held connection is no flow to drain

    # --- UDP ----------------------------------------------------------------------------------
    async def _serve_udp(self, serving: _Serving) -> None:
        listener, sock = serving.listener, serving.sock
        opened: dict[tuple[str, int], tuple[Route, str, tuple[NsgHit, ...]]] = {}

        def choose(client: tuple[str, int]) -> tuple[str, int] | None:
            """Each new UDP flow: its backend (a rule spreads them), if the NSGs allow it."""
            route = listener.pick(client)
            if route is None or route.target is None:  # all probed down, or stopped
                return None
            source = self.settings.sources.present(same_family(client[0], route))
            allowed, hits = self._admit(listener, route, source, client)
            if not allowed:
                return None
            if len(opened) > 2 * self.settings.max_udp_flows:  # flows that failed to open
                del opened[next(iter(opened))]
            opened[client] = (route, source, hits)
            return route.target

        def closed(client: tuple[str, int], stats: FlowStats) -> None:
            found = opened.pop(client, None)
            if found is None:
                return
            route, source, hits = found
            self._emit_close(listener, (route, source, client, hits), stats)

        serving.udp = relay = UdpRelay(
            sock,
            ("127.0.0.1", 9),  # never used: ``choose`` picks each flow's backend
            idle_timeout_s=listener.idle_timeout_s,
            max_flows=self.settings.max_udp_flows,
            choose=choose,
            rule=listener.stats,
            on_close=closed,
            reactor=self._reactor,
        )
        with serving.scope:
            await relay.serve()

    # --- decisions and events -------------------------------------------------------------------
    def _admit(
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
        if self.sink is not discard:
            names = self._flow_names.get(id(route)) or self._names(listener, route)
            self.sink((  # a FlowRecord: FlowEvent's fields in order
                "decision", time.time(), names, peer, source,
                verdict.access, verdict.rule, verdict.hits, 0, 0, 0, 0, 0.0, "",
            ))  # fmt: skip
        return verdict.allowed, verdict.hits

    def _emit_unreachable(
        self,
        listener: Listener,
        route: Route | None,
        source: str,
        peer: tuple[str, int],
        reason: str,
    ) -> None:
        if self.sink is not discard:
            names = self._names(listener, route)
            self.sink((  # a FlowRecord: FlowEvent's fields in order
                "unreachable", time.time(), names, peer, source, "", "", (),
                0, 0, 0, 0, 0.0, reason,
            ))  # fmt: skip

    def _names(self, listener: Listener, route: Route | None) -> FlowNames:
        """What the events of ``listener`` and ``route`` say of them, made on first use (the
        hot paths look in ``_flow_names`` first: a call less)."""
        key = id(listener if route is None else route)  # a route serves one listener
        names = self._flow_names.get(key)
        if names is None:
            names = self._flow_names[key] = _flow_names(listener, route)
        return names


def _flow_names(listener: Listener, route: Route | None) -> FlowNames:
    entry = listener.entry
    frontend = f"{entry.frontend.address}:{entry.frontend_port}"
    if route is None:  # no backend was chosen
        return FlowNames(listener.protocol.value, frontend, entry.rule_name)
    backend = route.backend
    return FlowNames(
        listener.protocol.value,
        frontend,
        entry.rule_name,
        backend.label,
        f"{route.target[0]}:{route.target[1]}" if route.target else "-",
        backend.ip_configuration_id,
        _endpoint(backend.private_ip_address, route.backend_port),
    )


@attrs.define(eq=False)
class _Serving:
    """A listener being served: its socket, and the scope of its task (UDP, streams)."""

    listener: Listener
    sock: socket.socket
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    udp: UdpRelay | None = None


_RouteKey = tuple[str, int, tuple[str, int] | None]


# What a relayed flow carries for its close event: route, source as judged, client, NSG hits.
_About = tuple[Route, str, tuple[str, int], tuple[NsgHit, ...]]


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
