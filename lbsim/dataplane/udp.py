"""The UDP side of a NAT entry: one frontend socket, one backend socket per client flow.

A flow is keyed by the client's (address, port). Its first datagram asks the ``admit`` hook
(the runtime plugs the NSG verdict in); a denied datagram is dropped and counted, and the
next one from that client asks again. An admitted flow gets a socket of its own connected
to the backend, so the backend sees one source port per client, and its replies go back to
that client from the frontend socket. The table is kept in order of last activity: the
flow at its head is the one idle longest, which is the one to expire (after
``idle_timeout_s``) or to evict (when ``max_flows`` is reached).

Sockets are raw and non-blocking, read until a call would block (or a burst ran out, to give
others a turn). Where the runtime has a reactor (:mod:`lbsim.dataplane.reactor`) it calls
the relay when a socket is ready, and a datagram relayed costs no trio task and no pass of
trio's scheduler; otherwise a task per socket waits with trio. A datagram that cannot be
sent at once is dropped and counted (``dropped``), as a router would do, and so is every
datagram the kernel dropped because the frontend socket's buffer was full (the socket's own
drop count, ``SO_MEMINFO``, read off the hot path by :meth:`UdpRelay.count_kernel_drops`:
when metrics are scraped, and when the relay stops); a "port
unreachable" from the backend counts as a backend failure (``backend_failures``).
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Protocol

import trio

from lbsim.dataplane.reactor import Reactor
from lbsim.dataplane.relay import CloseReason
from lbsim.dataplane.stats import FlowStats, RuleStats

__all__ = ["Address", "Admit", "Choose", "Closed", "UdpRelay", "open_udp_socket"]

Address = tuple[str, int]
Admit = Callable[[Address], bool]
Choose = Callable[[Address], Address | None]
Closed = Callable[[Address, FlowStats], None]  # a flow ended: its client and its counters
# Faults on a flow's datagrams: how many copies of one go on (0 lost, 1, 2 duplicated), given
# its client and whether it goes upstream (client to backend); asked only while ``on``.
Fate = Callable[[Address, bool], int]


class Switch(Protocol):
    """Whether any fault is set (lbsim.dataplane.faults.Faults): one test per datagram."""

    on: bool


class _NoFaults:
    on = False


_NO_FAULTS = _NoFaults()

_BURST = 64  # datagrams handled in a row before letting other tasks run
# A socket's memory figures (Linux, sock_diag.h): the ninth is the datagrams it dropped.
_SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55 if sys.platform == "linux" else None)
_MEMINFO = struct.Struct("9I")
_MEMINFO_DROPS = 8


def _family(host: str) -> socket.AddressFamily:
    """The address family of a numeric host."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def open_udp_socket(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to (host, port); port 0 picks a free one."""
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _allow_all(client: Address) -> bool:
    """The default hook: every client is admitted."""
    return True


async def _pump_task(sock: socket.socket, drain: Callable[[], bool]) -> None:
    """What the reactor's :class:`~lbsim.dataplane.reactor.Pump` does, without a reactor: a
    task that waits with trio."""
    while True:
        if drain():
            await trio.lowlevel.checkpoint()
        else:
            await trio.lowlevel.wait_readable(sock)


class _UdpFlow:
    """One client's flow: its backend socket, counters, last activity and reply task scope."""

    __slots__ = ("client", "last", "scope", "sock", "stats")

    def __init__(self, client: Address, sock: socket.socket, stats: FlowStats) -> None:
        """A flow that has just started."""
        self.client = client
        self.sock = sock
        self.stats = stats
        self.last = stats.started_at
        self.scope = trio.CancelScope()


class UdpRelay:
    """Relays datagrams between clients of one frontend socket and one backend address."""

    def __init__(
        self,
        frontend: socket.socket,
        backend: Address,
        *,
        idle_timeout_s: float,
        max_flows: int = 4096,
        admit: Admit | None = None,
        choose: Choose | None = None,
        rule: RuleStats | None = None,
        on_close: Closed | None = None,
        reactor: Reactor | None = None,
        faults: Switch = _NO_FAULTS,
        fate: Fate | None = None,
    ) -> None:
        """A relay that owns ``frontend`` (a bound non-blocking UDP socket) from now on;
        without ``admit`` every client is admitted. ``choose``, if given, picks each new
        flow's backend instead of ``backend`` (None refuses the flow): a load-balancing rule
        spreads its flows that way. With ``reactor`` its sockets are read by the reactor,
        else by tasks of the relay's own. While ``faults.on``, ``fate`` says what becomes of
        each datagram (UDP ``loss``, ``duplicate``, ``down``)."""
        self.backend = backend
        self.idle_timeout_s = idle_timeout_s
        self.max_flows = max_flows
        self.admit = admit or _allow_all
        self.choose = choose
        self.on_close = on_close
        self.rule = rule or RuleStats()
        self._kernel_drops = 0  # the kernel's own count, as last read
        self.reactor = reactor
        self.faults = faults
        self.fate = fate
        self._sock = frontend
        self._flows: OrderedDict[Address, _UdpFlow] = OrderedDict()
        self._buffer = bytearray(65536)
        self._view = memoryview(self._buffer)
        self._nursery: trio.Nursery | None = None
        self._wake: trio.CancelScope | None = None

    @property
    def address(self) -> Address:
        """The (host, port) the frontend socket is bound to."""
        host, port = self._sock.getsockname()[:2]
        return host, port

    def __len__(self) -> int:
        """How many flows are in the table."""
        return len(self._flows)

    def flow(self, client: Address) -> FlowStats | None:
        """The counters of ``client``'s flow, if it has one."""
        entry = self._flows.get(client)
        return entry.stats if entry is not None else None

    async def serve(
        self, *, task_status: trio.TaskStatus[Address] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Relay until cancelled; reports the bound address when ready, and on the way out
        closes every flow (reason ``cancelled``), its socket, and the frontend socket."""
        reactor, fd = self.reactor, self._sock.fileno()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._expire_idle, name="lbsim udp expiry")
                if reactor is not None:
                    reactor.pump(fd, self._from_clients)
                task_status.started(self.address)
                if reactor is None:
                    await _pump_task(self._sock, self._from_clients)
        finally:
            if reactor is not None:
                reactor.unwatch(fd)
            for flow in list(self._flows.values()):
                self._close(flow, CloseReason.CANCELLED)
            self.count_kernel_drops()  # the last of them, before the socket goes
            self._sock.close()

    def drop(self, gone: Callable[[Address], bool]) -> None:
        """Forget the flows whose backend address is ``gone`` (closed as cancelled): the
        client's next datagram opens a new flow to a backend that is there."""
        for flow in list(self._flows.values()):
            try:
                target = flow.sock.getpeername()[:2]
            except OSError:
                continue
            if gone(target):
                self._close(flow, CloseReason.CANCELLED)

    def _from_clients(self) -> bool:
        """Forward datagrams from clients, each through its flow, up to a burst; whether
        the burst ran out before the socket had nothing left."""
        sock, buffer, view = self._sock, self._buffer, self._view
        for _ in range(_BURST):
            try:
                n, client = sock.recvfrom_into(buffer)
            except BlockingIOError:
                return False
            except OSError:  # an error queued on the socket: nothing to forward
                if sock.fileno() < 0:  # closed (the relay stopped)
                    return False
                continue
            self._forward(client[:2], view[:n], n)
        return True

    def count_kernel_drops(self) -> None:
        """Count, as dropped, the datagrams the kernel dropped on the frontend socket's full
        receive buffer since the last call (its own count; nothing where it keeps none)."""
        if _SO_MEMINFO is None or self._sock.fileno() < 0:
            return
        try:
            raw = self._sock.getsockopt(socket.SOL_SOCKET, _SO_MEMINFO, _MEMINFO.size)
        except OSError:
            return
        total = _MEMINFO.unpack(raw[: _MEMINFO.size])[_MEMINFO_DROPS]
        if total > self._kernel_drops:
            self.rule.dropped += total - self._kernel_drops
            self._kernel_drops = total

    def _forward(self, client: Address, data: memoryview, n: int) -> None:
        """Send one client datagram to the backend through the client's flow."""
        flow = self._flows.get(client)
        if flow is None:
            flow = self._open(client)
            if flow is None:
                return
        else:
            self._flows.move_to_end(client)
        flow.last = trio.current_time()
        if self.faults.on and not self._copies(flow, data, upstream=True):
            return
        try:
            flow.sock.send(data)
        except BlockingIOError:  # the socket's buffer is full
            self.rule.dropped += 1
            return
        except OSError:  # an earlier datagram met "port unreachable" at the backend
            self.rule.backend_failures += 1
            return
        mine, agg = flow.stats.inbound, self.rule.inbound
        mine.bytes += n
        mine.packets += 1
        agg.bytes += n
        agg.packets += 1

    def _open(self, client: Address) -> _UdpFlow | None:
        """A new flow for ``client`` if admitted (else None, counted as denied)."""
        target = self.choose(client) if self.choose is not None else self.backend
        if target is None or not self.admit(client):
            self.rule.denied += 1
            return None
        self.rule.allowed += 1
        if len(self._flows) >= self.max_flows:
            _, oldest = self._flows.popitem(last=False)
            self._close(oldest, CloseReason.EVICTED)
        try:
            sock = socket.socket(_family(target[0]), socket.SOCK_DGRAM)
        except OSError:  # out of descriptors: drop, as an overloaded router would
            self.rule.dropped += 1
            return None
        sock.setblocking(False)
        sock.connect(target)
        flow = _UdpFlow(client, sock, self.rule.open_flow(trio.current_time()))
        self._flows[client] = flow
        if self._wake is not None and self._wake.deadline == math.inf:
            self._wake.deadline = flow.last + self.idle_timeout_s
        replies = partial(self._replies, flow)
        if self.reactor is not None:
            self.reactor.pump(sock.fileno(), replies)
        else:
            assert self._nursery is not None
            self._nursery.start_soon(self._from_backend, flow, replies, name="lbsim udp flow")
        return flow

    async def _from_backend(self, flow: _UdpFlow, replies: Callable[[], bool]) -> None:
        """Without a reactor: send the backend's replies back to the flow's client until the
        flow closes."""
        with flow.scope:
            try:
                await _pump_task(flow.sock, replies)
            finally:
                flow.sock.close()

    def _replies(self, flow: _UdpFlow) -> bool:
        """Send the backend's replies back to the flow's client, up to a burst; whether the
        burst ran out before the socket had nothing left."""
        sock, frontend, buffer, view = flow.sock, self._sock, self._buffer, self._view
        for _ in range(_BURST):
            if flow.stats.closed:  # closed meanwhile (evicted by a new flow, say)
                return False
            try:
                n = sock.recv_into(buffer)
            except BlockingIOError:
                return False
            except OSError:  # "port unreachable" from the backend, reported once
                self.rule.backend_failures += 1
                continue
            self._reply(flow, frontend, view[:n], n)
        return True

    def _reply(self, flow: _UdpFlow, frontend: socket.socket, data: memoryview, n: int) -> None:
        """Send one backend datagram to the flow's client from the frontend socket."""
        if self.faults.on and not self._copies(flow, data, upstream=False):
            return
        try:
            frontend.sendto(data, flow.client)
        except OSError:
            self.rule.dropped += 1
            return
        mine, agg = flow.stats.outbound, self.rule.outbound
        mine.bytes += n
        mine.packets += 1
        agg.bytes += n
        agg.packets += 1
        flow.last = trio.current_time()
        if not flow.stats.closed:
            self._flows.move_to_end(flow.client)

    def _copies(self, flow: _UdpFlow, data: memoryview, *, upstream: bool) -> bool:
        """Whether a datagram goes on as faults say (lost: False); a duplicate is sent once
        more here, first."""
        copies = 1 if self.fate is None else self.fate(flow.client, upstream)
        if copies > 1:
            with contextlib.suppress(OSError):
                if upstream:
                    flow.sock.send(data)
                else:
                    self._sock.sendto(data, flow.client)
        return copies > 0

    async def _expire_idle(self) -> None:
        """Close flows idle for ``idle_timeout_s``; sleeps until the next one is due."""
        while True:
            now = trio.current_time()
            due = math.inf
            while self._flows:
                oldest = next(iter(self._flows.values()))
                due = oldest.last + self.idle_timeout_s
                if due > now:
                    break
                del self._flows[oldest.client]
                self._close(oldest, CloseReason.IDLE_TIMEOUT)
                due = math.inf
            with trio.CancelScope(deadline=due) as self._wake:
                await trio.sleep_forever()
            self._wake = None

    def _close(self, flow: _UdpFlow, reason: CloseReason) -> None:
        """Record the flow's end, tell ``on_close``, and close its socket (or stop its reply
        task, which does)."""
        self._flows.pop(flow.client, None)
        flow.stats.close(reason)
        if self.reactor is not None:
            self.reactor.unwatch(flow.sock.fileno())
            flow.sock.close()
        else:
            flow.scope.cancel()  # its task closes the socket
        if self.on_close is not None:
            self.on_close(flow.client, flow.stats)
