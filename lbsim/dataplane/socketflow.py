"""One relayed TCP connection in lbsim's reactor (:mod:`lbsim.dataplane.reactor`): a
:class:`SocketFlow` of two sockets and a :class:`Way` each direction, moved by the reactor's
readiness calls, with no task of its own.

Each direction moves bytes as :mod:`lbsim.dataplane.fastpath` describes: small reads
through one buffer shared by the whole run, and once a read fills it, ``os.splice`` through
a pooled pipe until the source is drained; at most one pipe's or one buffer's worth of
bytes per direction is held (the relay's backpressure). A direction forwards its source's
end of stream as a half-close; the flow ends when both have, when a side fails (the other
is reset), when it idles, or when it is aborted.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from lbsim.dataplane import fastpath
from lbsim.dataplane.connection import (
    BACKEND_CLOSED,
    BACKEND_ERROR,
    CANCELLED,
    CLIENT_CLOSED,
    CLIENT_ERROR,
    HOLD,
    IDLE_TIMEOUT,
    QUIET,
    RESET,
    CloseReason,
    Connection,
)
from lbsim.dataplane.stats import FlowStats, Traffic

if TYPE_CHECKING:
    from lbsim.dataplane.reactor import Reactor

__all__ = ["CANCELLED", "AnySocket", "SocketFlow", "Way", "nodelay", "reset_socket"]

AnySocket = trio.socket.SocketType | socket.socket

# epoll's event bits (Linux's values where select has no epoll: lbsim then makes no reactor,
# but this module still imports).
EPOLLIN = getattr(select, "EPOLLIN", 0x001)
EPOLLOUT = getattr(select, "EPOLLOUT", 0x004)
EPOLLERR = getattr(select, "EPOLLERR", 0x008)
EPOLLHUP = getattr(select, "EPOLLHUP", 0x010)
EPOLLRDHUP = getattr(select, "EPOLLRDHUP", 0x2000)
EPOLLET = getattr(select, "EPOLLET", 1 << 31)
_HANGUP = EPOLLRDHUP | EPOLLHUP | EPOLLERR
_READABLE = EPOLLIN | _HANGUP
_WRITABLE = EPOLLOUT | EPOLLHUP | EPOLLERR
_SPLICE_FLAGS = fastpath.SPLICE_FLAGS
# Reads one direction makes before the others (and trio's other tasks) get a turn: a flow
# with more waiting goes to the back of the reactor's queue, so that a bulk flow delays an
# interactive one by one read at the most.
_FULL_READS = 1
_LINGER_RESET = struct.pack("ii", 1, 0)


class _Gone:
    """What the ways of an ended flow point to instead of their flow and of each other: an
    ended flow whose directions are finished (a way queued for another turn sees that)."""

    done = True
    finished = True


_GONE: Any = _Gone()


class SocketFlow(Connection):
    """One relayed connection: a client socket, a backend socket, a :class:`Way` each
    direction. How it ends is the :class:`~lbsim.dataplane.connection.Connection`'s to say;
    this class does it. Watched by the run's idle reaper when it has an idle timeout."""

    __slots__ = (
        "__weakref__",
        "backend",
        "client",
        "done",
        "fast",
        "idle_timeout_s",
        "inbound",
        "last",
        "on_end",
        "outbound",
        "reactor",
        "stats",
        "tag",
    )

    def __init__(
        self,
        reactor: Reactor,
        client: AnySocket,
        backend: AnySocket,
        stats: FlowStats,
        fast: fastpath.FastPath,
    ) -> None:
        Connection.__init__(self)
        self.reactor = reactor
        self.client = client
        self.backend = backend
        self.stats = stats
        self.fast = fast
        self.last = reactor.now()
        self.idle_timeout_s = math.inf
        self.done = False
        self.on_end: Callable[[SocketFlow], None] | None = None
        self.tag: Any = None
        cfd, bfd = client.fileno(), backend.fileno()
        self.inbound = Way(self, cfd, backend, stats.inbound, stats.rule.inbound, names=_IN_NAMES)
        self.outbound = Way(
            self, bfd, client, stats.outbound, stats.rule.outbound, names=_OUT_NAMES
        )
        self.inbound.other = self.outbound
        self.outbound.other = self.inbound

    def expire(self) -> None:
        """End the flow because no byte moved for ``idle_timeout_s``."""
        self.end(IDLE_TIMEOUT)

    def half_done(self, reason: CloseReason) -> None:
        """One direction forwarded its end of stream; the second one ends the flow."""
        if self.event(reason):
            self._close()

    def end(self, reason: CloseReason) -> None:
        """End the flow now for ``reason`` (unless it has ended already: the first reason
        wins): both sides closed as the connection's rules say, counters closed, ``on_end``
        called. Idempotent."""
        if self.event(reason):
            self._close()

    def _close(self) -> None:
        if self.done:  # forgotten by the idle reaper before it closed (never in practice)
            return
        self.done = True
        reactor = self.reactor
        reactor.flows.pop(self, None)
        how = self.sockets()
        held = how is HOLD
        handlers = reactor.handlers
        for way in (self.inbound, self.outbound):
            if held:  # the sockets stay open: out of the epoll set now
                reactor.unwatch(way.sfd)
            else:  # closing the socket takes it out of the epoll set
                handlers.pop(way.sfd, None)
            way.release()
            # No reference cycle is left (flow <-> ways, way <-> way): the flow's objects go
            # with their last reference, not at a pass of the cyclic collector (that cost
            # each connection a few microseconds).
            way.flow = way.other = _GONE
        if self.idle_timeout_s < math.inf:
            reactor.reaper.forget(self)
        client, backend = self.client, self.backend
        if held:  # Azure drops an idle flow silently: nobody hears of it until the hold ends
            reactor.hold((client, backend), self.idle_hold_s)
        elif (
            reactor.closer is not None
            and how is QUIET
            and isinstance(client, socket.socket)
            and isinstance(backend, socket.socket)
        ):  # a quiet close: the reactor's closing thread sends the FINs
            reactor.closer.defer(client)
            reactor.closer.defer(backend)
        else:
            _close_both(client, backend, abort=how is RESET)
        reason = self.outcome
        self.stats.close(reason)
        if self.on_end is not None:
            self.on_end(self)


def _close_both(client: AnySocket, backend: AnySocket, *, abort: bool) -> None:
    """Close both sides of a flow: reset (an abort), or a quiet close that sends the FIN."""
    for side in (client, backend):
        if abort:
            reset_socket(side)
        else:
            try:  # noqa: SIM105  (twice a flow: a try costs less than contextlib.suppress)
                side.close()
            except OSError:
                pass


# Per direction: (end of stream reason, source failure, destination failure).
_IN_NAMES = (CLIENT_CLOSED, CLIENT_ERROR, BACKEND_ERROR)
_OUT_NAMES = (BACKEND_CLOSED, BACKEND_ERROR, CLIENT_ERROR)


class Way:
    """One direction of a flow: reads ``sfd``, writes ``dfd``.

    ``readable``/``writable`` remember what the kernel last reported (edge-triggered: a
    flag is cleared only when a call would block). Bytes read and not yet written wait in
    ``rest`` (copied out of the shared buffer) or in ``pipe`` (``pending`` bytes); no more is
    read until they are written.
    """

    __slots__ = (
        "agg",
        "dfd",
        "dst",
        "finished",
        "flow",
        "hangup",
        "mine",
        "names",
        "other",
        "pending",
        "pipe",
        "queued",
        "readable",
        "rest",
        "sfd",
        "splice_refused",
        "spliced",
        "writable",
    )

    def __init__(
        self,
        flow: SocketFlow,
        sfd: int,
        dst: AnySocket,
        mine: Traffic,
        agg: Traffic,
        *,
        names: tuple[CloseReason, CloseReason, CloseReason],
    ) -> None:
        self.flow = flow
        self.sfd = sfd
        self.dst = dst
        self.dfd = dst.fileno()
        self.mine = mine
        self.agg = agg
        self.names = names
        self.other: Way = self
        self.readable = False
        self.writable = True
        self.queued = False
        self.hangup = False
        self.finished = False
        self.spliced = False
        self.splice_refused = False  # the kernel would not splice these sockets: copy
        self.pipe: fastpath.Pipe | None = None
        self.pending = 0
        self.rest: memoryview | None = None

    def ready(self, events: int) -> None:
        """Events on this direction's source socket (the other direction's destination)."""
        if events & _READABLE:
            self.readable = True
            if events & _HANGUP:
                self.hangup = True
            self.pump()
        if events & _WRITABLE and not self.flow.done:
            other = self.other
            other.writable = True
            if other.pending or other.rest is not None:
                other.pump()

    def resume(self) -> None:
        self.pump()

    def release(self) -> None:
        """Give the pipe back to the pool (closed instead if bytes are still in it)."""
        if self.pipe is not None:
            self.flow.fast.give_pipe(self.pipe, empty=self.pending == 0)
            self.pipe = None

    def pump(self) -> None:
        """Move bytes until the source would block, the destination would block, or the
        direction used its turn; forward the source's end of stream."""
        flow = self.flow
        if flow.done or self.finished:
            return
        fast = flow.fast
        turns = _FULL_READS
        while True:
            if (self.pending or self.rest is not None) and not self._deliver():
                return
            if not self.readable:
                if self.pipe is not None:
                    self.release()
                return
            if not turns:
                flow.reactor.again(self)
                return
            turns -= 1
            if self.spliced and self.pipe is None:
                try:
                    self.pipe = fast.take_pipe()
                except OSError:  # out of descriptors: copy instead
                    self.spliced = False
            n = self._splice_in(fast) if self.spliced else self._read(fast)
            if n <= 0:
                return

    def _read(self, fast: fastpath.FastPath) -> int:
        """One read into the shared buffer, written on at once; what the destination does not
        take is set aside. A full read switches to splicing (where the platform can)."""
        view, buffers = fast.first_read
        try:
            n = os.readv(self.sfd, buffers)
        except BlockingIOError:
            self.readable = False
            return -1
        except OSError:
            self.flow.end(self.names[1])
            return -1
        if n == 0:
            self._eof()
            return 0
        # (the hop every relayed byte takes: _arrived and _count inlined, one clock read)
        mine, agg = self.mine, self.agg
        mine.packets += 1
        agg.packets += 1
        try:
            sent = os.write(self.dfd, view[:n])
        except BlockingIOError:
            sent = 0
        except OSError:
            self.flow.end(self.names[2])
            return -1
        mine.bytes += sent
        agg.bytes += sent
        flow = self.flow
        flow.last = flow.reactor.now()
        if sent < n:
            self.rest = memoryview(view[sent:n].tobytes())
            self.writable = False
        if n == len(view):
            self.spliced = fast.use_splice and not self.splice_refused
        elif not self.hangup:  # a short read drained the socket: the next data is an edge
            self.readable = False
        return n

    def _splice_in(self, fast: fastpath.FastPath) -> int:
        """One splice from the source into the pipe; the pipe is emptied by ``_deliver``."""
        assert self.pipe is not None
        try:
            n = os.splice(self.sfd, self.pipe[1], fast.pipe_size, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            self.readable = False
            self.spliced = False  # drained: the next data is probed through the buffer
            self.release()
            return -1
        except OSError as error:
            if error.errno != errno.EINVAL:
                self.flow.end(self.names[1])
                return -1
            self._refuse_splice()  # a socket that cannot splice (the pipe is empty)
            return self._read(fast)
        if n == 0:
            self.release()
            self._eof()
            return 0
        self.pending = n
        self._arrived()
        return n

    def _deliver(self) -> bool:
        """Write what waits; True once nothing does."""
        if not self.writable:
            return False
        if self.rest is not None:
            try:
                sent = os.write(self.dfd, self.rest)
            except BlockingIOError:
                sent = 0
            except OSError:
                self.flow.end(self.names[2])
                return False
            self._count(sent)
            if sent < len(self.rest):
                self.rest = self.rest[sent:]
                self.writable = False
                return False
            self.rest = None
            return True
        assert self.pipe is not None
        try:
            moved = os.splice(self.pipe[0], self.dfd, self.pending, flags=_SPLICE_FLAGS)
        except BlockingIOError:
            moved = 0
        except OSError as error:
            if error.errno != errno.EINVAL:
                self.flow.end(self.names[2])
                return False
            self._refuse_splice()  # what the pipe holds is written by copy instead
            return self._deliver()
        self._count(moved)
        self.pending -= moved
        if self.pending:
            self.writable = False
            return False
        return True

    def _refuse_splice(self) -> None:
        """The kernel refused to splice (EINVAL: a socket of a kind splice does not take):
        this direction copies from now on; bytes already in its pipe wait in ``rest``."""
        self.spliced = False
        self.splice_refused = True
        if self.pipe is None:
            return
        held = bytearray()
        while len(held) < self.pending:
            held += os.read(self.pipe[0], self.pending - len(held))
        self.pending = 0
        self.release()
        if held:
            self.rest = memoryview(bytes(held))

    def _arrived(self) -> None:
        """One read brought bytes: a packet each way of counting, and the flow is active."""
        self.mine.packets += 1
        self.agg.packets += 1
        self.flow.last = self.flow.reactor.now()

    def _count(self, n: int) -> None:
        """``n`` bytes delivered: counted, and the flow is active (a slow reader draining
        what lbsim holds keeps its flow alive)."""
        if n > 0:
            self.mine.bytes += n
            self.agg.bytes += n
            self.flow.last = self.flow.reactor.now()

    def _eof(self) -> None:
        """The source ended its stream: forward it as a FIN, then this direction is done.
        After the other direction, closing both sides sends that FIN (neither has unread
        bytes left), one call fewer."""
        self.finished = True
        if self.other.finished:
            self.flow.half_done(self.names[0])
            return
        try:
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            self.flow.end(self.names[2])
            return
        self.flow.half_done(self.names[0])


def nodelay(sock: AnySocket) -> None:
    """Turn Nagle off on a TCP socket; a socket that refuses is left as it is."""
    try:  # noqa: SIM105  (once a flow: a try costs less than contextlib.suppress)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass


def reset_socket(sock: AnySocket) -> None:
    """Close ``sock`` so that its peer sees a RST (SO_LINGER on, 0 s); never raises."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    with contextlib.suppress(OSError):
        sock.close()
