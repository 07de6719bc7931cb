"""lbsim's TCP relay: one client connection joined to one backend connection.

Two paths with the same behaviour:

- :func:`relay_streams` copies between two ``trio.abc.HalfCloseableStream`` objects (memory
  streams in tests, ``trio.SocketStream`` anywhere), a task per direction;
- :func:`relay_sockets` hands two connected TCP sockets to the run's
  :class:`~lbsim.dataplane.reactor.Reactor` (no task per flow; ``os.splice`` on Linux) and
  waits for the flow's end. lbsim's runtime uses the reactor directly.

Both forward an end of stream as a half-close while the other direction keeps flowing,
hold a bounded number of bytes per direction (a reader that stops reading stops the
writer), end the flow after ``idle_timeout_s`` without a byte either way, count into a
:class:`~lbsim.dataplane.stats.FlowStats`, always close both sides, and return why the flow
ended. A failing peer ends its own flow only: errors become a :class:`CloseReason`, never an
exception.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, TypeVar

import attrs
import trio

from lbsim.dataplane import fastpath, idle
from lbsim.dataplane.connect import reset_stream
from lbsim.dataplane.connection import HOLD, QUIET, CloseReason, Connection
from lbsim.dataplane.reactor import Reactor
from lbsim.dataplane.socketflow import AnySocket, SocketFlow, nodelay, reset_socket
from lbsim.dataplane.stats import FlowStats, RuleStats, Traffic

__all__ = [
    "BACKEND",
    "CLIENT",
    "STREAM_ERRORS",
    "CloseReason",
    "Flow",
    "IdleDrop",
    "RelayResult",
    "Way",
    "close_stream",
    "copy_stream",
    "relay_flow",
    "relay_sockets",
    "relay_streams",
    "reset_socket",
]


@attrs.frozen
class RelayResult:
    """How a flow ended and how many bytes were delivered each way."""

    reason: CloseReason
    bytes_in: int
    bytes_out: int


S = TypeVar("S")
STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


@attrs.frozen
class Way:
    """One direction of a flow: which side it reads, which it writes, how it counts, and how
    its end and its failures are named."""

    src: int
    dst: int
    closed: CloseReason
    src_error: CloseReason
    dst_error: CloseReason


CLIENT, BACKEND = 0, 1
_IN = Way(
    CLIENT,
    BACKEND,
    CloseReason.CLIENT_CLOSED,
    CloseReason.CLIENT_ERROR,
    CloseReason.BACKEND_ERROR,
)
_OUT = Way(
    BACKEND,
    CLIENT,
    CloseReason.BACKEND_CLOSED,
    CloseReason.BACKEND_ERROR,
    CloseReason.CLIENT_ERROR,
)


class Flow(Connection, Generic[S]):
    """State shared by the two copying tasks of one stream flow and its idle watcher; how it
    ends is the :class:`~lbsim.dataplane.connection.Connection`'s to say. The flow is stopped
    by cancelling its nursery's scope."""

    __slots__ = ("done", "idle_timeout_s", "last", "scope", "sides", "stats")

    def __init__(
        self,
        sides: tuple[S, S],
        stats: FlowStats,
        idle_timeout_s: float | None,
        *,
        tcp_reset: bool = False,
        idle_hold_s: float = 0.0,
    ) -> None:
        """A flow between ``sides`` (client, backend) that has just moved."""
        Connection.__init__(self, tcp_reset, idle_hold_s)
        self.sides = sides
        self.stats = stats
        self.last = trio.current_time()
        self.idle_timeout_s = math.inf if idle_timeout_s is None else idle_timeout_s
        self.done = False  # (the idle reaper's mark of a flow it forgot)
        self.scope: trio.CancelScope | None = None

    def traffic(self, way: Way) -> tuple[Traffic, Traffic]:
        """The flow's and the rule's counters for one direction."""
        if way.src == CLIENT:
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
        """Note one direction done; the flow ends once both are."""
        self.end(reason)

    def end(self, reason: CloseReason) -> None:
        """Take ``reason`` (an end of stream, a failure, an abort); stop the copying once the
        connection is closed (the first closing reason wins)."""
        if self.event(reason) and self.scope is not None:
            self.scope.cancel()

    def expire(self) -> None:
        """End the flow because no byte moved for ``idle_timeout_s``."""
        self.end(CloseReason.IDLE_TIMEOUT)


@attrs.frozen
class IdleDrop:
    """What an idle timeout without TCP reset does: Azure drops the flow silently, so both
    sides are held, silent, for ``hold_s`` (or until ``released`` is set), then reset.
    ``hold_s`` 0 closes both at once instead."""

    hold_s: float = 0.0
    released: trio.Event | None = None

    async def hold(self) -> None:
        """Wait out the hold (cancellable)."""
        with trio.move_on_after(self.hold_s):
            if self.released is not None:
                await self.released.wait()
            else:
                await trio.sleep_forever()


async def relay_flow(
    flow: Flow[S],
    pump: Callable[[Flow[S], Way], Awaitable[None]],
    close: Callable[[S, bool], Awaitable[None]],
    *,
    idle_drop: IdleDrop,
    on_close: Callable[[RelayResult], None] | None,
    reaper: idle.IdleReaper | None,
) -> RelayResult:
    """Copy both ways until the flow ends, then record the close exactly once (and tell
    ``on_close``), then close (or reset) both sides, after a silent hold for an idle drop.
    Backend to client runs in a task of its own, client to backend in the calling task."""
    watcher = reaper if flow.idle_timeout_s < math.inf else None
    if watcher is not None:
        watcher.watch(flow)
    try:
        async with trio.open_nursery() as nursery:
            flow.scope = nursery.cancel_scope
            if flow.idle_timeout_s < math.inf and watcher is None:
                nursery.start_soon(_watch_idle, flow, name="lbsim relay idle")
            nursery.start_soon(pump, flow, _OUT, name="lbsim relay out")
            await pump(flow, _IN)
    finally:
        if watcher is not None:
            watcher.forget(flow)
        if not flow.closed:  # cancelled from outside
            flow.event(CloseReason.CANCELLED)
        reason = flow.outcome
        how = flow.sockets()
        flow.stats.close(reason)
        result = RelayResult(reason, flow.stats.inbound.bytes, flow.stats.outbound.bytes)
        if on_close is not None:
            on_close(result)
        try:
            if how is HOLD:
                await idle_drop.hold()
        finally:
            with trio.CancelScope(shield=True):  # closing never blocks; it must not be skipped
                for side in flow.sides:
                    await close(side, how is not QUIET)  # a hold ends in a reset
    return result


async def _watch_idle(flow: Flow[Any]) -> None:
    """A flow's own idle watcher, when no run-wide reaper is given: expire it once
    ``idle_timeout_s`` passed without a byte."""
    while True:
        due = flow.last + flow.idle_timeout_s
        await trio.sleep_until(due)
        if flow.last + flow.idle_timeout_s <= trio.current_time():
            flow.expire()
            return


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
    idle_drop: IdleDrop = IdleDrop(),
    on_close: Callable[[RelayResult], None] | None = None,
    reaper: idle.IdleReaper | None = None,
) -> RelayResult:
    """Relay until both sides closed, one failed or the flow idled; both streams end closed.

    At most ``chunk_size`` bytes per direction are held by lbsim. An idle flow is reset
    when ``tcp_reset`` (abrupt close; RST for a ``trio.SocketStream``), else dropped as
    ``idle_drop`` says (by default closed quietly at once). ``on_close`` learns the outcome
    as soon as the flow ends, before any hold. If cancelled from outside, both streams are
    reset and ``Cancelled`` propagates.
    """
    flow = Flow(
        (client, backend),
        _stats(stats),
        idle_timeout_s,
        tcp_reset=tcp_reset,
        idle_hold_s=idle_drop.hold_s,
    )
    copy = partial(copy_stream, chunk_size=chunk_size)
    return await relay_flow(
        flow, copy, close_stream, idle_drop=idle_drop, on_close=on_close, reaper=reaper
    )


async def close_stream(stream: trio.abc.HalfCloseableStream, abort: bool) -> None:
    """Reset or quietly close one side of a stream flow."""
    if abort:
        await reset_stream(stream)
    else:
        await trio.aclose_forcefully(stream)


async def copy_stream(
    flow: Flow[trio.abc.HalfCloseableStream], way: Way, *, chunk_size: int
) -> None:
    """Copy one way a chunk at a time, then half-close the writer; failures end the flow."""
    src, dst = flow.sides[way.src], flow.sides[way.dst]
    mine, agg = flow.traffic(way)
    while True:
        try:
            data = await src.receive_some(chunk_size)
        except STREAM_ERRORS:
            flow.end(way.src_error)
            return
        if not data:
            break
        try:
            await dst.send_all(data)
        except STREAM_ERRORS:
            flow.end(way.dst_error)
            return
        flow.moved(mine, agg, len(data))
    try:
        await dst.send_eof()
    except STREAM_ERRORS:
        flow.end(way.dst_error)
        return
    flow.eof(way.closed)


async def relay_sockets(
    client: AnySocket,
    backend: AnySocket,
    *,
    reactor: Reactor,
    idle_timeout_s: float | None = None,
    tcp_reset: bool = False,
    stats: FlowStats | None = None,
    fast: fastpath.FastPath | None = None,
    idle_hold_s: float = 0.0,
) -> RelayResult:
    """Relay two connected non-blocking TCP sockets (trio's or the standard library's) as
    :func:`relay_streams` does, through ``reactor`` (running in the caller's run); both end
    closed.

    Bytes go through ``fast`` (default: the reactor's :class:`~lbsim.dataplane.fastpath.FastPath`).
    TCP_NODELAY is set on both sockets so that lbsim adds no Nagle delay of its own. A reset
    is a real RST (SO_LINGER 0). After an idle timeout without ``tcp_reset``, both sockets are
    held silently for ``idle_hold_s`` seconds, then reset (0: closed at once); this call
    returns when the flow ends, before the hold. If cancelled, the flow is reset and
    ``Cancelled`` propagates.
    """
    task = trio.lowlevel.current_task()
    waiting = False

    def ended(_: SocketFlow) -> None:
        if waiting:
            trio.lowlevel.reschedule(task)

    def cancelled(_: object) -> trio.lowlevel.Abort:
        nonlocal waiting
        waiting = False
        flow.end(CloseReason.CANCELLED)
        return trio.lowlevel.Abort.SUCCEEDED

    for side in (client, backend):
        if isinstance(side, socket.socket):  # trio's are non-blocking already
            side.setblocking(False)  # a blocking read would stall every flow of the run
        nodelay(side)
    flow = reactor.relay(
        client,
        backend,
        _stats(stats),
        idle_timeout_s=idle_timeout_s,
        tcp_reset=tcp_reset,
        on_end=ended,
        fast=fast,
        idle_hold_s=idle_hold_s,
    )
    if flow.done:
        await trio.lowlevel.checkpoint()
    else:
        waiting = True
        await trio.lowlevel.wait_task_rescheduled(cancelled)
    result = flow.stats
    return RelayResult(flow.outcome, result.inbound.bytes, result.outbound.bytes)
