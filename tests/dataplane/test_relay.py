"""The TCP relay: byte-exact, half-close, backpressure, idle timeout, counts, resets.

Memory streams and trio's autojump clock test the portable path's logic; real loopback
sockets test every path ("stream": the portable path over trio.SocketStream, "splice": the
Linux fast path, "copy": the fast path's shared-buffer fallback) with the same tests.
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import socket
import stat
import struct
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from functools import partial

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from lbsim.dataplane.connect import (
    BackendUnreachableError,
    connect_backend,
    connect_or_reset,
    connect_raw,
)
from lbsim.dataplane.fastpath import FastPath
from lbsim.dataplane.idle import IdleReaper
from lbsim.dataplane.reactor import Reactor
from lbsim.dataplane.relay import (
    CloseReason,
    RelayResult,
    relay_sockets,
    relay_streams,
    reset_socket,
)
from lbsim.dataplane.socketflow import SocketFlow
from lbsim.dataplane.stats import FlowStats, RuleStats

MiB = 1 << 20
POOL = os.urandom(8 * MiB)


async def _reactor(nursery: trio.Nursery, fast: FastPath | None = None) -> Reactor:
    """A reactor for relay_sockets, run in ``nursery`` (cancel the nursery to stop it)."""
    made = Reactor(fast or FastPath())
    await nursery.start(made.run)
    return made


LOOPBACK = "127.0.0.1"


def _flow(rule: RuleStats | None = None) -> FlowStats:
    return (rule or RuleStats()).open_flow(trio.current_time())


async def _read_all(stream: trio.abc.ReceiveStream, limit: int = 64 * MiB) -> bytes:
    out = bytearray()
    while chunk := await stream.receive_some(1 << 18):
        out += chunk
        assert len(out) <= limit
    return bytes(out)


# ---- portable path over memory streams -------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    up=st.lists(st.binary(min_size=1, max_size=3000), max_size=8),
    down=st.lists(st.binary(min_size=1, max_size=3000), max_size=8),
    chunk=st.integers(min_value=1, max_value=4096),
)
async def test_memory_relay_is_byte_exact_and_counts(
    up: list[bytes], down: list[bytes], chunk: int
) -> None:
    client, relay_client = trio.testing.memory_stream_pair()
    relay_backend, backend = trio.testing.memory_stream_pair()
    rule = RuleStats()
    stats = _flow(rule)
    got: dict[str, bytes] = {}

    async def talk(name: str, stream: trio.abc.HalfCloseableStream, chunks: list[bytes]) -> None:
        for piece in chunks:
            await stream.send_all(piece)
        await stream.send_eof()
        got[name] = await _read_all(stream)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(talk, "client", client, up)
        nursery.start_soon(talk, "backend", backend, down)
        result = await relay_streams(relay_client, relay_backend, stats=stats, chunk_size=chunk)
    assert got == {"backend": b"".join(up), "client": b"".join(down)}
    assert (result.bytes_in, result.bytes_out) == (len(got["backend"]), len(got["client"]))
    assert stats.inbound.bytes == rule.inbound.bytes == result.bytes_in
    assert stats.outbound.packets == rule.outbound.packets >= -(-result.bytes_out // chunk)
    assert result.reason in {CloseReason.CLIENT_CLOSED, CloseReason.BACKEND_CLOSED}
    assert rule.flows_active == 0
    assert rule.closes == {result.reason: 1}


async def test_memory_half_close_keeps_the_other_way_flowing() -> None:
    client, relay_client = trio.testing.memory_stream_pair()
    relay_backend, backend = trio.testing.memory_stream_pair()

    async def backend_side() -> None:
        assert await _read_all(backend) == b"request"
        await backend.send_all(b"answer after the client's EOF")
        await backend.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(backend_side)
        result_box: list[RelayResult] = []
        nursery.start_soon(lambda: _store(result_box, relay_streams(relay_client, relay_backend)))
        await client.send_all(b"request")
        await client.send_eof()
        assert await _read_all(client) == b"answer after the client's EOF"
    assert result_box[0].reason is CloseReason.CLIENT_CLOSED


async def _store(box: list[RelayResult], relay: Awaitable[RelayResult]) -> None:
    box.append(await relay)


@pytest.mark.parametrize("tcp_reset", [False, True])
async def test_memory_idle_timeout(autojump_clock: trio.testing.MockClock, tcp_reset: bool) -> None:
    client, relay_client = trio.testing.memory_stream_pair()
    relay_backend, backend = trio.testing.memory_stream_pair()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        box: list[RelayResult] = []
        nursery.start_soon(
            lambda: _store(
                box,
                relay_streams(relay_client, relay_backend, idle_timeout_s=240, tcp_reset=tcp_reset),
            )
        )
        await client.send_all(b"x")
        assert await backend.receive_some() == b"x"
        await trio.sleep(100)
        await backend.send_all(b"y")  # activity either way restarts the idle clock
        assert await client.receive_some() == b"y"
        assert await client.receive_some() == b""  # the relay closed the flow
        ended = trio.current_time() - start
    assert box[0].reason is CloseReason.IDLE_TIMEOUT
    assert 340 <= ended < 341
    with pytest.raises(trio.BrokenResourceError):
        await backend.send_all(b"late")


async def test_memory_backpressure_holds_at_most_one_chunk(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client, relay_client = trio.testing.lockstep_stream_pair()
    relay_backend, backend = trio.testing.lockstep_stream_pair()
    block, progress = bytes(range(256)) * 4, [0]

    async def sender() -> None:
        for _ in range(100):
            await client.send_all(block)
            progress[0] += len(block)
        await client.send_eof()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(relay_streams, relay_client, relay_backend, chunk_size=4096))
        nursery.start_soon(sender)
        await trio.sleep(60)  # the backend reads nothing for a minute
        assert progress[0] <= 4096 + len(block)
        assert await _read_all(backend) == block * 100
        await backend.send_eof()
        assert await _read_all(client) == b""


async def test_memory_backend_failure_ends_only_that_flow() -> None:
    client, relay_client = trio.testing.memory_stream_pair()
    relay_backend, backend = trio.testing.memory_stream_pair()
    await backend.aclose()
    await client.send_all(b"hello")
    result = await relay_streams(relay_client, relay_backend)
    assert result.reason is CloseReason.BACKEND_ERROR
    assert await client.receive_some() == b""


async def test_memory_cancelled_relay_closes_both_and_records_it() -> None:
    client, relay_client = trio.testing.memory_stream_pair()
    relay_backend, backend = trio.testing.memory_stream_pair()
    rule = RuleStats()
    with trio.move_on_after(0.05):
        await relay_streams(relay_client, relay_backend, stats=_flow(rule))
    assert rule.closes == {"cancelled": 1}
    assert rule.flows_active == 0
    assert await client.receive_some() == b""
    assert await backend.receive_some() == b""


# ---- every path over real loopback sockets ---------------------------------------------


@attrs.define
class Relayed:
    client: trio.SocketStream
    backend: trio.SocketStream
    client_sock: trio.socket.SocketType
    stats: FlowStats
    results: list[RelayResult]
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    finished: trio.Event = attrs.Factory(trio.Event)


async def _listener(bufsize: int | None) -> trio.socket.SocketType:
    sock = trio.socket.socket()
    _small(sock, bufsize)
    await sock.bind((LOOPBACK, 0))
    sock.listen(256)
    return sock


def _small(sock: trio.socket.SocketType, bufsize: int | None) -> None:
    if bufsize is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, bufsize)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, bufsize)


@pytest.fixture(params=["stream", "splice", "copy"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@attrs.frozen
class Options:
    idle_timeout_s: float | None = None
    tcp_reset: bool = False


async def _relay(
    mode: str,
    client: trio.socket.SocketType,
    backend: trio.socket.SocketType,
    *,
    fast: FastPath,
    stats: FlowStats,
    options: Options,
    reactor: Reactor,
) -> RelayResult:
    idle, reset = options.idle_timeout_s, options.tcp_reset
    if mode == "stream":
        client_stream, backend_stream = trio.SocketStream(client), trio.SocketStream(backend)
        return await relay_streams(
            client_stream, backend_stream, idle_timeout_s=idle, tcp_reset=reset, stats=stats
        )
    return await relay_sockets(
        client,
        backend,
        reactor=reactor,
        idle_timeout_s=idle,
        tcp_reset=reset,
        stats=stats,
        fast=fast,
    )


@asynccontextmanager
async def relayed(
    mode: str,
    *,
    bufsize: int | None = None,
    fast: FastPath | None = None,
    idle_timeout_s: float | None = None,
    tcp_reset: bool = False,
) -> AsyncIterator[Relayed]:
    """A client and a backend joined by a relay in ``mode``; everything is closed on exit."""
    front, back = await _listener(bufsize), await _listener(bufsize)
    own_fast = fast is None
    fast = fast or FastPath(use_splice=mode == "splice")
    client_sock = trio.socket.socket()
    _small(client_sock, bufsize)
    await client_sock.connect(front.getsockname())
    relay_client, _ = await front.accept()
    relay_backend = await connect_backend(back.getsockname())
    _small(relay_backend, bufsize)
    backend_sock, _ = await back.accept()
    stats = _flow()
    results: list[RelayResult] = []
    pair = Relayed(
        trio.SocketStream(client_sock), trio.SocketStream(backend_sock), client_sock, stats, results
    )
    try:
        async with trio.open_nursery() as nursery:
            reactor = await _reactor(nursery, fast)

            async def run() -> None:
                with pair.scope:
                    results.append(
                        await _relay(
                            mode,
                            relay_client,
                            relay_backend,
                            fast=fast,
                            stats=stats,
                            options=Options(idle_timeout_s, tcp_reset),
                            reactor=reactor,
                        )
                    )
                pair.finished.set()

            nursery.start_soon(run)
            yield pair
            with trio.fail_after(5):
                await pair.finished.wait()
            nursery.cancel_scope.cancel()
    finally:
        for sock in (front, back, client_sock, backend_sock):
            sock.close()
        if own_fast:
            fast.close()


async def _send_and_hash(stream: trio.abc.HalfCloseableStream, data: memoryview) -> str:
    for start in range(0, len(data), 1 << 18):
        await stream.send_all(data[start : start + (1 << 18)])
    await stream.send_eof()
    return hashlib.sha256(data).hexdigest()


async def _hash_until_eof(stream: trio.abc.ReceiveStream) -> tuple[str, int]:
    digest, total = hashlib.sha256(), 0
    while chunk := await stream.receive_some(1 << 18):
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


async def _exchange(
    hashes: dict[str, object], name: str, stream: trio.SocketStream, data: memoryview
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_send_and_hash, stream, data)
        hashes[name] = await _hash_until_eof(stream)


async def test_sockets_byte_exact_both_ways(mode: str) -> None:
    up = memoryview(POOL)[123 : 123 + 3 * MiB + 4567]
    down = memoryview(POOL)[5 * MiB : 5 * MiB + 2 * MiB + 89]
    got: dict[str, object] = {}
    async with relayed(mode) as pair, trio.open_nursery() as nursery:
        nursery.start_soon(_exchange, got, "client", pair.client, up)
        nursery.start_soon(_exchange, got, "backend", pair.backend, down)
    assert got["backend"] == (hashlib.sha256(up).hexdigest(), len(up))
    assert got["client"] == (hashlib.sha256(down).hexdigest(), len(down))
    result = pair.results[0]
    assert (result.bytes_in, result.bytes_out) == (len(up), len(down))
    assert result.reason in {CloseReason.CLIENT_CLOSED, CloseReason.BACKEND_CLOSED}
    assert pair.stats.rule.inbound.bytes == len(up)
    assert pair.stats.rule.outbound.bytes == len(down)
    assert 1 <= pair.stats.inbound.packets <= len(up)
    assert pair.stats.close_reason == result.reason


@pytest.mark.parametrize("refused", ["into the pipe", "out of the pipe"])
async def test_a_socket_that_cannot_splice_is_copied_instead(
    refused: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the kernel refuses to splice a socket (EINVAL), that direction copies from then
    on: not a byte is lost, not even those already in its pipe, and the flow goes on."""
    splice = os.splice
    refusals: list[int] = []

    def refusing(src: int, dst: int, count: int, *args: object, **kwargs: int) -> int:
        into_pipe = stat.S_ISFIFO(os.fstat(dst).st_mode)
        if into_pipe == (refused == "into the pipe"):
            refusals.append(src)
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        return splice(src, dst, count, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "splice", refusing)
    up = memoryview(POOL)[7 : 7 + 3 * MiB + 11]
    down = memoryview(POOL)[MiB : MiB + 2 * MiB + 5]
    got: dict[str, object] = {}
    async with relayed("splice") as pair, trio.open_nursery() as nursery:
        nursery.start_soon(_exchange, got, "client", pair.client, up)
        nursery.start_soon(_exchange, got, "backend", pair.backend, down)
    assert got["backend"] == (hashlib.sha256(up).hexdigest(), len(up))
    assert got["client"] == (hashlib.sha256(down).hexdigest(), len(down))
    assert pair.results[0].reason in {CloseReason.CLIENT_CLOSED, CloseReason.BACKEND_CLOSED}
    assert 1 <= len(refusals) <= 2  # once per direction: it does not try again


async def test_sockets_half_close(mode: str) -> None:
    async with relayed(mode) as pair:
        await pair.client.send_all(b"request")
        await pair.client.send_eof()
        assert await _read_all(pair.backend) == b"request"
        await pair.backend.send_all(b"answer after the client's FIN")
        await pair.backend.send_eof()
        assert await _read_all(pair.client) == b"answer after the client's FIN"
    assert pair.results[0].reason is CloseReason.CLIENT_CLOSED


async def test_sockets_backpressure_keeps_lbsims_buffer_bounded(mode: str) -> None:
    block, sent = memoryview(POOL)[: 1 << 16], hashlib.sha256()
    total = 0
    async with relayed(mode, bufsize=1 << 16) as pair:
        for _ in range(1024):  # at most 64 MiB if nothing pushed back
            with trio.move_on_after(0.3) as waited:
                n = await pair.client_sock.send(block)
                sent.update(block[:n])
                total += n
            if waited.cancelled_caught:
                break
        # kernel buffers (about 8 x 128 KiB here) plus lbsim's own (at most 1 MiB)
        assert total < 3 * MiB
        await pair.client.send_eof()
        assert await _hash_until_eof(pair.backend) == (sent.hexdigest(), total)
        await pair.backend.send_eof()
    assert pair.results[0].bytes_in == total


@pytest.mark.parametrize("tcp_reset", [False, True])
async def test_sockets_idle_timeout(mode: str, tcp_reset: bool) -> None:
    async with relayed(mode, idle_timeout_s=0.3, tcp_reset=tcp_reset) as pair:
        start = trio.current_time()
        await pair.client.send_all(b"x")
        assert await pair.backend.receive_some() == b"x"
        for end in (pair.client, pair.backend):
            with trio.fail_after(3):
                if tcp_reset:
                    with pytest.raises(trio.BrokenResourceError):
                        await end.receive_some()
                else:
                    assert await end.receive_some() == b""
        assert trio.current_time() - start >= 0.3
    assert pair.results[0].reason is CloseReason.IDLE_TIMEOUT
    assert pair.stats.rule.closes == {"idle-timeout": 1}


async def test_bytes_delivered_count_as_activity_for_the_idle_timeout() -> None:
    """A flow draining what lbsim holds to a slow reader is active, not idle."""
    reactor = Reactor(FastPath())
    (a, b), (c, d) = socket.socketpair(), socket.socketpair()
    stats = _flow()
    flow = SocketFlow(reactor, a, c, stats, reactor.fast)
    flow.last = -1.0
    flow.outbound._count(0)  # nothing delivered: still as idle as it was
    assert flow.last == -1.0
    flow.outbound._count(4096)  # a write to the client: active now
    assert 0 <= trio.current_time() - flow.last < 1
    assert (stats.outbound.bytes, stats.rule.outbound.bytes) == (4096, 4096)
    for sock in (a, b, c, d):
        sock.close()
    reactor.close()


async def test_sockets_backend_reset_resets_the_client(mode: str) -> None:
    async with relayed(mode) as pair:
        await pair.client.send_all(b"hello")
        assert await pair.backend.receive_some() == b"hello"
        reset_socket(pair.backend.socket)
        with trio.fail_after(3), pytest.raises(trio.BrokenResourceError):
            await _read_all(pair.client)
    assert pair.results[0].reason is CloseReason.BACKEND_ERROR


async def test_sockets_client_vanishing_mid_stream_ends_the_flow(mode: str) -> None:
    async with relayed(mode) as pair:
        await pair.backend.send_all(b"a" * 1000)
        reset_socket(pair.client_sock)
        with trio.fail_after(3):
            while True:  # bounded by fail_after: the relay resets the backend
                try:
                    await pair.backend.send_all(b"b" * 65536)
                except trio.BrokenResourceError:
                    break
    assert pair.results[0].reason is CloseReason.CLIENT_ERROR


async def test_backend_connections_never_leave_a_time_wait_that_blocks_a_listener() -> None:
    """lbsim usually sends a backend the first FIN, so its side waits in TIME_WAIT on an
    ephemeral port, which may be a NAT frontend port of lbsim's next run: the socket has
    SO_REUSEADDR, which lets a listener with SO_REUSEADDR (as lbsim's) bind the port all the
    same (a TIME_WAIT left by a socket without it blocks the bind for a minute)."""
    server = socket.create_server((LOOPBACK, 0))
    with server, await connect_raw(server.getsockname()) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)


async def test_connect_backend_refused_is_a_clear_error() -> None:
    port = await _free_port()
    with pytest.raises(BackendUnreachableError) as caught:
        await connect_backend((LOOPBACK, port), timeout_s=2)
    assert caught.value.code == "BackendUnreachable"
    assert caught.value.at is None
    assert f"127.0.0.1:{port}" in caught.value.message


async def test_connect_or_reset_resets_the_client_promptly() -> None:
    front = await _listener(None)
    client = trio.socket.socket()
    await client.connect(front.getsockname())
    accepted, _ = await front.accept()
    rule = RuleStats()
    with trio.fail_after(1):
        backend = await connect_or_reset(
            accepted, (LOOPBACK, await _free_port()), timeout_s=1, rule=rule
        )
        with pytest.raises(ConnectionResetError):
            await client.recv(10)
    assert backend is None
    assert rule.backend_failures == 1
    client.close()
    front.close()


async def _free_port() -> int:
    """A loopback port with nothing listening on it (bound, never listened, then closed)."""
    sock = trio.socket.socket()
    await sock.bind((LOOPBACK, 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


async def test_fast_path_reuses_pipes_and_idle_flows_hold_none() -> None:
    fast = FastPath(use_splice=True, max_idle_pipes=4)
    big = memoryview(POOL)[: 256 * 1024]  # fills the first-read buffer: splices the rest
    async with relayed("splice", fast=fast) as pair:
        for _ in range(20):
            await pair.client.send_all(b"ping")
            assert await pair.backend.receive_some() == b"ping"  # small: no pipe
            await trio.testing.wait_all_tasks_blocked()
            assert fast.pipes_created == 0
        for _ in range(5):
            await pair.client.send_all(big)
            assert await _read_exactly(pair.backend, len(big)) == big
            await pair.backend.send_all(big)
            assert await _read_exactly(pair.client, len(big)) == big
            await trio.testing.wait_all_tasks_blocked()
            assert fast.idle_pipes == fast.pipes_created  # the idle flow holds no pipe
        await pair.client.send_eof()
        await pair.backend.send_eof()
        assert await _read_all(pair.client) == b""
    assert 1 <= fast.pipes_created <= 2
    fast.close()
    assert fast.idle_pipes == 0


class NoPipes(FastPath):
    """A fast path whose process is out of descriptors for pipes."""

    def take_pipe(self) -> tuple[int, int]:
        raise OSError(24, "Too many open files")


async def test_a_direction_without_a_pipe_copies_instead() -> None:
    fast = NoPipes(use_splice=True)
    up, down = memoryview(POOL)[: 2 * MiB + 7], memoryview(POOL)[3 * MiB : 4 * MiB + 3]
    got: dict[str, object] = {}
    async with relayed("splice", fast=fast) as pair, trio.open_nursery() as nursery:
        nursery.start_soon(_exchange, got, "client", pair.client, up)
        nursery.start_soon(_exchange, got, "backend", pair.backend, down)
    assert got["backend"] == (hashlib.sha256(up).hexdigest(), len(up))
    assert got["client"] == (hashlib.sha256(down).hexdigest(), len(down))
    assert fast.pipes_created == 0
    assert pair.results[0].reason in {CloseReason.CLIENT_CLOSED, CloseReason.BACKEND_CLOSED}
    fast.close()


HEADER = struct.Struct("!III")


def _payload(index: int, size: int, salt: int) -> memoryview:
    """A slice of the random pool that depends on (index, salt)."""
    start = (index * 7919 + salt * 104729) % (len(POOL) - 4 * MiB)
    return memoryview(POOL)[start : start + size]


async def _read_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, "early end of stream"
        data += chunk
    return data


async def _proxy(
    listener: trio.socket.SocketType,
    backend: tuple[str, int],
    out: list[RelayResult],
    fast: FastPath,
    count: int,
) -> None:
    async with trio.open_nursery() as nursery:
        reactor = await _reactor(nursery, fast)
        flows: list[trio.Event] = []
        for _ in range(count):
            client, _ = await listener.accept()

            done = trio.Event()
            flows.append(done)

            async def one(client: trio.socket.SocketType = client, done: trio.Event = done) -> None:
                sock = await connect_or_reset(client, backend, timeout_s=5)
                assert sock is not None
                out.append(
                    await relay_sockets(client, sock, reactor=reactor, fast=fast, idle_timeout_s=60)
                )
                done.set()

            nursery.start_soon(one)
        for done in flows:
            await done.wait()
        nursery.cancel_scope.cancel()


async def _echo_backend(stream: trio.SocketStream, got: dict[int, tuple[str, int]]) -> None:
    index, _up, down = HEADER.unpack(await _read_exactly(stream, HEADER.size))
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(_send_and_hash, stream, _payload(index, down, 2))
        got[index] = await _hash_until_eof(stream)


async def test_200_concurrent_connections_through_the_fast_path() -> None:
    rng, count = random.Random(3), 200
    sizes = [(rng.randrange(4 * MiB + 1), rng.randrange(4 * MiB + 1)) for _ in range(count)]
    front, back = await _listener(None), await _listener(None)
    results: list[RelayResult] = []
    at_backend: dict[int, tuple[str, int]] = {}
    at_client: dict[int, tuple[str, int]] = {}
    fast = FastPath()

    async def client(index: int) -> None:
        up, down = sizes[index]
        stream = await trio.open_tcp_stream(*front.getsockname())
        async with stream, trio.open_nursery() as nursery:
            await stream.send_all(HEADER.pack(index, up, down))
            nursery.start_soon(_send_and_hash, stream, _payload(index, up, 1))
            at_client[index] = await _hash_until_eof(stream)

    async def backends(nursery: trio.Nursery) -> None:
        for _ in range(count):
            sock, _ = await back.accept()
            nursery.start_soon(_echo_backend, trio.SocketStream(sock), at_backend)

    with trio.fail_after(25):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_proxy, front, back.getsockname(), results, fast, count)
            nursery.start_soon(backends, nursery)
            async with trio.open_nursery() as clients:
                for index in range(count):
                    clients.start_soon(client, index)
    front.close()
    back.close()
    fast.close()
    for index, (up, down) in enumerate(sizes):
        assert at_backend[index] == (hashlib.sha256(_payload(index, up, 1)).hexdigest(), up)
        assert at_client[index] == (hashlib.sha256(_payload(index, down, 2)).hexdigest(), down)
    assert len(results) == count
    assert sum(r.bytes_in for r in results) == sum(up + HEADER.size for up, _ in sizes)
    assert sum(r.bytes_out for r in results) == sum(down for _, down in sizes)
    assert {r.reason for r in results} <= {CloseReason.CLIENT_CLOSED, CloseReason.BACKEND_CLOSED}


@attrs.define(eq=False)
class FakeFlow:
    last: float
    idle_timeout_s: float
    done: bool = False
    expired_at: float | None = None

    def expire(self) -> None:
        self.expired_at = trio.current_time()


async def test_idle_reaper_expires_on_time_and_forgets(
    autojump_clock: trio.testing.MockClock, nursery: trio.Nursery
) -> None:
    watcher = IdleReaper()
    nursery.start_soon(watcher.run)  # its owner runs it (the test's nursery stops it)
    t0 = trio.current_time()
    quiet, busy, gone = (FakeFlow(t0, 10), FakeFlow(t0, 10), FakeFlow(t0, 5))
    for flow in (quiet, busy, gone):
        watcher.watch(flow)
    watcher.forget(gone)
    await trio.sleep(6)
    busy.last = trio.current_time()  # a byte moved at t0 + 6
    late = FakeFlow(trio.current_time(), 1)  # watched later, due earlier than the others
    watcher.watch(late)
    await trio.sleep(30)
    assert quiet.expired_at == t0 + 10
    assert busy.expired_at == t0 + 16
    assert late.expired_at == t0 + 7
    assert gone.expired_at is None
    assert watcher.watched == 3


async def test_idle_reaper_memory_stays_bounded() -> None:
    watcher = IdleReaper()
    now = trio.current_time()
    for _ in range(1000):
        flow = FakeFlow(now, 600)
        watcher.watch(flow)
        watcher.forget(flow)
    assert watcher.watched == 0
    assert watcher.pending <= 64


async def test_cancelling_a_blocked_splice_never_pools_a_pipe_with_bytes_in_it() -> None:
    fast = FastPath(use_splice=True)
    async with relayed("splice", fast=fast, bufsize=1 << 16) as pair:
        block = memoryview(POOL)[: 1 << 16]
        for _ in range(256):  # fill every buffer up to lbsim's pipe, which stays non-empty
            with trio.move_on_after(0.2) as waited:
                await pair.client_sock.send(block)
            if waited.cancelled_caught:
                break
        assert fast.pipes_created >= 1
        pair.scope.cancel()
        with trio.fail_after(2):
            await pair.finished.wait()
    assert pair.stats.close_reason == "cancelled"
    assert fast.idle_pipes == fast.pipes_created - 1  # the one with bytes was closed
    async with relayed("splice", fast=fast) as pair:  # a later flow reuses the clean pipe
        await pair.client.send_all(b"clean")
        await pair.client.send_eof()
        assert await _read_all(pair.backend) == b"clean"
        await pair.backend.send_eof()
    fast.close()


@pytest.mark.parametrize("address", [("127.0.0.1", 70000), ("not an address", 22)])
async def test_connect_backend_bad_address_is_a_clear_error(address: tuple[str, int]) -> None:
    with pytest.raises(BackendUnreachableError) as caught:
        await connect_backend(address, timeout_s=1)
    assert caught.value.code == "BackendUnreachable"
    assert caught.value.at is None


async def test_connect_raw_is_connected_and_non_blocking() -> None:
    front = await _listener(None)
    sock = await connect_raw(front.getsockname(), timeout_s=1)
    accepted, _ = await front.accept()
    assert sock.getpeername() == front.getsockname()
    assert sock.getblocking() is False
    sock.send(b"raw")
    assert await accepted.recv(10) == b"raw"
    for s in (sock, accepted, front):
        s.close()


@pytest.mark.parametrize("use_splice", [True, False])
async def test_cancelling_the_caller_of_relay_sockets_resets_the_flow(
    use_splice: bool,
) -> None:
    """The flow runs in the reactor, not in the caller; cancelling the caller ends it."""
    front, back = await _listener(None), await _listener(None)
    client = trio.socket.socket()
    await client.connect(front.getsockname())
    relay_client, _ = await front.accept()
    relay_backend = await connect_raw(back.getsockname())
    backend, _ = await back.accept()
    rule, fast = RuleStats(), FastPath(use_splice=use_splice)
    results: list[RelayResult] = []
    async with trio.open_nursery() as reactors, trio.open_nursery() as flows:
        reactor = await _reactor(reactors, fast)

        async def one() -> None:
            results.append(
                await relay_sockets(
                    relay_client, relay_backend, reactor=reactor, stats=_flow(rule), fast=fast
                )
            )

        flows.start_soon(one)
        await client.send(b"up")
        assert await backend.recv(10) == b"up"
        await backend.send(b"down")
        assert await client.recv(10) == b"down"
        flows.cancel_scope.cancel()
        reactors.cancel_scope.cancel()
    assert [r.reason for r in results] == []  # cancelled: relay_sockets returned nothing
    assert (rule.inbound.bytes, rule.outbound.bytes) == (2, 4)
    assert rule.closes == {"cancelled": 1}
    assert rule.flows_active == 0
    for end in (client, backend):
        with trio.fail_after(2), pytest.raises(ConnectionResetError):
            await end.recv(10)  # a cancelled flow resets both sides
    for sock in (client, backend, front, back):
        sock.close()
    fast.close()


async def test_relay_sockets_makes_blocking_stdlib_sockets_non_blocking() -> None:
    """A blocking read in the reactor would stall every flow of the run."""
    front = socket.create_server((LOOPBACK, 0))
    back = socket.create_server((LOOPBACK, 0))
    client = socket.create_connection(front.getsockname())
    relay_client, _ = front.accept()
    relay_backend = socket.create_connection(back.getsockname())
    backend, _ = back.accept()
    assert relay_client.getblocking()
    assert relay_backend.getblocking()
    results: list[RelayResult] = []
    async with trio.open_nursery() as reactors:
        reactor = await _reactor(reactors)
        async with trio.open_nursery() as nursery:

            async def one() -> None:
                results.append(await relay_sockets(relay_client, relay_backend, reactor=reactor))

            nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            assert not relay_client.getblocking()
            assert not relay_backend.getblocking()
            client.sendall(b"x" * 20000)  # more than one first read
            client.shutdown(socket.SHUT_WR)
            backend.shutdown(socket.SHUT_WR)
        reactors.cancel_scope.cancel()
    assert [r.bytes_in for r in results] == [20000]
    for sock in (front, back, client, backend):
        sock.close()
