"""The behaviour every engine must have, in the style of trio's stream conformance checks:
each test runs on the reactor as a task, the reactor hosting trio (``lbsim up``), and the
streams engine (the ``tcp_engine`` fixture of conftest.py), through the one Engine interface
the runtime uses: byte-exact both ways, half-close, backpressure, idle timeouts with and
without TCP reset and with a silent hold, either peer's reset, counts, resets asked for by
tag, aborting everything, and listeners that stop accepting."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio

from lbsim.dataplane.engines import Engine, engine_for
from lbsim.dataplane.settings import TcpEngine
from lbsim.dataplane.socketflow import reset_socket
from lbsim.dataplane.stats import FlowStats, RuleStats

LOOPBACK = "127.0.0.1"
MiB = 1 << 20

pytestmark = pytest.mark.every_engine  # once per engine (conftest.py)


@pytest.fixture
async def engine(tcp_engine: TcpEngine, nursery: trio.Nursery) -> Engine:
    """The engine under test, running in the test's nursery."""
    made = engine_for(tcp_engine)
    await nursery.start(made.run)
    return made


@attrs.define
class Pair:
    """A relayed flow: the client's and the backend's ends, the flow's counters, and what
    the engine said when it ended."""

    client: trio.SocketStream
    backend: trio.SocketStream
    stats: FlowStats
    ended: list[tuple[Any, FlowStats]]
    done: trio.Event


def _pair_of_sockets(bufsize: int | None = None) -> tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets over loopback (small buffers if asked)."""
    with socket.create_server((LOOPBACK, 0)) as server:
        near = socket.socket()
        if bufsize:
            near.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
            near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)
        near.connect(server.getsockname())
        far, _ = server.accept()
    for sock in (near, far):
        sock.setblocking(False)
    return near, far


@asynccontextmanager
async def relayed(
    engine: Engine,
    *,
    idle_timeout_s: float = float("inf"),
    tcp_reset: bool = False,
    idle_hold_s: float = 0.0,
    tag: Any = "flow",
    bufsize: int | None = None,
) -> AsyncIterator[Pair]:
    """client <-> [engine] <-> backend, everything closed on exit."""
    client, relay_client = _pair_of_sockets(bufsize)
    relay_backend, backend = _pair_of_sockets(bufsize)
    stats = RuleStats().open_flow(engine.now())
    ended: list[tuple[Any, FlowStats]] = []
    done = trio.Event()

    def on_end(tag: Any, flow: FlowStats) -> None:
        ended.append((tag, flow))
        done.set()

    engine.on_end = on_end
    engine.relay(
        relay_client,
        relay_backend,
        stats,
        idle_timeout_s=idle_timeout_s,
        tcp_reset=tcp_reset,
        idle_hold_s=idle_hold_s,
        tag=tag,
    )
    pair = Pair(
        trio.SocketStream(trio.socket.from_stdlib_socket(client)),
        trio.SocketStream(trio.socket.from_stdlib_socket(backend)),
        stats,
        ended,
        done,
    )
    try:
        yield pair
    finally:
        await trio.aclose_forcefully(pair.client)
        await trio.aclose_forcefully(pair.backend)


async def _send(stream: trio.SocketStream, data: bytes) -> None:
    for start in range(0, len(data), 256 * 1024):
        await stream.send_all(data[start : start + 256 * 1024])
    await stream.send_eof()


async def _read_to_end(stream: trio.SocketStream) -> bytes:
    chunks = []
    while chunk := await stream.receive_some(MiB):
        chunks.append(chunk)
    return b"".join(chunks)


async def _ends_with(stream: trio.SocketStream) -> str:
    """How the peer ended the stream: ``eof`` or ``reset``."""
    try:
        with trio.fail_after(5):
            while await stream.receive_some(MiB):
                pass
    except trio.BrokenResourceError:
        return "reset"
    return "eof"


async def test_byte_exact_both_ways_and_counted(engine: Engine) -> None:
    up, down = os.urandom(3 * MiB + 17), os.urandom(2 * MiB + 5)
    async with relayed(engine) as pair:
        got: dict[str, bytes] = {}

        async def backend_side() -> None:
            got["up"] = await _read_to_end(pair.backend)

        async def client_side() -> None:
            got["down"] = await _read_to_end(pair.client)

        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(backend_side)
                nursery.start_soon(client_side)
                nursery.start_soon(_send, pair.client, up)
                nursery.start_soon(_send, pair.backend, down)
            await pair.done.wait()
        assert hashlib.sha256(got["up"]).digest() == hashlib.sha256(up).digest()
        assert hashlib.sha256(got["down"]).digest() == hashlib.sha256(down).digest()
        assert (pair.stats.inbound.bytes, pair.stats.outbound.bytes) == (len(up), len(down))
        assert pair.ended == [("flow", pair.stats)]
        assert pair.stats.close_reason in {"client-closed", "backend-closed"}
        assert engine.open_flows == 0


async def test_half_close_keeps_the_other_way_flowing(engine: Engine) -> None:
    async with relayed(engine) as pair:
        await pair.client.send_all(b"request")
        await pair.client.send_eof()  # the client is done sending, still reading
        with trio.fail_after(5):
            assert await _read_to_end(pair.backend) == b"request"
        assert not pair.done.is_set()
        await pair.backend.send_all(b"a long answer")
        await pair.backend.send_eof()
        with trio.fail_after(5):
            assert await _read_to_end(pair.client) == b"a long answer"
            await pair.done.wait()
        assert pair.stats.close_reason == "client-closed"  # the first to close names it


async def test_backpressure_holds_a_bounded_amount(engine: Engine) -> None:
    """A backend that stops reading stops the client: lbsim holds a bounded amount."""
    async with relayed(engine, bufsize=64 * 1024) as pair:
        sent = 0
        chunk = b"x" * 65536
        while sent < 64 * MiB:
            with trio.move_on_after(0.5):  # a send that blocks this long: stopped
                sent += await pair.client.socket.send(chunk)  # (all or nothing if cancelled)
                continue
            break
        # the client was stopped long before 64 MiB (the kernel's own buffers, autotuned up
        # to tcp_wmem's and tcp_rmem's maximum on each socket, hold the rest)
        assert sent < 40 * MiB  # (tcp_rmem at most 32 MiB here, tcp_wmem 4 MiB)
        received = 0
        with trio.move_on_after(1.0):
            while received < sent:
                received += len(await pair.backend.receive_some(MiB))
        assert received == sent  # nothing was lost either


@pytest.mark.parametrize("tcp_reset", [False, True])
async def test_an_idle_flow_ends_quietly_or_with_resets(engine: Engine, tcp_reset: bool) -> None:
    async with relayed(engine, idle_timeout_s=0.3, tcp_reset=tcp_reset) as pair:
        await pair.client.send_all(b"hello")
        with trio.fail_after(5):
            assert await pair.backend.receive_some(10) == b"hello"
            await pair.done.wait()
        assert pair.stats.close_reason == "idle-timeout"
        expected = "reset" if tcp_reset else "eof"
        assert await _ends_with(pair.client) == expected
        assert await _ends_with(pair.backend) == expected


async def _hears_nothing(stream: trio.SocketStream, seconds: float) -> bool:
    """True if no byte, no end of stream and no reset arrives for ``seconds``."""
    with trio.move_on_after(seconds) as waited:
        try:
            await stream.receive_some(MiB)
        except trio.BrokenResourceError:
            return False
    return waited.cancelled_caught


async def test_an_idle_flow_without_reset_is_held_silent_then_reset(engine: Engine) -> None:
    """Azure drops an idle flow without a word: the flow ends (once) at the idle timeout,
    then both peers hear nothing for the hold, then both are reset."""
    async with relayed(engine, idle_timeout_s=0.3, tcp_reset=False, idle_hold_s=1.0) as pair:
        await pair.client.send_all(b"hello")
        with trio.fail_after(5):
            assert await pair.backend.receive_some(10) == b"hello"
            await pair.done.wait()
        assert pair.ended == [("flow", pair.stats)]
        assert pair.stats.close_reason == "idle-timeout"
        assert engine.open_flows == 0  # a held flow is no open flow
        silent: dict[str, bool] = {}

        async def listen(name: str, stream: trio.SocketStream) -> None:
            silent[name] = await _hears_nothing(stream, 0.3)  # well within the 1 s hold

        async with trio.open_nursery() as nursery:  # both at once: within the hold
            nursery.start_soon(listen, "client", pair.client)
            nursery.start_soon(listen, "backend", pair.backend)
        assert silent == {"client": True, "backend": True}
        assert await _ends_with(pair.client) == "reset"
        assert await _ends_with(pair.backend) == "reset"
        assert len(pair.ended) == 1  # the end of the hold is no second end


async def test_a_client_that_resets_gets_the_backend_reset(engine: Engine) -> None:
    async with relayed(engine) as pair:
        await pair.backend.send_all(b"y")
        with trio.fail_after(5):
            assert await pair.client.receive_some(10) == b"y"
        reset_socket(pair.client.socket)
        assert await _ends_with(pair.backend) == "reset"
        with trio.fail_after(5):
            await pair.done.wait()
        assert pair.stats.close_reason == "client-error"
        assert pair.ended == [("flow", pair.stats)]
        assert engine.open_flows == 0


async def test_a_peer_that_resets_gets_the_other_side_reset(engine: Engine) -> None:
    async with relayed(engine) as pair:
        await pair.client.send_all(b"x")
        with trio.fail_after(5):
            assert await pair.backend.receive_some(10) == b"x"
        reset_socket(pair.backend.socket)
        assert await _ends_with(pair.client) == "reset"
        with trio.fail_after(5):
            await pair.done.wait()
        assert pair.stats.close_reason == "backend-error"


async def test_reset_by_tag_ends_only_those_flows(engine: Engine) -> None:
    async with (
        relayed(engine, tag=("web/1", 22)) as doomed,
        relayed(engine, tag=("web/2", 22)) as kept,
    ):
        for pair in (doomed, kept):
            await pair.client.send_all(b"ping")
            with trio.fail_after(5):
                assert await pair.backend.receive_some(10) == b"ping"
        assert engine.open_flows == 2
        ended: list[Any] = []
        engine.on_end = lambda tag, stats: ended.append(tag)
        engine.reset(lambda tag: tag[0] == "web/1")
        assert await _ends_with(doomed.client) == "reset"
        assert await _ends_with(doomed.backend) == "reset"
        await kept.client.send_all(b"still")
        with trio.fail_after(5):
            assert await kept.backend.receive_some(10) == b"still"
        assert ended == [("web/1", 22)]
        assert doomed.stats.close_reason == "cancelled"
        assert engine.open_flows == 1
        engine.abort_all()
        assert await _ends_with(kept.client) == "reset"
        assert engine.open_flows == 0


async def test_a_listener_accepts_until_it_is_closed(engine: Engine) -> None:
    sock = socket.create_server((LOOPBACK, 0))
    sock.setblocking(False)
    address = sock.getsockname()
    accepted: list[socket.socket] = []
    arrived = trio.Event()

    def on_accept(conn: socket.socket, peer: Any) -> None:
        assert not conn.getblocking()
        accepted.append(conn)
        arrived.set()

    engine.listen(sock, on_accept)
    client = trio.socket.socket()
    with client:
        await client.connect(address)
        with trio.fail_after(5):
            await arrived.wait()
    engine.close_listener(sock)
    late = trio.socket.socket()
    with late, pytest.raises(ConnectionRefusedError):
        await late.connect(address)
    for conn in accepted:
        conn.close()
