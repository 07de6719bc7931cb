"""The Runtime: executes a Plan. Built-in instance servers, a listener per NAT entry and
load-balancing rule, the NSG verdict on every new flow, relays, counters, flow events.

It is the only mutable root of the data plane. ``run`` starts everything and reports itself
ready through ``task_status``; ``stop`` stops accepting, lets open flows drain for a bounded
time, then ends.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time
from typing import Any

import trio

from lbsim.control.check import Guard
from lbsim.control.nsg import Decision, Flow
from lbsim.control.types import Backend, Plan
from lbsim.dataplane import fastpath
from lbsim.dataplane.backends import Backends
from lbsim.dataplane.events import EventSink, FlowEvent, NsgHit, discard
from lbsim.dataplane.instances import InstanceServer
from lbsim.dataplane.listeners import Listener, Route
from lbsim.dataplane.probes import ProbeState
from lbsim.dataplane.relay import connect_or_reset, relay_sockets, reset_soon
from lbsim.dataplane.settings import DenyMode, RuntimeSettings
from lbsim.dataplane.stats import FlowStats
from lbsim.dataplane.udp import UdpRelay, open_udp_socket
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol


class Runtime:
    def __init__(
        self, plan: Plan, settings: RuntimeSettings | None = None, sink: EventSink = discard
    ) -> None:
        self.plan = plan
        self.settings = settings or RuntimeSettings()
        self.sink = sink
        self.guard = Guard(plan)
        self.backends = Backends(plan, self.settings)
        self.listeners: list[Listener] = []
        self.nsg_decisions: dict[tuple[str, str, str, str], int] = {}
        self.started_at = time.time()
        self._stop = trio.Event()
        self._fast = fastpath.FastPath()

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
        try:
            async with trio.open_nursery() as servers:
                await self.backends.start(servers)
                self.listeners = list(self.backends.listeners())
                sockets = self._bind_all()
                await self._serve(sockets, task_status)
                servers.cancel_scope.cancel()
        finally:
            self._fast.close()

    async def _serve(
        self, sockets: list[tuple[Listener, socket.socket]], task_status: trio.TaskStatus[Runtime]
    ) -> None:
        async with trio.open_nursery() as flows:
            async with trio.open_nursery() as accepting:
                for listener, sock in sockets:
                    serve = (
                        self._accept_tcp
                        if listener.protocol is TransportProtocol.TCP
                        else self._serve_udp
                    )
                    accepting.start_soon(
                        serve, listener, sock, flows, name=f"lbsim listener {listener.label}"
                    )
                task_status.started(self)
                await self._stop.wait()
                accepting.cancel_scope.cancel()
            flows.cancel_scope.deadline = trio.current_time() + self.settings.drain_timeout_s

    def _bind_all(self) -> list[tuple[Listener, socket.socket]]:
        bound: list[tuple[Listener, socket.socket]] = []
        failures: list[str] = []
        for listener in self.listeners:
            try:
                sock = _bind(listener)
            except OSError as error:
                what = f"{listener.protocol.value} {listener.label} ({listener.entry.rule_name})"
                failures.append(f"{what}: {error.strerror}")
                continue
            listener.bound = sock.getsockname()[:2]
            bound.append((listener, sock))
        if failures:
            for _, sock in bound:
                sock.close()
            raise LbsimError("FrontendBindFailed", "cannot listen on " + "; ".join(failures))
        return bound

    # --- TCP ----------------------------------------------------------------------------------
    async def _accept_tcp(
        self, listener: Listener, sock: socket.socket, flows: trio.Nursery
    ) -> None:
        """Accept on the raw listening socket until it would block, then wait for more
        (yielding now and then, so that a storm of connections starves no flow)."""
        with sock:
            burst = 0
            while True:
                try:
                    conn, peer = sock.accept()
                except BlockingIOError:
                    burst = 0
                    await trio.lowlevel.wait_readable(sock)
                    continue
                except OSError as error:
                    await _accept_failed(error)
                    continue
                conn.setblocking(False)
                flows.start_soon(
                    self._tcp_flow, listener, conn, peer[:2], flows, name="lbsim tcp flow"
                )
                burst += 1
                if burst == _ACCEPT_BURST:
                    burst = 0
                    await trio.lowlevel.checkpoint()

    async def _tcp_flow(
        self,
        listener: Listener,
        conn: socket.socket,
        peer: tuple[str, int],
        flows: trio.Nursery,
    ) -> None:
        route = listener.pick(peer)
        source = self.settings.sources.present(_same_family(peer[0], route))
        if route is None:  # every backend of the rule is probed down: no new flows
            listener.stats.backend_failures += 1
            await reset_soon(conn)
            self._emit("unreachable", listener, None, source, peer, reason="no-healthy-backend")
            return
        allowed, hits = self._admit(listener, route, source, peer)
        if not allowed:
            await self._deny(conn)
            return
        backend = await connect_or_reset(
            conn, route.target, timeout_s=self.settings.connect_timeout_s, rule=listener.stats
        )
        if backend is None:
            self._emit("unreachable", listener, route, source, peer, reason="backend-unreachable")
            return
        started = trio.current_time()
        stats = listener.stats.open_flow(started)
        try:
            await relay_sockets(
                conn,
                backend,
                idle_timeout_s=listener.idle_timeout_s,
                tcp_reset=listener.entry.enable_tcp_reset,
                stats=stats,
                fast=self._fast,
                nursery=flows,
            )
        finally:  # a flow cut at the end of the drain is logged too
            self._emit(
                "close",
                listener,
                route,
                source,
                peer,
                bytes_in=stats.inbound.bytes,
                bytes_out=stats.outbound.bytes,
                packets_in=stats.inbound.packets,
                packets_out=stats.outbound.packets,
                nsg_hits=hits,
                duration_s=trio.current_time() - started,
                reason=str(stats.close_reason or "cancelled"),
            )

    async def _deny(self, conn: socket.socket) -> None:
        if self.settings.deny_mode is DenyMode.RESET:
            await reset_soon(conn)
            return
        with conn, trio.move_on_after(self.settings.deny_hold_s):
            await self._stop.wait()  # a held connection is no flow to drain

    # --- UDP ----------------------------------------------------------------------------------
    async def _serve_udp(
        self, listener: Listener, sock: socket.socket, _flows: trio.Nursery
    ) -> None:
        opened: dict[tuple[str, int], tuple[Route, str, tuple[NsgHit, ...]]] = {}

        def choose(client: tuple[str, int]) -> tuple[str, int] | None:
            """Each new UDP flow: its backend (a rule spreads them), if the NSGs allow it."""
            route = listener.pick(client)
            if route is None:  # every backend of the rule is probed down
                return None
            source = self.settings.sources.present(_same_family(client[0], route))
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
            self._emit(
                "close",
                listener,
                route,
                source,
                client,
                bytes_in=stats.inbound.bytes,
                bytes_out=stats.outbound.bytes,
                packets_in=stats.inbound.packets,
                packets_out=stats.outbound.packets,
                duration_s=trio.current_time() - stats.started_at,
                reason=str(stats.close_reason),
                nsg_hits=hits,
            )

        relay = UdpRelay(
            sock,
            listener.routes[0].target,
            idle_timeout_s=listener.idle_timeout_s,
            max_flows=self.settings.max_udp_flows,
            choose=choose,
            rule=listener.stats,
            on_close=closed,
        )
        await relay.serve()

    # --- decisions and events -------------------------------------------------------------------
    def _admit(
        self, listener: Listener, route: Route, source: str, peer: tuple[str, int]
    ) -> tuple[bool, tuple[NsgHit, ...]]:
        """The NSG verdict on a new flow, counted and reported; with ``explain_nsg``, the
        rule each NSG matched."""
        try:
            flow = self.guard.flow(
                listener.protocol, source, peer[1], route.backend, route.backend_port
            )
            decision, hits = self._decide(flow, route.backend)
        except LbsimError:  # an address the NSGs cannot judge (mixed IP versions): refuse
            if listener.protocol is TransportProtocol.TCP:  # the UDP relay counts its own
                listener.stats.denied += 1
            return False, ()
        rule = decision.rule.flow_log_name if decision.rule else ""
        nsg = (decision.network_security_group or "").rsplit("/", 1)[-1]
        key = (nsg, decision.level or "", rule, decision.access.value)
        self.nsg_decisions[key] = self.nsg_decisions.get(key, 0) + 1
        if not decision.allowed and listener.protocol is TransportProtocol.TCP:
            listener.stats.denied += 1
        elif listener.protocol is TransportProtocol.TCP:
            listener.stats.allowed += 1
        self._emit(
            "decision",
            listener,
            route,
            source,
            peer,
            access=decision.access.value,
            nsg_rule=rule,
            nsg_hits=hits,
        )
        return decision.allowed, hits

    def _decide(self, flow: Flow, backend: Backend) -> tuple[Decision, tuple[NsgHit, ...]]:
        """The fast decision; or, for flow logs, the explained one with each NSG's rule."""
        if not self.settings.explain_nsg:
            return self.guard.decide(flow, backend), ()
        verdict = self.guard.explain(flow, backend)
        hits = tuple(
            NsgHit(e.network_security_group, e.rule.flow_log_name, e.rule.access.value)
            for e in verdict.evaluated
            if e.matched
        )
        return verdict.decision, hits

    def _emit(
        self,
        kind: str,
        listener: Listener,
        route: Route | None,
        source: str,
        peer: tuple[str, int],
        **extra: Any,
    ) -> None:
        if self.sink is discard:
            return
        backend = route.backend.label if route else "-"
        target = f"{route.target[0]}:{route.target[1]}" if route else "-"
        if route is not None:
            extra.setdefault("interface", route.backend.ip_configuration_id)
            extra.setdefault(
                "destination", _endpoint(route.backend.private_ip_address, route.backend_port)
            )
        event = FlowEvent(
            kind=kind,
            time=time.time(),
            protocol=listener.protocol.value,
            frontend=listener.label,
            rule=listener.entry.rule_name,
            client=f"{peer[0]}:{peer[1]}",
            source=source,
            backend=backend,
            target=target,
            **extra,
        )
        self.sink(event)


# Connections accepted in a row before the listener lets other tasks run.
_ACCEPT_BURST = 64
# Out of descriptors or memory: the connection waits in the backlog while lbsim waits a little.
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The client went away before it was accepted: nothing to do.
_ACCEPT_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})


async def _accept_failed(error: OSError) -> None:
    """A failed accept ends no listener, unless the listening socket itself is broken."""
    if error.errno in _ACCEPT_EXHAUSTED:
        await trio.sleep(0.1)
    elif error.errno not in _ACCEPT_GONE:
        raise error


def _bind(listener: Listener) -> socket.socket:
    host, port = listener.address
    if listener.protocol is TransportProtocol.UDP:
        return open_udp_socket(host, port)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _same_family(source: str, route: Route | None) -> str:
    """A loopback client presented in the backend's IP version: an IPv6 loopback client of
    an IPv4 backend is judged as 127.0.0.1, an IPv4-mapped one as its IPv4 address (and an
    IPv4 loopback client of an IPv6 backend as ::1). Other addresses stay as they are."""
    if route is None:
        return source
    address = ipaddress.ip_address(source)
    wanted = ipaddress.ip_address(route.backend.private_ip_address).version
    if address.version == wanted:
        return source
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.is_loopback:
        return "127.0.0.1" if wanted == 4 else "::1"
    return source


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
