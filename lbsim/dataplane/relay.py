"""lbsim's TCP relay: one client connection joined to one backend connection.

Two paths with the same behaviour:

- :func:`relay_streams` copies between two ``trio.abc.HalfCloseableStream`` objects (memory
  streams in tests, ``trio.SocketStream`` anywhere);
- :func:`relay_sockets` moves bytes between two connected TCP sockets with the fast path of
  :mod:`lbsim.dataplane.fastpath` (``os.splice`` through a pipe on Linux, else a raw
  non-blocking copy through one shared buffer).

Both copy each direction in a task of its own (client to backend in the calling task; the
socket relay starts the other in the caller's nursery if given, and stops a flow by waking
what waits on its sockets rather than with a cancel scope: less memory and CPU per
connection), forward an end of stream as a half-close while the other direction keeps
flowing, hold a bounded number of bytes per direction (a reader that stops reading stops
the writer), end the flow after ``idle_timeout_s`` without a byte either way, count into a
:class:`~lbsim.dataplane.stats.FlowStats`, always close both sides, and return why the flow
ended. A failing peer ends its own flow only: errors become a
:class:`CloseReason`, never an exception.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import math
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Generic, TypeVar

import attrs
import trio

from lbsim.dataplane import fastpath, idle
from lbsim.dataplane.stats import FlowStats, RuleStats, Traffic
from lbsim.errors import LbsimError

__all__ = [
    "BackendUnreachableError",
    "CloseReason",
    "RelayResult",
    "connect_backend",
    "connect_or_reset",
    "connect_raw",
    "relay_sockets",
    "relay_streams",
    "reset_socket",
    "reset_soon",
    "reset_stream",
]


class CloseReason(enum.StrEnum):
    """Why a relayed flow ended (stable strings, used in logs and metric labels)."""

    CLIENT_CLOSED = "client-closed"
    BACKEND_CLOSED = "backend-closed"
    CLIENT_ERROR = "client-error"
    BACKEND_ERROR = "backend-error"
    IDLE_TIMEOUT = "idle-timeout"
    EVICTED = "evicted"  # a UDP flow pushed out of a full flow table
    BACKEND_UNREACHABLE = "backend-unreachable"  # for the caller of connect_or_reset
    CANCELLED = "cancelled"


_ABORTS = frozenset({CloseReason.CLIENT_ERROR, CloseReason.BACKEND_ERROR, CloseReason.CANCELLED})


@attrs.frozen
class RelayResult:
    """How a flow ended and how many bytes were delivered each way."""

    reason: CloseReason
    bytes_in: int
    bytes_out: int


class BackendUnreachableError(LbsimError):
    """The backend refused, was unreachable, or did not answer in time."""

    def __init__(self, address: tuple[str, int], cause: str) -> None:
        """An error that names the backend address and the cause."""
        super().__init__("BackendUnreachable", f"backend {address[0]}:{address[1]}: {cause}")
        self.address = address


S = TypeVar("S")
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)
_LINGER_RESET = struct.pack("ii", 1, 0)


@attrs.frozen
class Way:
    """One direction of a flow: which side it reads, which it writes, how it counts, and how
    its end and its failures are named."""

    src: int
    dst: int
    closed: CloseReason
    src_error: CloseReason
    dst_error: CloseReason


_CLIENT, _BACKEND = 0, 1
_IN = Way(
    _CLIENT,
    _BACKEND,
    CloseReason.CLIENT_CLOSED,
    CloseReason.CLIENT_ERROR,
    CloseReason.BACKEND_ERROR,
)
_OUT = Way(
    _BACKEND,
    _CLIENT,
    CloseReason.BACKEND_CLOSED,
    CloseReason.BACKEND_ERROR,
    CloseReason.CLIENT_ERROR,
)


class Flow(Generic[S]):
    """State shared by the two copying loops of one flow and the idle watcher.

    A stream flow is stopped by cancelling its nursery's scope. A socket flow has no scope
    of its own: it is stopped by waking whatever waits on its sockets (trio's
    ``notify_closing``), and each copying loop checks ``stopped`` before it waits again.
    """

    __slots__ = (
        "done",
        "ended",
        "eofs",
        "first_eof",
        "idle_timeout_s",
        "joiner",
        "last",
        "out_done",
        "scope",
        "sides",
        "stats",
        "stopped",
    )

    def __init__(self, sides: tuple[S, S], stats: FlowStats, idle_timeout_s: float | None) -> None:
        """A flow between ``sides`` (client, backend) that has just moved."""
        self.sides = sides
        self.stats = stats
        self.last = trio.current_time()
        self.idle_timeout_s = math.inf if idle_timeout_s is None else idle_timeout_s
        self.eofs = 0
        self.first_eof: CloseReason | None = None
        self.ended: CloseReason | None = None
        self.done = self.stopped = self.out_done = False
        self.scope: trio.CancelScope | None = None
        self.joiner: trio.lowlevel.Task | None = None

    def traffic(self, way: Way) -> tuple[Traffic, Traffic]:
        """The flow's and the rule's counters for one direction."""
        if way.src == _CLIENT:
            return self.stats.inbound, self.stats.rule.inbound
        return self.stats.outbound, self.stats.rule.outbound

    def moved(self, mine: Traffic, agg: Traffic, n: int) -> None:
        """Count ``n`` bytes delivered in one read, and note the flow active now."""
        mine.bytes += n
        mine.packets += 1
        agg.bytes += n
        agg.packets += 1
        self.last = trio.current_time()

    def eof(self, reason: CloseReason) -> None:
        """Note one direction done; the flow ends once both are (both loops have returned)."""
        self.eofs += 1
        self.first_eof = self.first_eof or reason
        if self.eofs == 2 and self.scope is not None:
            self.scope.cancel()

    def end(self, reason: CloseReason) -> None:
        """End the flow now for ``reason``; the first reason given wins."""
        self.ended = self.ended or reason
        if self.scope is not None:
            self.scope.cancel()
        elif not self.stopped:
            self.stopped = True
            for side in self.sides:
                trio.lowlevel.notify_closing(side)  # type: ignore[arg-type]

    def expire(self) -> None:
        """End the flow because no byte moved for ``idle_timeout_s``."""
        self.end(CloseReason.IDLE_TIMEOUT)

    def outcome(self) -> CloseReason:
        """Why the flow ended: an abort, else the side that closed first, else cancelled."""
        if self.ended is not None:
            return self.ended
        return self.first_eof if self.eofs == 2 and self.first_eof else CloseReason.CANCELLED

    def abort(self) -> None:
        """End the flow as cancelled (a copying loop was cancelled or failed)."""
        self.end(CloseReason.CANCELLED)

    def left(self, way: Way) -> None:
        """Note a copying loop of a socket flow returned, however it ended."""
        if way.src == _BACKEND:
            self.finish_out()

    def finish_out(self) -> None:
        """Note the backend-to-client loop returned; wake the task joining it."""
        self.out_done = True
        if self.joiner is not None:
            trio.lowlevel.reschedule(self.joiner)
            self.joiner = None

    async def join_out(self) -> None:
        """Return once the backend-to-client loop has returned (cancellable)."""
        if self.out_done:
            return
        self.joiner = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self.joiner = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)


async def _relay(
    flow: Flow[S],
    pump: Callable[[Flow[S], Way], Awaitable[None]],
    close: Callable[[S, bool], Awaitable[None]],
    tcp_reset: bool,
) -> RelayResult:
    """Copy both ways until the flow ends, then close (or reset) both sides and record the
    close exactly once. Backend to client runs in a task of its own, client to backend in
    the calling task (one task fewer per connection)."""
    watcher = idle.reaper() if flow.idle_timeout_s < math.inf else None
    if watcher is not None:
        watcher.watch(flow)
    try:
        async with trio.open_nursery() as nursery:
            flow.scope = nursery.cancel_scope
            nursery.start_soon(pump, flow, _OUT, name="lbsim relay out")
            await pump(flow, _IN)
    finally:
        if watcher is not None:
            watcher.forget(flow)
        reason = flow.outcome()
        abort = reason in _ABORTS or (tcp_reset and reason is CloseReason.IDLE_TIMEOUT)
        flow.stats.close(reason)
        with trio.CancelScope(shield=True):  # closing never blocks; it must not be skipped
            for side in flow.sides:
                await close(side, abort)
    return RelayResult(reason, flow.stats.inbound.bytes, flow.stats.outbound.bytes)


def _stats(stats: FlowStats | None) -> FlowStats:
    """The given flow counters, or counters of a rule of their own."""
    return stats or RuleStats().open_flow(trio.current_time())


async def relay_streams(
    client: trio.abc.HalfCloseableStream,
    backend: trio.abc.HalfCloseableStream,
    *,
    idle_timeout_s: float | None = None,
    tcp_reset: bool = False,
    stats: FlowStats | None = None,
    chunk_size: int = 65536,
) -> RelayResult:
    """Relay until both sides closed, one failed or the flow idled; both streams end closed.

    At most ``chunk_size`` bytes per direction are held by lbsim. An idle flow is reset
    when ``tcp_reset`` (abrupt close; RST for a ``trio.SocketStream``), else closed quietly.
    If cancelled from outside, both streams are reset and ``Cancelled`` propagates.
    """
    flow = Flow((client, backend), _stats(stats), idle_timeout_s)
    return await _relay(
        flow, partial(_copy_stream, chunk_size=chunk_size), _close_stream, tcp_reset
    )


async def _close_stream(stream: trio.abc.HalfCloseableStream, abort: bool) -> None:
    """Reset or quietly close one side of a stream flow."""
    if abort:
        await reset_stream(stream)
    else:
        await trio.aclose_forcefully(stream)


async def _copy_stream(
    flow: Flow[trio.abc.HalfCloseableStream], way: Way, *, chunk_size: int
) -> None:
    """Copy one way a chunk at a time, then half-close the writer; failures end the flow."""
    src, dst = flow.sides[way.src], flow.sides[way.dst]
    mine, agg = flow.traffic(way)
    while True:
        try:
            data = await src.receive_some(chunk_size)
        except _STREAM_ERRORS:
            flow.end(way.src_error)
            return
        if not data:
            break
        try:
            await dst.send_all(data)
        except _STREAM_ERRORS:
            flow.end(way.dst_error)
            return
        flow.moved(mine, agg, len(data))
    try:
        await dst.send_eof()
    except _STREAM_ERRORS:
        flow.end(way.dst_error)
        return
    flow.eof(way.closed)


AnySocket = trio.socket.SocketType | socket.socket


async def relay_sockets(
    client: AnySocket,
    backend: AnySocket,
    *,
    idle_timeout_s: float | None = None,
    tcp_reset: bool = False,
    stats: FlowStats | None = None,
    fast: fastpath.FastPath | None = None,
    nursery: trio.Nursery | None = None,
) -> RelayResult:
    """Relay two connected TCP sockets (trio's or the standard library's, non-blocking) as
    :func:`relay_streams` does; both end closed.

    Client to backend is copied in the calling task; backend to client in a task started
    in ``nursery`` (default: a nursery of the call's own). If that task is cancelled, the
    flow ends as cancelled; this call returns only once it has returned. Bytes go through
    ``fast`` (default: one :class:`~lbsim.dataplane.fastpath.FastPath` per trio run),
    waiting only when a call would block. TCP_NODELAY is set on both sockets so that lbsim
    adds no Nagle delay of its own. A reset is a real RST (SO_LINGER 0).
    """
    if nursery is None:
        async with trio.open_nursery() as own:
            return await relay_sockets(
                client,
                backend,
                idle_timeout_s=idle_timeout_s,
                tcp_reset=tcp_reset,
                stats=stats,
                fast=fast,
                nursery=own,
            )
    path = fast or fastpath.default()
    _nodelay(client)
    _nodelay(backend)
    flow: Flow[AnySocket] = Flow((client, backend), _stats(stats), idle_timeout_s)
    pump = path.splice_pump if path.use_splice else path.copy_pump
    watcher = idle.reaper() if flow.idle_timeout_s < math.inf else None
    if watcher is not None:
        watcher.watch(flow)
    nursery.start_soon(pump, flow, _OUT, name="lbsim relay out")
    try:
        await pump(flow, _IN)
        await flow.join_out()
    finally:
        if not flow.out_done:  # cancelled here: stop the other loop, wait until it returns
            flow.abort()
            with trio.CancelScope(shield=True):
                await flow.join_out()
        if watcher is not None:
            watcher.forget(flow)
        reason = flow.outcome()
        abort = reason in _ABORTS or (tcp_reset and reason is CloseReason.IDLE_TIMEOUT)
        flow.stats.close(reason)
        for side in flow.sides:
            _close_socket(side, abort)
    return RelayResult(reason, flow.stats.inbound.bytes, flow.stats.outbound.bytes)


def _close_socket(sock: AnySocket, abort: bool) -> None:
    """Reset or quietly close one side of a socket flow; no task waits on it any more."""
    if abort:
        reset_socket(sock)
    else:
        sock.close()


def _nodelay(sock: AnySocket) -> None:
    """Turn Nagle off on a TCP socket; a socket that refuses is left as it is."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def reset_socket(sock: trio.socket.SocketType | socket.socket) -> None:
    """Close ``sock`` so that its peer sees a RST (SO_LINGER on, 0 s); never raises."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    sock.close()


async def reset_stream(stream: trio.abc.AsyncResource) -> None:
    """Close ``stream`` at once: a RST for a ``trio.SocketStream``, an abrupt close otherwise."""
    if isinstance(stream, trio.SocketStream):
        reset_socket(stream.socket)
    await trio.aclose_forcefully(stream)


async def connect_backend(
    address: tuple[str, int], *, timeout_s: float = 5.0
) -> trio.socket.SocketType:
    """A TCP socket connected to ``address`` (numeric IP), or :class:`BackendUnreachableError`.

    Raises within ``timeout_s``; the attempt uses one raw non-blocking connect.
    """
    return trio.socket.from_stdlib_socket(await connect_raw(address, timeout_s=timeout_s))


async def connect_raw(address: tuple[str, int], *, timeout_s: float = 5.0) -> socket.socket:
    """As :func:`connect_backend`, but the standard library's non-blocking socket (lighter:
    for :func:`relay_sockets`)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError as exc:  # out of descriptors: no connection can be made now
        raise BackendUnreachableError(address, str(exc)) from exc
    try:
        err = await _connect(sock, address, timeout_s)
    except (OSError, OverflowError, TypeError) as exc:  # not an address lbsim can reach
        sock.close()
        raise BackendUnreachableError(address, str(exc)) from exc
    except BaseException:
        sock.close()
        raise
    if err:
        sock.close()
        raise BackendUnreachableError(address, os.strerror(err))
    return sock


async def _connect(sock: socket.socket, address: tuple[str, int], timeout_s: float) -> int:
    """Connect without blocking; the errno of the outcome (0 when connected). A loopback
    connect has usually completed when ``connect_ex`` returns: then nothing is awaited. A
    failed one is still awaited once, as any connect in progress (the client's own connect
    completes before lbsim resets it)."""
    err = sock.connect_ex(address)
    if err != errno.EINPROGRESS:
        return err
    if _connected(sock):
        return 0
    with trio.move_on_after(timeout_s):
        await trio.lowlevel.wait_writable(sock)
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    return errno.ETIMEDOUT


def _connected(sock: socket.socket) -> bool:
    """Whether a connect in progress has completed."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


async def connect_or_reset(
    client: AnySocket,
    address: tuple[str, int],
    *,
    timeout_s: float = 5.0,
    rule: RuleStats | None = None,
) -> socket.socket | None:
    """The backend socket (non-blocking, the standard library's); or None once ``client``
    has been reset because the backend is unreachable (then ``rule.backend_failures`` has
    gone up by one)."""
    try:
        return await connect_raw(address, timeout_s=timeout_s)
    except BackendUnreachableError:
        if rule is not None:
            rule.backend_failures += 1
    await reset_soon(client)
    return None


async def reset_soon(sock: AnySocket) -> None:
    """Reset ``sock`` after one checkpoint (even if cancelled): a client that has just
    connected sees its connect complete, then the reset."""
    try:
        await trio.lowlevel.checkpoint()
    finally:
        reset_socket(sock)
