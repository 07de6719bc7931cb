"""The data plane's engines: how TCP connections are accepted and relayed, and how UDP
datagrams are read. The runtime talks to one :class:`Engine` and never asks which it has.

- :class:`ReactorEngine`: lbsim's own edge-triggered epoll set (Linux): a relayed
  connection costs no task (:mod:`lbsim.dataplane.reactor`, :mod:`lbsim.dataplane.socketflow`).
  In ``lbsim up`` the reactor owns the thread and trio is its guest
  (:mod:`lbsim.dataplane.host`); elsewhere it runs as a task of the engine's.
- :class:`StreamsEngine`: a trio task per direction over ``trio.SocketStream`` (portable).

Both follow the same connection rules (:mod:`lbsim.dataplane.connection`) and pass the same
behaviour suite (tests/dataplane/test_engines.py). An engine's per-run helpers (the reactor,
its fast path and idle reaper; the streams engine's idle reaper) are made when the engine is
and run in the engine's :meth:`Engine.run`, in the caller's nursery.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, Protocol

import trio

from lbsim.dataplane import fastpath, idle
from lbsim.dataplane.connection import CANCELLED
from lbsim.dataplane.reactor import (
    ACCEPT_EXHAUSTED,
    ACCEPT_GONE,
    EXHAUSTED_RETRY_S,
    Reactor,
    hosted,
)
from lbsim.dataplane.relay import IdleDrop, RelayResult, relay_streams
from lbsim.dataplane.settings import TcpEngine
from lbsim.dataplane.socketflow import SocketFlow
from lbsim.dataplane.stats import FlowStats
from lbsim.dataplane.udp import UdpRelay

__all__ = ["Engine", "OnAccept", "OnEnd", "ReactorEngine", "StreamsEngine", "engine_for"]

OnAccept = Callable[[socket.socket, Any], None]  # a new non-blocking connection, its peer
OnEnd = Callable[[Any, FlowStats], None]  # a relayed flow ended: its tag, its counters


def _ignore(tag: Any, stats: FlowStats) -> None:
    pass


class Engine(Protocol):
    """Listen, relay, drain. ``on_end`` is told of every relayed flow's end, once, with the
    ``tag`` it was relayed with, when its counters have their close reason."""

    on_end: OnEnd

    def now(self) -> float:
        """The run's clock, as flows' counters use it."""

    @property
    def open_flows(self) -> int:
        """How many relayed flows are open."""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the engine's helpers until cancelled; then every open flow is aborted."""

    def listen(self, sock: socket.socket, on_accept: OnAccept) -> None:
        """Accept on ``sock`` (listening, non-blocking) until :meth:`close_listener`."""

    def close_listener(self, sock: socket.socket) -> None:
        """Stop accepting on ``sock`` and close it."""

    def relay(
        self,
        client: socket.socket,
        backend: socket.socket,
        stats: FlowStats,
        *,
        idle_timeout_s: float,
        tcp_reset: bool,
        idle_hold_s: float,
        tag: Any,
    ) -> None:
        """Relay two connected non-blocking sockets until the flow ends (owning them)."""

    def reset(self, doomed: Callable[[Any], bool]) -> None:
        """Reset every open flow whose tag is ``doomed``."""

    def abort_all(self) -> None:
        """Reset every open flow."""

    def udp(self, sock: socket.socket, **options: Any) -> UdpRelay:
        """A UDP relay on ``sock`` whose sockets this engine reads."""


class ReactorEngine:
    """TCP through a :class:`~lbsim.dataplane.reactor.Reactor`: the hosted one of ``lbsim up``
    (its rounds run by :func:`lbsim.dataplane.host.run`), or one of its own, run as a task."""

    def __init__(self, reactor: Reactor | None = None) -> None:
        self._own = reactor is None
        self.reactor = reactor or Reactor(fastpath.FastPath())
        self.on_end: OnEnd = _ignore

    def now(self) -> float:
        return self.reactor.now()

    @property
    def open_flows(self) -> int:
        return len(self.reactor.flows)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._own:
            try:
                await self.reactor.run(task_status=task_status)
            finally:
                self.reactor.fast.close()
            return
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self.reactor.abort_all()  # (the host closes the reactor itself)

    def listen(self, sock: socket.socket, on_accept: OnAccept) -> None:
        self.reactor.listen(sock, on_accept)

    def close_listener(self, sock: socket.socket) -> None:
        if sock.fileno() >= 0:  # out of the epoll set first, then closed
            self.reactor.unwatch(sock.fileno())
        sock.close()

    def relay(
        self,
        client: socket.socket,
        backend: socket.socket,
        stats: FlowStats,
        *,
        idle_timeout_s: float,
        tcp_reset: bool,
        idle_hold_s: float,
        tag: Any,
    ) -> None:
        self.reactor.relay(
            client,
            backend,
            stats,
            idle_timeout_s=idle_timeout_s,
            tcp_reset=tcp_reset,
            on_end=self._ended,
            tag=tag,
            idle_hold_s=idle_hold_s,
        )

    def _ended(self, flow: SocketFlow) -> None:
        self.on_end(flow.tag, flow.stats)

    def reset(self, doomed: Callable[[Any], bool]) -> None:
        for flow in list(self.reactor.flows):
            if doomed(flow.tag):
                flow.end(CANCELLED)

    def abort_all(self) -> None:
        self.reactor.abort_all()

    def udp(self, sock: socket.socket, **options: Any) -> UdpRelay:
        return UdpRelay(sock, reactor=self.reactor, **options)


class StreamsEngine:
    """TCP as trio tasks: an accept task per listener, a task per direction of each flow."""

    def __init__(self) -> None:
        self.reaper = idle.IdleReaper()
        self.on_end: OnEnd = _ignore
        self._nursery: trio.Nursery | None = None
        self._flows: dict[trio.CancelScope, Any] = {}  # open flows: scope -> tag
        self._listeners: dict[int, trio.CancelScope] = {}  # by descriptor

    def now(self) -> float:
        return trio.current_time()

    @property
    def open_flows(self) -> int:
        return len(self._flows)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.reaper.run, name="lbsim idle reaper")
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None
                self.abort_all()

    def _start(self, fn: Callable[..., Any], *args: Any, name: str) -> None:
        assert self._nursery is not None, "the engine is not running"
        self._nursery.start_soon(fn, *args, name=name)

    def listen(self, sock: socket.socket, on_accept: OnAccept) -> None:
        scope = trio.CancelScope()
        self._listeners[sock.fileno()] = scope
        self._start(_accept, sock, on_accept, scope, name=f"lbsim accept {sock.getsockname()}")

    def close_listener(self, sock: socket.socket) -> None:
        scope = self._listeners.pop(sock.fileno(), None)
        if scope is not None:
            scope.cancel()
        if sock.fileno() >= 0:  # closed now, not when its task next runs: no more accepts
            trio.lowlevel.notify_closing(sock)
            sock.close()

    def relay(
        self,
        client: socket.socket,
        backend: socket.socket,
        stats: FlowStats,
        *,
        idle_timeout_s: float,
        tcp_reset: bool,
        idle_hold_s: float,
        tag: Any,
    ) -> None:
        scope = trio.CancelScope()
        self._flows[scope] = tag
        options = {
            "stats": stats,
            "idle_timeout_s": idle_timeout_s,
            "tcp_reset": tcp_reset,
            "idle_drop": IdleDrop(idle_hold_s),
        }
        self._start(self._relay, scope, tag, client, backend, options, name="lbsim relay")

    async def _relay(
        self,
        scope: trio.CancelScope,
        tag: Any,
        client: socket.socket,
        backend: socket.socket,
        options: dict[str, Any],
    ) -> None:
        """One flow, a task per direction, in a cancel scope of its own (see :meth:`reset`)."""

        def closed(_: RelayResult) -> None:
            self._flows.pop(scope, None)
            self.on_end(tag, options["stats"])

        with scope:
            await relay_streams(
                trio.SocketStream(trio.socket.from_stdlib_socket(client)),
                trio.SocketStream(trio.socket.from_stdlib_socket(backend)),
                on_close=closed,
                reaper=self.reaper,
                **options,
            )

    def reset(self, doomed: Callable[[Any], bool]) -> None:
        for scope, tag in list(self._flows.items()):
            if doomed(tag):
                scope.cancel()

    def abort_all(self) -> None:
        for scope in list(self._flows):
            scope.cancel()

    def udp(self, sock: socket.socket, **options: Any) -> UdpRelay:
        return UdpRelay(sock, reactor=None, **options)


async def _accept(sock: socket.socket, on_accept: OnAccept, scope: trio.CancelScope) -> None:
    """Accept until cancelled; each connection, non-blocking, to ``on_accept``."""
    with scope, sock:
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
            on_accept(conn, peer)
            await trio.lowlevel.checkpoint()


def engine_for(kind: TcpEngine) -> Engine:
    """The engine a run asks for: the streams engine, or the reactor (``lbsim up``'s hosted
    one when this run is hosted, else one of the engine's own)."""
    if kind is TcpEngine.STREAMS:
        return StreamsEngine()
    return ReactorEngine(hosted())
