"""A UDP relay whose backend is chosen per flow (a load-balancing rule's UDP side)."""

from __future__ import annotations

import trio

from lbsim.dataplane.stats import RuleStats
from lbsim.dataplane.udp import Address, UdpRelay, open_udp_socket


async def _echo(name: bytes, *, task_status: trio.TaskStatus[Address]) -> None:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        task_status.started(sock.getsockname())
        while True:
            data, client = await sock.recvfrom(2048)
            await sock.sendto(name + data, client)


async def _ask(relay: Address, port: int) -> bytes:
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", port))
        await sock.sendto(b"?", relay)
        with trio.move_on_after(0.5):
            return await sock.recv(2048)
    return b""


def _free_udp_ports(count: int) -> list[int]:
    held = [open_udp_socket("127.0.0.1", 0) for _ in range(count)]
    ports = [s.getsockname()[1] for s in held]
    for s in held:
        s.close()
    return ports


async def test_each_new_flow_goes_where_choose_says(nursery: trio.Nursery) -> None:
    a = await nursery.start(_echo, b"a:")
    b = await nursery.start(_echo, b"b:")
    ports = _free_udp_ports(3)
    chosen: dict[int, Address | None] = {ports[0]: a, ports[1]: b, ports[2]: None}
    stats = RuleStats()
    relay = UdpRelay(
        open_udp_socket("127.0.0.1", 0),
        a,
        idle_timeout_s=60,
        rule=stats,
        choose=lambda client: chosen[client[1]],
    )
    address = await nursery.start(relay.serve)
    assert await _ask(address, ports[0]) == b"a:?"
    assert await _ask(address, ports[1]) == b"b:?"
    assert await _ask(address, ports[2]) == b""
    assert (stats.allowed, stats.denied) == (2, 1)
    nursery.cancel_scope.cancel()
