"""lbsim's TCP engine: one epoll set, owned by lbsim, for the listening sockets and every
relayed socket of a trio run, waited on by one trio task.

A relayed connection costs no trio task and no trio wait: each socket is registered once,
edge-triggered, and the reactor calls the flow's copy steps when the kernel reports it
ready. That removes most of the scheduling per connection (no task to spawn, no epoll
re-registration per wait) and keeps an idle connection down to a few small objects. The
reactor is still an ordinary trio task: it waits on its epoll descriptor with
``trio.lowlevel.wait_readable``, lets other tasks run between rounds, and closes every flow
it holds when cancelled.

How a flow moves its bytes: :mod:`lbsim.dataplane.socketflow`.
"""

from __future__ import annotations

import contextlib
import errno
import math
import select
import socket
from collections.abc import Callable
from typing import Any, Protocol

import trio

from lbsim.dataplane import fastpath, idle
from lbsim.dataplane.closer import Closer
from lbsim.dataplane.socketflow import (
    CANCELLED,
    EPOLLET,
    EPOLLIN,
    EPOLLOUT,
    EPOLLRDHUP,
    AnySocket,
    SocketFlow,
    reset_socket,
)
from lbsim.dataplane.stats import FlowStats

__all__ = [
    "ACCEPT_EXHAUSTED",
    "ACCEPT_GONE",
    "EXHAUSTED_RETRY_S",
    "HOSTED",
    "Acceptor",
    "Pump",
    "Reactor",
    "hosted",
]


_REGISTER = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET
# Connections accepted in a row before other sockets get a turn.
_ACCEPT_BURST = 64
# Events taken from the epoll set per round.
_MAX_EVENTS = 512

# Out of descriptors or memory: the connection waits in the backlog while lbsim waits a little.
ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
# The client went away before it was accepted, or a network error Linux passes on to
# accept (its manual says: treat them as EAGAIN): nothing to do.
ACCEPT_GONE = frozenset(
    {
        errno.ECONNABORTED,
        errno.EPROTO,
        errno.EPERM,
        errno.ENETDOWN,
        errno.ENOPROTOOPT,
        errno.EHOSTDOWN,
        errno.ENONET,
        errno.EHOSTUNREACH,
        errno.EOPNOTSUPP,
        errno.ENETUNREACH,
    }
)
EXHAUSTED_RETRY_S = 0.1


class Handler(Protocol):
    """What the reactor calls: ``ready`` with the epoll events of a registered descriptor,
    ``resume`` for a handler that asked for another turn with :meth:`Reactor.again`
    (``queued`` while it waits for it)."""

    queued: bool

    def ready(self, events: int) -> None: ...

    def resume(self) -> None: ...


class Reactor:
    """The epoll set, its handlers, and the flows it relays."""

    def __init__(self, fast: fastpath.FastPath | None = None, *, hosted: bool = False) -> None:
        """An empty reactor; bytes go through ``fast`` unless a flow brings its own.
        ``hosted``: :mod:`lbsim.dataplane.host` runs its rounds, not a task of its own."""
        self.fast = fast or fastpath.FastPath()
        self.hosted = hosted
        # trio's clock, read a few times a flow: the run's clock itself once it is known
        self.now: Callable[[], float] = trio.current_time
        self.flows: dict[SocketFlow, None] = {}
        self._epoll = select.epoll()
        self.handlers: dict[int, Handler] = {}  # by descriptor
        self._again: list[Handler] = []
        self._nursery: trio.Nursery | None = None
        self.reaper = idle.IdleReaper()  # its task runs beside the reactor's (attach)
        # Hosted (lbsim up): ended flows are closed by a thread of their own.
        self.closer: Closer | None = Closer() if hosted else None

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

    def attach(self, nursery: trio.Nursery) -> None:
        """Where the reactor's timers and its idle reaper run (its own task does this
        itself; :mod:`lbsim.dataplane.host` gives the hosted reactor its nursery)."""
        self._nursery = nursery
        self.now = trio.lowlevel.current_clock().current_time
        nursery.start_soon(self.reaper.run, name="lbsim idle reaper")

    def again(self, handler: Handler) -> None:
        """Give ``handler`` another turn (``resume``) once other tasks had theirs."""
        if not handler.queued:
            handler.queued = True
            self._again.append(handler)

    def later(self, delay_s: float, call: Callable[[], None]) -> None:
        """Call ``call`` ``delay_s`` seconds from now (from a task of the reactor's)."""
        assert self._nursery is not None, "the reactor is not running"
        self._nursery.start_soon(_call_later, delay_s, call)

    def hold(self, sides: tuple[AnySocket, ...], hold_s: float) -> None:
        """Keep ``sides`` open, unheard, for ``hold_s`` seconds (or until the reactor stops),
        then reset them."""
        if self._nursery is None:
            for side in sides:
                reset_socket(side)
            return
        self._nursery.start_soon(_reset_after, sides, hold_s)

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
        idle_hold_s: float = 0.0,
    ) -> SocketFlow:
        """Relay two connected non-blocking TCP sockets until the flow ends; ``on_end`` is
        called once, when ``stats`` has its close reason.

        After an idle timeout without ``tcp_reset`` both sockets are held silently for
        ``idle_hold_s`` seconds, then reset (0: closed at once). The caller sets TCP_NODELAY
        where it wants it (lbsim's listeners pass it on to what they accept)."""
        flow = SocketFlow(self, client, backend, stats, fast or self.fast)
        flow.idle_timeout_s = math.inf if idle_timeout_s is None else idle_timeout_s
        flow.tcp_reset = tcp_reset
        flow.idle_hold_s = idle_hold_s
        flow.on_end = on_end
        flow.tag = tag
        self.flows[flow] = None
        try:
            self.watch(flow.inbound.sfd, flow.inbound)
            self.watch(flow.outbound.sfd, flow.outbound)
        except (OSError, ValueError):  # a side already closed or not a socket: end it here
            flow.idle_timeout_s = math.inf  # never watched by the idle reaper
            flow.end(CANCELLED)
            return flow
        if flow.idle_timeout_s < math.inf:
            self.reaper.watch(flow)
        return flow

    def listen(self, sock: socket.socket, on_accept: Callable[[socket.socket, Any], None]) -> None:
        """Accept on ``sock`` (listening, non-blocking) and hand each connection,
        non-blocking, with its peer address to ``on_accept``."""
        acceptor = Acceptor(self, sock, on_accept)
        acceptor.pump = self.pump(sock.fileno(), acceptor.drain)

    def pump(self, fd: int, drain: Callable[[], bool]) -> Pump:
        """Call ``drain`` whenever ``fd`` has something to read (see :class:`Pump`)."""
        pump = Pump(self, drain)
        self.watch(fd, pump, EPOLLIN | EPOLLET)
        return pump

    def abort_all(self) -> None:
        """End every flow still open as cancelled (both sides reset)."""
        for flow in list(self.flows):
            flow.end(CANCELLED)

    def close(self) -> None:
        """Abort the open flows, close the epoll set, and wait for the closes handed over."""
        self.abort_all()
        self.handlers.clear()
        self._epoll.close()
        if self.closer is not None:
            self.closer.stop()

    # --- the rounds -----------------------------------------------------------------------
    def dispatch(self, *, block: bool = False) -> None:
        """One round: the handlers that asked for another turn, then every descriptor ready
        (waited for if ``block`` and no handler asked)."""
        timeout = -1.0 if block else 0.0
        if self.closer is not None:  # flows ended since the last round (its handlers' or trio's)
            self.closer.flush()
        if self._again:
            again, self._again = self._again, []
            for handler in again:
                handler.queued = False
                handler.resume()
            timeout = 0.0
        handlers = self.handlers
        for fd, events in self._epoll.poll(timeout, _MAX_EVENTS):
            target = handlers.get(fd)
            if target is not None:
                target.ready(events)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Dispatch readiness until cancelled; then every open flow is aborted."""
        dispatch, epfd = self.dispatch, self._epoll.fileno()
        try:
            async with trio.open_nursery() as nursery:
                self.attach(nursery)
                task_status.started()
                while True:
                    if self._again:
                        await trio.lowlevel.checkpoint()
                    else:
                        await trio.lowlevel.wait_readable(epfd)
                    dispatch()
        finally:
            self._nursery = None
            self.close()


async def _reset_after(sides: tuple[AnySocket, ...], hold_s: float) -> None:
    try:
        await trio.sleep(hold_s)
    finally:
        for side in sides:
            reset_socket(side)


async def _call_later(delay_s: float, call: Callable[[], None]) -> None:
    await trio.sleep(delay_s)
    call()


class Pump:
    """A descriptor read by ``drain`` when the reactor finds it readable: ``drain`` reads
    until a call would block (and returns False) or until it has had a burst (True: it gets
    another turn once the others had theirs). Edge-triggered, so every burst ends one way or
    the other."""

    __slots__ = ("drain", "queued", "reactor")

    def __init__(self, reactor: Reactor, drain: Callable[[], bool]) -> None:
        self.reactor = reactor
        self.drain = drain
        self.queued = False

    def ready(self, events: int) -> None:
        if not self.queued:  # (a queued pump drains on its turn anyway)
            self.resume()

    def resume(self) -> None:
        if self.drain():
            self.reactor.again(self)


class Acceptor:
    """A listening socket in the reactor, drained by its :class:`Pump`: a burst of
    connections per turn until the backlog is empty."""

    __slots__ = ("on_accept", "pump", "reactor", "retrying", "sock")

    def __init__(
        self, reactor: Reactor, sock: socket.socket, on_accept: Callable[[socket.socket, Any], None]
    ) -> None:
        self.reactor = reactor
        self.sock = sock
        self.on_accept = on_accept
        self.pump: Pump | None = None
        self.retrying = False  # a retry after running out of descriptors is scheduled

    def retry(self) -> None:
        self.retrying = False
        if self.pump is not None:
            self.pump.resume()

    def drain(self) -> bool:
        """Accept up to a burst; True if the backlog may hold more."""
        if self.retrying:  # out of descriptors: the retry already scheduled will accept
            return False
        accept, on_accept = self.sock.accept, self.on_accept
        for _ in range(_ACCEPT_BURST):
            try:
                conn, peer = accept()
            except BlockingIOError:
                return False
            except OSError as error:
                if error.errno in ACCEPT_EXHAUSTED:
                    self.retrying = True
                    self.reactor.later(EXHAUSTED_RETRY_S, self.retry)
                    return False
                if error.errno in ACCEPT_GONE:
                    continue
                if self.sock.fileno() < 0:  # closed meanwhile: nothing more to accept
                    return False
                raise
            conn.setblocking(False)
            on_accept(conn, peer)
        return True


# The reactor whose rounds lbsim.dataplane.host runs, in a run it hosts.
HOSTED: trio.lowlevel.RunVar[Reactor | None] = trio.lowlevel.RunVar("lbsim_hosted", None)


def hosted() -> Reactor | None:
    """The reactor that owns the thread of this trio run (``lbsim up``), if any."""
    return HOSTED.get()
