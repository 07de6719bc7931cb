"""Bad input ends that connection only, counted and told; stopping an instance ends its SSH
connections; a runtime leaves no SSH thread behind."""

from __future__ import annotations

import threading

import pytest
import trio
from ssh_harness import change_to, place, plan_for, running, settings, with_client
from waiting import eventually

from lbsim.dataplane.ssh.lib import asyncssh


async def _send_and_close(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` and stop sending, then read until the server ends the connection."""
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        if not data:
            return b""
        await stream.send_all(data)
        await stream.send_eof()
        got = b""
        with trio.fail_after(30):
            while chunk := await stream.receive_some(4096):
                got += chunk
        return got


async def _hostname(conn: asyncssh.SSHClientConnection) -> str:
    return str((await conn.run("hostname", check=True)).stdout)


@pytest.mark.parametrize(
    ("data", "told"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", True),
        (bytes(range(256)) * 40, True),
        (b"SSH-2.0-cut\r\n\x00\x00", False),  # it went away: counted, not told
    ],
    ids=["http", "binary", "mid-handshake"],
)
async def test_bad_input_ends_that_connection_only(data: bytes, told: bool) -> None:
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        notices: list[str] = []
        runtime.notice = notices.append
        address = (where.frontend, where.ssh_port)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_send_and_close, address, data)
            assert await with_client(address, _hostname)  # others log in meanwhile
        await eventually(lambda: runtime.ssh.counts["failed"] == 1, within=30)
        assert await with_client(address, _hostname)
        assert runtime.ssh.counts["accepted"] == 2
        await eventually(lambda: len(notices) == int(told))
    assert all(n.startswith("ssh: web/0: a connection failed: ") for n in notices)


async def test_a_peer_that_says_nothing_is_counted_but_not_told() -> None:
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        notices: list[str] = []
        runtime.notice = notices.append
        await _send_and_close((where.frontend, where.ssh_port), b"")  # a TCP probe's way
        await eventually(lambda: runtime.ssh.counts["closed"] == 1, within=30)
    assert notices == []


async def test_removing_an_instance_ends_its_ssh_connections() -> None:
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        address = (where.frontend, where.ssh_port + 1)
        opened = trio.Event()

        async def hold(conn: asyncssh.SSHClientConnection) -> str:
            trio.from_thread.run_sync(opened.set, trio_token=token)
            await conn.wait_closed()
            return "ended"

        token = trio.lowlevel.current_trio_token()
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                assert await with_client(address, hold) == "ended"

            nursery.start_soon(client)
            with trio.fail_after(30):
                await opened.wait()
            await change_to(runtime, plan_for(where, capacity=1))
        homes = [i.home for i in runtime.ssh._instances]
        assert len(homes) == 1  # web/0's only: web/1's is gone with its server


async def test_a_runtime_ends_its_ssh_connections_and_leaves_no_thread() -> None:
    where = place()
    token = trio.lowlevel.current_trio_token()
    opened = trio.Event()
    results: list[str] = []

    async def hold(conn: asyncssh.SSHClientConnection) -> str:
        trio.from_thread.run_sync(opened.set, trio_token=token)
        await conn.wait_closed()
        return "ended"

    async def client(address: tuple[str, int]) -> None:
        results.append(await with_client(address, hold))

    async with trio.open_nursery() as clients, running(plan_for(where), settings(where)):
        clients.start_soon(client, (where.frontend, where.ssh_port))
        with trio.fail_after(30):
            await opened.wait()
        # the runtime has stopped, under the client's feet
    assert results == ["ended"]
    assert not [t for t in threading.enumerate() if t.name == "lbsim ssh"]
