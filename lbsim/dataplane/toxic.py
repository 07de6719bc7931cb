"""The relay of a TCP flow that faults act on (a "toxic" relay, as Toxiproxy says).

A faulted flow leaves the engine's fast path: :class:`ToxicEngine` relays it as the streams
engine does (a trio task per direction, :mod:`lbsim.dataplane.relay`'s flow and connection
rules, the same counters, close events and idle timeout), and a direction with toxics is a
reader and a writer joined by a small queue (so latency delays each chunk from the time it was
read, as Toxiproxy's does, and never adds up). Each toxic's meaning, per direction:

- ``latency``: each chunk waits ``latency`` ms, plus or minus up to ``jitter`` ms;
- ``bandwidth``: at most ``rate`` KB/s (1 KB = 1000 bytes), in writes of 100 ms worth;
- ``slicer``: each chunk is cut into writes of ``average_size`` bytes, plus or minus up to
  ``size_variation``, ``delay`` microseconds apart;
- ``limit_data``: once ``bytes`` bytes went this way, the connection is closed (both sides);
- ``slow_close``: the end of stream waits ``delay`` ms before it is passed on;
- ``timeout``: nothing goes this way (bytes are read and dropped); after ``timeout`` ms the
  connection is closed, or with 0 when the fault is removed (then too with a timeout not yet
  reached: bytes were dropped, so the stream cannot go on intact; Toxiproxy closes them
  likewise, https://github.com/Shopify/toxiproxy/pull/168);
- ``reset_peer``: after ``timeout`` ms both sides are reset.

A flow closed by a fault ends with the close reason ``fault``. ``down`` holds a new
connection silently instead (:func:`hold_down`).
"""

from __future__ import annotations

import math
import socket
from typing import Any, cast

import trio

from lbsim.dataplane.connection import QUIET, RESET, CloseReason, State
from lbsim.dataplane.engines import StreamsEngine
from lbsim.dataplane.faults import FaultType, Toxic, Toxics
from lbsim.dataplane.relay import (
    CLIENT,
    STREAM_ERRORS,
    Flow,
    IdleDrop,
    RelayResult,
    Way,
    close_stream,
    copy_stream,
    relay_flow,
)
from lbsim.dataplane.socketflow import reset_socket
from lbsim.dataplane.stats import FlowStats

__all__ = ["ToxicEngine", "ToxicFlow", "hold_down"]

_CHUNK = 65536
_QUEUE = 4  # chunks read and not yet written, per direction (bytes held stay bounded)
_FRAME_S = 0.1  # bandwidth is paced in writes of 100 ms worth, as Toxiproxy's
Chunk = tuple[float, bytes | bytearray]  # when it was read, what was read
Chunks = trio.MemoryReceiveChannel[Chunk]


class ToxicFlow(Flow[trio.abc.HalfCloseableStream]):
    """A stream flow with its toxics; a fault can close it (``fault``) quietly or reset."""

    __slots__ = ("how", "toxics")

    def __init__(
        self,
        sides: tuple[trio.abc.HalfCloseableStream, trio.abc.HalfCloseableStream],
        stats: FlowStats,
        idle_timeout_s: float,
        toxics: Toxics,
        **rule: Any,
    ) -> None:
        super().__init__(sides, stats, idle_timeout_s, **rule)
        self.toxics = toxics
        self.how = QUIET

    def cut(self, how: str) -> None:
        """End the flow because of a fault: both sides closed (``QUIET``) or reset."""
        if self.closed:
            return
        self.state, self.reason, self.how = State.CLOSED, CloseReason.FAULT, how
        if self.scope is not None:
            self.scope.cancel()

    def sockets(self) -> str:
        if self.reason is CloseReason.FAULT:
            return self.how
        return super().sockets()


class ToxicEngine(StreamsEngine):
    """The streams engine, relaying each flow with its toxics (:meth:`relay_toxic`)."""

    def relay_toxic(
        self,
        client: socket.socket,
        backend: socket.socket,
        stats: FlowStats,
        *,
        idle_timeout_s: float,
        tcp_reset: bool,
        idle_hold_s: float,
        tag: Any,
        toxics: Toxics,
    ) -> None:
        """Relay two connected non-blocking sockets with ``toxics`` (owning them)."""
        scope = trio.CancelScope()
        self._flows[scope] = tag
        flow = ToxicFlow(
            (_stream(client), _stream(backend)),
            stats,
            idle_timeout_s,
            toxics,
            tcp_reset=tcp_reset,
            idle_hold_s=idle_hold_s,
        )
        self._start(self._run_toxic, scope, tag, flow, name="lbsim toxic relay")

    async def _run_toxic(self, scope: trio.CancelScope, tag: Any, flow: ToxicFlow) -> None:
        def closed(_: RelayResult) -> None:
            self._flows.pop(scope, None)
            self.on_end(tag, flow.stats)

        timed = [t for t in (*flow.toxics.upstream, *flow.toxics.downstream) if _timer(t)]
        with scope:
            async with trio.open_nursery() as timers:
                for toxic in timed:
                    timers.start_soon(_cut_later, flow, toxic)
                await relay_flow(
                    flow,
                    _pump,
                    close_stream,
                    idle_drop=IdleDrop(flow.idle_hold_s),
                    on_close=closed,
                    reaper=self.reaper,
                )
                timers.cancel_scope.cancel()


def _stream(sock: socket.socket) -> trio.SocketStream:
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


def _timer(toxic: Toxic) -> bool:
    """Whether ``toxic`` ends the flow at a time: ``reset_peer``, or ``timeout``."""
    return toxic.fault.type in (FaultType.RESET_PEER, FaultType.TIMEOUT)


async def _cut_later(flow: ToxicFlow, toxic: Toxic) -> None:
    """``reset_peer`` resets the flow after its timeout; ``timeout`` closes it after its
    timeout (never, for 0) or once the fault is removed, whichever comes first."""
    seconds = toxic.fault["timeout"] / 1000
    if toxic.fault.type is FaultType.RESET_PEER:
        await trio.sleep(seconds)
        flow.cut(RESET)
        return
    with trio.move_on_after(seconds or math.inf):
        await toxic.gone.wait()
    flow.cut(QUIET)


async def _pump(plain: Flow[trio.abc.HalfCloseableStream], way: Way) -> None:
    """One direction: a plain copy without toxics, else a reader and a toxic writer."""
    flow = cast(ToxicFlow, plain)
    toxics = flow.toxics.upstream if way.src == CLIENT else flow.toxics.downstream
    if not toxics:
        await copy_stream(flow, way, chunk_size=_CHUNK)
        return
    send, receive = trio.open_memory_channel[Chunk](_QUEUE)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read, flow, way, send)
        await _Writer(flow, way, toxics).run(receive)


async def _read(flow: ToxicFlow, way: Way, send: trio.MemorySendChannel[Chunk]) -> None:
    """Read one direction into ``send``, each chunk with the time it arrived; closing the
    channel is the end of stream."""
    src = flow.sides[way.src]
    async with send:
        while True:
            try:
                data = await src.receive_some(_CHUNK)
            except STREAM_ERRORS:
                flow.end(way.src_error)
                return
            if not data:
                return
            await send.send((trio.current_time(), data))


class _Writer:
    """The toxics of one direction, applied to each chunk as it is written."""

    def __init__(self, flow: ToxicFlow, way: Way, toxics: tuple[Toxic, ...]) -> None:
        self.flow, self.way = flow, way
        self.mine, self.agg = flow.traffic(way)
        self.by_type: dict[FaultType, list[Toxic]] = {}
        for toxic in toxics:
            self.by_type.setdefault(toxic.fault.type, []).append(toxic)
        limits = [t.fault["bytes"] for t in self.by_type.get(FaultType.LIMIT_DATA, ())]
        self.left: float | None = min(limits) if limits else None
        rates = [t.fault["rate"] for t in self.by_type.get(FaultType.BANDWIDTH, ())]
        self.rate = min((r * 1000 for r in rates if r > 0), default=0.0)  # bytes per second
        self.paced = 0.0  # when the bandwidth allows the next write

    async def run(self, chunks: Chunks) -> None:
        if self.left == 0:
            self.flow.cut(QUIET)
            return
        dropping = FaultType.TIMEOUT in self.by_type
        async with chunks:
            async for stamp, data in chunks:
                if dropping:
                    continue
                await trio.sleep_until(stamp + self._latency())
                if not await self._deliver(data):
                    return
        slow = sum(t.fault["delay"] for t in self.by_type.get(FaultType.SLOW_CLOSE, ()))
        await trio.sleep(slow / 1000)
        try:
            await self.flow.sides[self.way.dst].send_eof()
        except STREAM_ERRORS:
            self.flow.end(self.way.dst_error)
            return
        self.flow.eof(self.way.closed)

    def _latency(self) -> float:
        total = 0.0
        for toxic in self.by_type.get(FaultType.LATENCY, ()):
            jitter = toxic.fault["jitter"]
            total += toxic.fault["latency"] + (toxic.rng.uniform(-jitter, jitter) if jitter else 0)
        return max(total, 0.0) / 1000

    async def _deliver(self, data: bytes | bytearray) -> bool:
        """Write ``data`` as the toxics say; False once the flow was ended."""
        cut = False
        if self.left is not None and len(data) >= self.left:
            data, cut = data[: int(self.left)], True
        for piece in self._pieces(data):
            if not await self._write(piece):
                return False
        if self.left is not None:
            self.left -= len(data)
        if cut:
            self.flow.cut(QUIET)
            return False
        return True

    def _pieces(self, data: bytes | bytearray) -> list[bytes | bytearray]:
        """``data`` cut by the slicer (whole without one), each piece at most 100 ms worth of
        the bandwidth."""
        sizes: list[int] = []
        slicers = self.by_type.get(FaultType.SLICER, ())
        if slicers:
            fault, rng = slicers[0].fault, slicers[0].rng
            size, variation = int(fault["average_size"]), int(fault["size_variation"])
            at = 0
            while at < len(data):
                n = max(1, size + (rng.randint(-variation, variation) if variation else 0))
                sizes.append(min(n, len(data) - at))
                at += n
        else:
            sizes = [len(data)]
        frame = int(self.rate * _FRAME_S) or len(data) or 1
        pieces: list[bytes | bytearray] = []
        at = 0
        for size in sizes:
            end = at + size
            pieces.extend(data[start : min(start + frame, end)] for start in range(at, end, frame))
            at = end
        return pieces

    async def _write(self, piece: bytes | bytearray) -> bool:
        slicers = self.by_type.get(FaultType.SLICER, ())
        if slicers and self.mine.packets:
            await trio.sleep(slicers[0].fault["delay"] / 1e6)
        if self.rate:  # each piece waits its own time first: never above the rate
            self.paced = max(self.paced, trio.current_time()) + len(piece) / self.rate
            await trio.sleep_until(self.paced)
        try:
            await self.flow.sides[self.way.dst].send_all(piece)
        except STREAM_ERRORS:
            self.flow.end(self.way.dst_error)
            return False
        self.flow.moved(self.mine, self.agg, len(piece))
        return True


async def hold_down(conn: socket.socket, gone: trio.Event, stop: trio.Event) -> None:
    """A connection to an instance that is ``down``: nothing answers it (no byte, no FIN,
    no reset), as a crashed VM; it ends when the client gives up (closes), the fault goes
    or lbsim stops, and then it is reset."""
    try:
        async with trio.open_nursery() as nursery:
            done = nursery.cancel_scope.cancel

            async def until(event: trio.Event) -> None:
                await event.wait()
                done()

            async def until_client_leaves() -> None:
                while True:
                    await trio.lowlevel.wait_readable(conn)
                    try:
                        if not conn.recv(_CHUNK):  # bytes sent to a dead VM are lost
                            break
                    except BlockingIOError:
                        continue
                    except OSError:
                        break
                done()

            nursery.start_soon(until, gone)
            nursery.start_soon(until, stop)
            nursery.start_soon(until_client_leaves)
    finally:
        reset_socket(conn)
