"""lbsim's TCP engine: one epoll set, owned by lbsim, for the listening sockets and every
relayed socket of a trio run, waited on by one trio task.

A relayed connection costs no trio task and no trio wait: each socket is registered once,
edge-triggered, and the reactor calls the flow's copy steps when the kernel reports it
ready. That halves the scheduling per connection (no task to spawn, no epoll registration
per wait) and keeps an idle connection down to a few small objects. The reactor is still an
ordinary trio task: it waits on its epoll descriptor with ``trio.lowlevel.wait_readable``,
lets other tasks run between rounds, and closes every flow it holds when cancelled.

Each direction of a flow (:class:`Way`) moves bytes as :mod:`lbsim.dataplane.fastpath`
describes: small reads through one buffer shared by the whole run, and once a read fills
it, ``os.splice`` through a pooled pipe until the source is drained; at most one pipe's or
one buffer's worth of bytes per direction is held (the relay's backpressure). A direction
forwards its source's end of stream as a half-close; the flow ends when both have, when a
side fails (the other is reset), when it idles, or when it is aborted.
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
from typing import Any, Protocol

import trio

from lbsim.dataplane import fastpath, idle
from lbsim.dataplane.stats import FlowStats, Traffic

__all__ = ["Acceptor", "Reactor", "SocketFlow", "Way", "default", "nodelay", "reset_socket"]

AnySocket = trio.socket.SocketType | socket.socket

_REGISTER = select.EPOLLIN | select.EPOLLOUT | select.EPOLLRDHUP | select.EPOLLET
_HANGUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_READABLE = select.EPOLLIN | _HANGUP
_WRITABLE = select.EPOLLOUT | select.EPOLLHUP | select.EPOLLERR
_SPLICE_FLAGS = fastpath.SPLICE_FLAGS
# Full reads (of the buffer or of a pipe) one direction makes before others get a turn.
_FULL_READS = 3
# Connections accepted in a row before other sockets get a turn.
_ACCEPT_BURST = 64
# Events taken from the epoll set per round.
_MAX_EVENTS = 512
_LINGER_RESET = struct.pack("ii", 1, 0)

# Out of descriptors or memory: the connection waits in the backlog while lbsim waits a little.
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The client went away before it was accepted: nothing to do.
_ACCEPT_GONE = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM})
_EXHAUSTED_RETRY_S = 0.1

# Why a flow ended (the values of relay.CloseReason, kept as plain strings here).
CLIENT_CLOSED = "client-closed"
BACKEND_CLOSED = "backend-closed"
CLIENT_ERROR = "client-error"
BACKEND_ERROR = "backend-error"
IDLE_TIMEOUT = "idle-timeout"
CANCELLED = "cancelled"
_ABORTS = frozenset({CLIENT_ERROR, BACKEND_ERROR, CANCELLED})


class Handler(Protocol):
    """What the reactor calls: ``ready`` with the epoll events of a registered descriptor,
    ``resume`` for a handler that asked for another turn with :meth:`Reactor.again`."""

    def ready(self, events: int) -> None: ...

    def resume(self) -> None: ...


class Reactor:
    """The epoll set, its handlers, and the flows it relays."""

    def __init__(self, fast: fastpath.FastPath | None = None) -> None:
        """An empty reactor; bytes go through ``fast`` unless a flow brings its own."""
        self.fast = fast or fastpath.FastPath()
        self.flows: dict[SocketFlow, None] = {}
        self._epoll = select.epoll()
        self.handlers: dict[int, Handler] = {}  # by descriptor
        self._again: list[Handler] = []
        self._nursery: trio.Nursery | None = None
        self._reaper: idle.IdleReaper | None = None

    @property
    def reaper(self) -> idle.IdleReaper:
        """The run's idle watcher (looked up once)."""
        if self._reaper is None:
            self._reaper = idle.reaper()
        return self._reaper

    # --- registration ---------------------------------------------------------------------
    def watch(self, fd: int, handler: Handler, events: int = _REGISTER) -> None:
        """Call ``handler`` when ``fd`` is ready (edge-triggered) until :meth:`unwatch` or
        the descriptor is closed."""
        self._epoll.register(fd, events)
        self.handlers[fd] = handler

    def unwatch(self, fd: int) -> None:
        """Forget ``fd``; a descriptor that is already closed is forgotten as well."""
        if self.handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError, ValueError):
                self._epoll.unregister(fd)

    def again(self, handler: Handler) -> None:
        """Give ``handler`` another turn (``resume``) once other tasks had theirs."""
        self._again.append(handler)

    def later(self, delay_s: float, call: Callable[[], None]) -> None:
        """Call ``call`` ``delay_s`` seconds from now (from a task of the reactor's)."""
        assert self._nursery is not None, "the reactor is not running"
        self._nursery.start_soon(_call_later, delay_s, call)

    # --- flows and listeners --------------------------------------------------------------
    def relay(
        self,
        client: AnySocket,
        backend: AnySocket,
        stats: FlowStats,
        *,
        idle_timeout_s: float | None = None,
        tcp_reset: bool = False,
        on_end: Callable[[SocketFlow], None] | None = None,
        tag: Any = None,
        fast: fastpath.FastPath | None = None,
    ) -> SocketFlow:
        """Relay two connected non-blocking TCP sockets until the flow ends; ``on_end`` is
        called once, after both are closed and ``stats`` has its close reason. The caller
        sets TCP_NODELAY where it wants it (lbsim's listeners pass it on to what they
        accept)."""
        flow = SocketFlow(self, client, backend, stats, fast or self.fast)
        flow.idle_timeout_s = math.inf if idle_timeout_s is None else idle_timeout_s
        flow.tcp_reset = tcp_reset
        flow.on_end = on_end
        flow.tag = tag
        self.flows[flow] = None
        try:
            self.watch(flow.inbound.sfd, flow.inbound)
            self.watch(flow.outbound.sfd, flow.outbound)
        except (OSError, ValueError):  # a side already closed or not a socket: end it here
            flow.end(CANCELLED)
            return flow
        if flow.idle_timeout_s < math.inf:
            self.reaper.watch(flow)
        return flow

    def listen(self, sock: socket.socket, on_accept: Callable[[socket.socket, Any], None]) -> None:
        """Accept on ``sock`` (listening, non-blocking) and hand each connection,
        non-blocking, with its peer address to ``on_accept``."""
        self.watch(sock.fileno(), Acceptor(self, sock, on_accept), select.EPOLLIN | select.EPOLLET)

    def abort_all(self) -> None:
        """End every flow still open as cancelled (both sides reset)."""
        for flow in list(self.flows):
            flow.end(CANCELLED)

    def close(self) -> None:
        """Abort the open flows and close the epoll set."""
        self.abort_all()
        self.handlers.clear()
        self._epoll.close()

    # --- the task -------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dispatch readiness until cancelled; then every open flow is aborted."""
        poll, handlers, epfd = self._epoll.poll, self.handlers, self._epoll.fileno()
        try:
            async with trio.open_nursery() as self._nursery:
                task_status.started()
                while True:
                    if self._again:
                        await trio.lowlevel.checkpoint()
                        again, self._again = self._again, []
                        for handler in again:
                            handler.resume()
                    else:
                        await trio.lowlevel.wait_readable(epfd)
                    for fd, events in poll(0, _MAX_EVENTS):
                        target = handlers.get(fd)
                        if target is not None:
                            target.ready(events)
        finally:
            self._nursery = None
            self.close()


async def _call_later(delay_s: float, call: Callable[[], None]) -> None:
    await trio.sleep(delay_s)
    call()


class Acceptor:
    """A listening socket in the reactor: accepts until the backlog is empty."""

    __slots__ = ("on_accept", "reactor", "sock")

    def __init__(
        self, reactor: Reactor, sock: socket.socket, on_accept: Callable[[socket.socket, Any], None]
    ) -> None:
        self.reactor = reactor
        self.sock = sock
        self.on_accept = on_accept

    def ready(self, events: int) -> None:
        self.resume()

    def resume(self) -> None:
        """Accept up to a burst; the rest of the backlog gets the next turn."""
        accept, on_accept = self.sock.accept, self.on_accept
        for _ in range(_ACCEPT_BURST):
            try:
                conn, peer = accept()
            except BlockingIOError:
                return
            except OSError as error:
                if error.errno in _ACCEPT_EXHAUSTED:
                    self.reactor.later(_EXHAUSTED_RETRY_S, self.resume)
                    return
                if error.errno in _ACCEPT_GONE:
                    continue
                if self.sock.fileno() < 0:  # closed meanwhile: nothing more to accept
                    return
                raise
            conn.setblocking(False)
            on_accept(conn, peer)
        self.reactor.again(self)


class SocketFlow:
    """One relayed connection: a client socket, a backend socket, a :class:`Way` each
    direction. Watched by the run's idle reaper when it has an idle timeout."""

    __slots__ = (
        "__weakref__",
        "backend",
        "client",
        "done",
        "ended",
        "eofs",
        "fast",
        "first_eof",
        "idle_timeout_s",
        "inbound",
        "last",
        "on_end",
        "outbound",
        "reactor",
        "stats",
        "tag",
        "tcp_reset",
    )

    def __init__(
        self,
        reactor: Reactor,
        client: AnySocket,
        backend: AnySocket,
        stats: FlowStats,
        fast: fastpath.FastPath,
    ) -> None:
        self.reactor = reactor
        self.client = client
        self.backend = backend
        self.stats = stats
        self.fast = fast
        self.last = trio.current_time()
        self.idle_timeout_s = math.inf
        self.tcp_reset = False
        self.done = False
        self.eofs = 0
        self.first_eof: str | None = None
        self.ended: str | None = None
        self.on_end: Callable[[SocketFlow], None] | None = None
        self.tag: Any = None
        cfd, bfd = client.fileno(), backend.fileno()
        self.inbound = Way(self, cfd, backend, stats.inbound, stats.rule.inbound, names=_IN_NAMES)
        self.outbound = Way(
            self, bfd, client, stats.outbound, stats.rule.outbound, names=_OUT_NAMES
        )
        self.inbound.other = self.outbound
        self.outbound.other = self.inbound

    @property
    def reason(self) -> str:
        """Why the flow ended (or would, now): an abort, else the side that closed first."""
        if self.ended is not None:
            return self.ended
        return self.first_eof if self.eofs == 2 and self.first_eof else CANCELLED

    def expire(self) -> None:
        """End the flow because no byte moved for ``idle_timeout_s``."""
        self.end(IDLE_TIMEOUT)

    def half_done(self, reason: str) -> None:
        """One direction forwarded its end of stream; the second one ends the flow."""
        self.eofs += 1
        self.first_eof = self.first_eof or reason
        if self.eofs == 2:
            self.end(self.first_eof)

    def end(self, reason: str) -> None:
        """End the flow now (the first reason wins): both sides closed, reset for an abort
        or an idle timeout with TCP reset; counters closed; ``on_end`` called. Idempotent."""
        if self.done:
            return
        self.done = True
        self.ended = reason
        reactor = self.reactor
        reactor.flows.pop(self, None)
        abort = reason in _ABORTS or (self.tcp_reset and reason == IDLE_TIMEOUT)
        handlers = reactor.handlers
        for way in (self.inbound, self.outbound):
            handlers.pop(way.sfd, None)  # closing the socket takes it out of the epoll set
            way.release()
        if self.idle_timeout_s < math.inf:
            reactor.reaper.forget(self)
        for side in (self.client, self.backend):
            if abort:
                reset_socket(side)
            else:
                side.close()
        self.stats.close(reason)
        if self.on_end is not None:
            self.on_end(self)


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
        "readable",
        "rest",
        "sfd",
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
        names: tuple[str, str, str],
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
        self.hangup = False
        self.finished = False
        self.spliced = False
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
        self.mine.packets += 1
        self.agg.packets += 1
        self.flow.last = trio.current_time()
        try:
            sent = os.write(self.dfd, view[:n])
        except BlockingIOError:
            sent = 0
        except OSError:
            self.flow.end(self.names[2])
            return -1
        self._count(sent)
        if sent < n:
            self.rest = memoryview(view[sent:n].tobytes())
            self.writable = False
        if n == len(view):
            self.spliced = fast.use_splice
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
        except OSError:
            self.flow.end(self.names[1])
            return -1
        if n == 0:
            self.release()
            self._eof()
            return 0
        self.pending = n
        self.mine.packets += 1
        self.agg.packets += 1
        self.flow.last = trio.current_time()
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
        except OSError:
            self.flow.end(self.names[2])
            return False
        self._count(moved)
        self.pending -= moved
        if self.pending:
            self.writable = False
            return False
        return True

    def _count(self, n: int) -> None:
        self.mine.bytes += n
        self.agg.bytes += n

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
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset_socket(sock: AnySocket) -> None:
    """Close ``sock`` so that its peer sees a RST (SO_LINGER on, 0 s); never raises."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


_DEFAULT: trio.lowlevel.RunVar[Reactor] = trio.lowlevel.RunVar("lbsim_reactor")


def default() -> Reactor:
    """The reactor of the current trio run, started as a system task on first use; its open
    flows are aborted when the run ends."""
    try:
        return _DEFAULT.get()
    except LookupError:
        reactor = Reactor(fastpath.default())
        _DEFAULT.set(reactor)
        trio.lowlevel.spawn_system_task(reactor.run, name="lbsim reactor")
        return reactor
