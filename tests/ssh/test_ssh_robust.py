"""Bad input ends that connection only, counted and told; stopping an instance ends its SSH
connections; a runtime leaves no SSH thread behind."""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

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
        if not told:  # a later bad input is told: had the first been, it would be there first
            await _send_and_close(address, b"GET / HTTP/1.1\r\n\r\n")
            await eventually(lambda: runtime.ssh.counts["failed"] == 2, within=30)
        await eventually(lambda: len(notices) >= 1, within=30)
        assert len(notices) == 1
    assert all(n.startswith("ssh: web/0: a connection failed: ") for n in notices)


async def test_a_peer_that_says_nothing_is_counted_but_not_told() -> None:
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        notices: list[str] = []
        runtime.notice = notices.append
        await _send_and_close((where.frontend, where.ssh_port), b"")  # a TCP probe's way
        await eventually(lambda: runtime.ssh.counts["closed"] == 1, within=30)
    assert notices == []


async def _put(conn: asyncssh.SSHClientConnection) -> None:
    async with conn.start_sftp_client() as sftp, sftp.open("kept.txt", "w") as f:
        await f.write("mine\n")


def _kept(temp: Path) -> list[Path]:
    """The files ``_put`` left in homes under ``temp``."""
    return list(temp.glob("lbsim-ssh-*/*/kept.txt"))


def _left(temp: Path) -> list[Path]:
    return list(temp.iterdir())


async def test_removing_an_instance_ends_its_ssh_connections_and_its_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        address = (where.frontend, where.ssh_port + 1)
        await with_client((where.frontend, where.ssh_port), _put)  # web/0's home
        opened = trio.Event()

        async def hold(conn: asyncssh.SSHClientConnection) -> str:
            await _put(conn)  # web/1's home
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
            assert len(_kept(tmp_path)) == 2
            await change_to(runtime, plan_for(where, capacity=1))
        await eventually(lambda: len(_kept(tmp_path)) == 1)
        assert runtime.ssh.counts["accepted"] == 2
    assert _left(tmp_path) == []  # and web/0's at the end


async def test_a_home_whose_removal_is_pending_at_the_end_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        await with_client((where.frontend, where.ssh_port + 1), _put)
        await change_to(runtime, plan_for(where, capacity=1))
        # (lbsim stops at once: web/1's home is still to be removed)
    assert _left(tmp_path) == []


async def test_connections_not_yet_logged_in_are_capped() -> None:
    where = place()
    address = (where.frontend, where.ssh_port)
    async with running(plan_for(where), settings(where)) as runtime:
        runtime.ssh.max_startups = 2
        held = [await trio.open_tcp_stream(*address) for _ in range(2)]
        for stream in held:  # each one is in the handshake: the server has spoken
            with trio.fail_after(30):
                assert (await stream.receive_some(4096)).startswith(b"SSH-2.0-")
        third = await trio.open_tcp_stream(*address)
        with trio.fail_after(30):
            assert await third.receive_some(4096) == b""  # closed at once
        await third.aclose()
        assert runtime.ssh.counts["refused"] == 1
        for stream in held:
            await stream.aclose()
        await eventually(lambda: runtime.ssh.counts["closed"] == 2, within=30)
        assert await with_client(address, _hostname)


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
