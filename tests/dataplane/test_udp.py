"""The UDP relay: flows per client, replies to the right client, expiry, deny, eviction."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing
from waiting import eventually

from lbsim.dataplane import reactor
from lbsim.dataplane.fastpath import FastPath
from lbsim.dataplane.stats import RuleStats
from lbsim.dataplane.udp import Address, Admit, UdpRelay, open_udp_socket

LOOPBACK = "127.0.0.1"
_DRIVEN_BY = {"this test": "reactor"}


@pytest.fixture(autouse=True, params=["reactor", "tasks"])
def driven_by(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs with the relay's sockets read by the reactor, and by tasks."""
    _DRIVEN_BY["this test"] = request.param
    yield request.param
    _DRIVEN_BY["this test"] = "reactor"


async def _reactor(nursery: trio.Nursery) -> reactor.Reactor | None:
    """What reads the relay's sockets in this test: a reactor run in ``nursery``, or None
    (tasks)."""
    if _DRIVEN_BY["this test"] != "reactor":
        return None
    made = reactor.Reactor(FastPath())
    await nursery.start(made.run)
    return made


class Backend:
    """A UDP server that answers each datagram with its source port and the datagram."""

    def __init__(self) -> None:
        self.sock = open_udp_socket(LOOPBACK, 0)
        self.sources: list[Address] = []

    @property
    def address(self) -> Address:
        host, port = self.sock.getsockname()
        return host, port

    async def serve(self) -> None:
        while True:
            await trio.lowlevel.wait_readable(self.sock)
            data, source = self.sock.recvfrom(65536)
            self.sources.append(source)
            self.sock.sendto(b"%d|" % source[1] + data, source)


@asynccontextmanager
async def udp_nat(
    *,
    idle_timeout_s: float,
    rule: RuleStats | None = None,
    admit: Admit | None = None,
    max_flows: int = 4096,
) -> AsyncIterator[tuple[UdpRelay, Backend]]:
    """A backend and a relay in front of it; both stopped on exit."""
    backend = Backend()
    try:
        async with trio.open_nursery() as nursery:
            relay = UdpRelay(
                open_udp_socket(LOOPBACK, 0),
                backend.address,
                idle_timeout_s=idle_timeout_s,
                rule=rule,
                max_flows=max_flows,
                admit=admit,
                reactor=await _reactor(nursery),
            )
            nursery.start_soon(backend.serve)
            await nursery.start(relay.serve)
            yield relay, backend
            nursery.cancel_scope.cancel()
    finally:
        backend.sock.close()


def _client() -> trio.socket.SocketType:
    return trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


async def _ask(sock: trio.socket.SocketType, relay: UdpRelay, data: bytes) -> bytes:
    await sock.sendto(data, relay.address)
    with trio.fail_after(2):
        return await sock.recv(65536)


async def test_several_clients_get_their_own_replies() -> None:
    rule = RuleStats()
    async with udp_nat(idle_timeout_s=60, rule=rule) as (relay, backend):
        clients = [_client() for _ in range(5)]
        for sock in clients:
            await sock.bind((LOOPBACK, 0))

        async def talk(index: int, sock: trio.socket.SocketType) -> None:
            for round_ in range(3):
                reply = await _ask(sock, relay, b"client %d round %d" % (index, round_))
                assert reply.split(b"|", 1)[1] == b"client %d round %d" % (index, round_)

        async with trio.open_nursery() as nursery:
            for index, sock in enumerate(clients):
                nursery.start_soon(talk, index, sock)
        assert len(relay) == 5
        assert len(set(backend.sources)) == 5  # one backend socket per client flow
        first = clients[0].getsockname()
        stats = relay.flow(first)
        assert stats is not None
        assert (stats.inbound.packets, stats.outbound.packets) == (3, 3)
        assert stats.inbound.bytes == sum(len(b"client 0 round %d" % r) for r in range(3))
        for sock in clients:
            sock.close()
    assert rule.flows_total == rule.allowed == 5
    assert rule.inbound.packets == rule.outbound.packets == 15
    assert rule.flows_active == 0
    assert rule.closes == {"cancelled": 5}


async def test_idle_flows_expire(autojump_clock: trio.testing.MockClock) -> None:
    rule = RuleStats()
    async with udp_nat(idle_timeout_s=60, rule=rule) as (relay, _backend):
        sock = _client()
        await sock.bind((LOOPBACK, 0))
        first = await _ask(sock, relay, b"a")
        await trio.sleep(50)
        assert await _ask(sock, relay, b"b") == first.replace(b"a", b"b")  # same flow
        await trio.sleep(59)
        assert len(relay) == 1
        await trio.sleep(2)  # 61 s without a datagram either way
        assert len(relay) == 0
        assert rule.closes == {"idle-timeout": 1}
        again = await _ask(sock, relay, b"c")
        assert again.split(b"|")[0] != first.split(b"|")[0]  # a new flow, a new source port
        assert rule.flows_total == 2
        sock.close()


async def test_replies_keep_a_flow_alive(autojump_clock: trio.testing.MockClock) -> None:
    async with udp_nat(idle_timeout_s=60) as (relay, backend):
        sock = _client()
        await sock.bind((LOOPBACK, 0))
        await _ask(sock, relay, b"a")
        await trio.sleep(40)
        backend.sock.sendto(b"unasked", backend.sources[0])  # backend speaks on its own
        assert await sock.recv(100) == b"unasked"
        await trio.sleep(40)  # 80 s after the client's datagram, 40 s after the reply
        assert len(relay) == 1
        sock.close()


async def test_denied_clients_are_dropped_and_counted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rule = RuleStats()
    asked: list[Address] = []

    def admit(client: Address) -> bool:
        asked.append(client)
        return client[0] != "127.0.0.2"

    async with udp_nat(idle_timeout_s=60, rule=rule, admit=admit) as (relay, backend):
        denied, allowed = _client(), _client()
        await denied.bind(("127.0.0.2", 0))
        await allowed.bind((LOOPBACK, 0))
        for _ in range(3):
            await denied.sendto(b"let me in", relay.address)
        with trio.move_on_after(5) as waited:
            await denied.recv(100)
        assert waited.cancelled_caught
        assert (await _ask(allowed, relay, b"hi")).endswith(b"|hi")
        assert backend.sources == [backend.sources[0]]  # only the allowed flow got through
        assert rule.denied == 3
        assert rule.allowed == 1
        assert len(relay) == 1
        assert [client[0] for client in asked] == ["127.0.0.2"] * 3 + [LOOPBACK]
        denied.close()
        allowed.close()


async def test_full_table_evicts_the_flow_idle_longest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rule = RuleStats()
    async with udp_nat(idle_timeout_s=600, rule=rule, max_flows=2) as (relay, _backend):
        socks = [_client() for _ in range(3)]
        for sock in socks:
            await sock.bind((LOOPBACK, 0))
        await _ask(socks[0], relay, b"0")
        await trio.sleep(1)
        await _ask(socks[1], relay, b"1")
        await trio.sleep(1)
        await _ask(socks[0], relay, b"0 again")  # now socks[1] is the one idle longest
        await _ask(socks[2], relay, b"2")
        assert rule.closes == {"evicted": 1}
        assert relay.flow(socks[1].getsockname()) is None
        assert relay.flow(socks[0].getsockname()) is not None
        assert (await _ask(socks[1], relay, b"1 again")).endswith(b"|1 again")
        assert rule.closes == {"evicted": 2}
        for sock in socks:
            sock.close()


async def test_unreachable_backend_port_is_counted_not_fatal() -> None:
    rule = RuleStats()
    closed_port = open_udp_socket(LOOPBACK, 0)
    backend = closed_port.getsockname()
    closed_port.close()
    async with trio.open_nursery() as nursery:
        relay = UdpRelay(
            open_udp_socket(LOOPBACK, 0),
            backend,
            idle_timeout_s=60,
            rule=rule,
            reactor=await _reactor(nursery),
        )
        await nursery.start(relay.serve)
        sock = _client()
        await sock.bind((LOOPBACK, 0))
        for _ in range(3):
            await sock.sendto(b"anyone?", relay.address)
            await trio.sleep(0.01)
        assert rule.inbound.packets >= 1
        assert rule.backend_failures >= 1  # the backend's "port unreachable" came back
        assert rule.dropped == 0
        assert len(relay) == 1
        nursery.cancel_scope.cancel()
    sock.close()
    with pytest.raises(OSError, match="Bad file descriptor"):
        relay.address  # noqa: B018  (the frontend socket is closed with the relay)


async def test_datagrams_the_kernel_drops_on_a_full_buffer_are_counted() -> None:
    """A burst larger than the frontend socket's buffer, sent before the relay reads: every
    datagram is either forwarded or counted as dropped (the kernel's own count)."""
    rule = RuleStats()
    backend = Backend()
    frontend = open_udp_socket(LOOPBACK, 0)
    frontend.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a few datagrams only
    sent = 300
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        for index in range(sent):
            client.sendto(index.to_bytes(4, "big") * 128, frontend.getsockname())
        try:
            async with trio.open_nursery() as nursery:
                relay = UdpRelay(
                    frontend,
                    backend.address,
                    idle_timeout_s=60,
                    rule=rule,
                    reactor=await _reactor(nursery),
                )
                nursery.start_soon(backend.serve)
                await nursery.start(relay.serve)
                await eventually(lambda: rule.inbound.packets > 0)
                await trio.sleep(0.2)  # everything queued has been read
                assert rule.dropped == 0  # not counted on the hot path
                relay.count_kernel_drops()  # (the metrics collector's call)
                assert rule.inbound.packets + rule.dropped == sent
                relay.count_kernel_drops()  # and never counted twice
                assert rule.inbound.packets + rule.dropped == sent
                nursery.cancel_scope.cancel()
        finally:
            backend.sock.close()
    assert rule.dropped > sent // 2  # the buffer held far fewer than were sent
