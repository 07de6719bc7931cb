"""``direct-tcpip`` from a built-in instance: ``ssh -L`` and a jump through it reach other
instances inside the virtual network, judged by their NSGs with the instance's own private
address as the source; refusals say why, as ``ssh`` users see them."""

from __future__ import annotations

import asyncio
import subprocess
from functools import partial
from pathlib import Path

import pytest
import trio
from ssh_harness import USER, OpenSsh, openssh, place, plan_for, require, running, settings
from ssh_harness import with_client as client_of

from lbsim.dataplane.ssh.lib import asyncssh


async def _read_line(stream: trio.SocketStream) -> bytes:
    line = b""
    with trio.fail_after(20):
        while not line.endswith(b"\n"):
            chunk = await stream.receive_some(1)
            if not chunk:
                break
            line += chunk
    return line


async def _forwarding(
    client: OpenSsh, nursery: trio.Nursery, port: int, host: str, spec: str
) -> trio.Process:
    """``ssh -N -L spec`` running (this test ends it)."""
    options = client.options(log="INFO")
    args = [require("ssh"), *options, "-N", "-L", spec, "-p", str(port), f"{USER}@{host}"]
    run = partial(trio.run_process, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    process: trio.Process = await nursery.start(run, args)
    return process


async def _connect_when_up(address: tuple[str, int]) -> trio.SocketStream:
    with trio.fail_after(20):
        while True:
            try:
                return await trio.open_tcp_stream(*address)
            except OSError:
                await trio.sleep(0.05)


async def test_ssh_dash_l_reaches_another_instance_and_a_denied_port_is_refused(
    tmp_path: Path,
) -> None:
    where = place()
    client = await openssh(tmp_path)
    local = where.ssh_port + 18  # (free, below the ephemeral range)
    async with running(plan_for(where), settings(where)) as runtime, trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + 90  # no ssh -N outlives the test
        spec_ok = f"127.0.0.1:{local}:10.0.0.5:22"
        spec_denied = f"127.0.0.1:{local + 1}:10.0.0.5:8080"
        process = await _forwarding(client, nursery, where.ssh_port, where.frontend, spec_ok)
        stream = await _connect_when_up(("127.0.0.1", local))
        async with stream:
            assert await _read_line(stream) == (
                b"SSH-2.0-lbsim_web_1 lbsim instance web/1 at 10.0.0.5\r\n"
            )
        process.kill()  # (ssh at times outlives a SIGTERM sent as a channel is refused)
        denied = await _forwarding(client, nursery, where.ssh_port, where.frontend, spec_denied)
        stream = await _connect_when_up(("127.0.0.1", local + 1))
        async with stream:
            assert await _read_line(stream) == b""  # ssh closes it: the channel was refused
        assert denied.stderr is not None
        said = b""
        with trio.fail_after(20):
            while b"open failed" not in said or not said.endswith(b"\n"):
                said += await denied.stderr.receive_some(4096)
        denied.kill()
        assert runtime.vnet.counts["denied"] == 1
        assert runtime.ssh.counts["forwarded"] == 1
    text = said.decode()
    assert "open failed: administratively prohibited:" in text
    assert "web/1 (10.0.0.5:8080) from 10.0.0.4" in text
    assert "deny-admin-from-vnet" in text


async def test_a_jump_through_an_instance_logs_in_to_another(tmp_path: Path) -> None:
    where = place()
    client = await openssh(tmp_path)
    ssh = require("ssh")
    jump = " ".join([ssh, *client.options(), "-W", "%h:%p", "-p", str(where.ssh_port)])
    proxy = ["-o", f"ProxyCommand={jump} {USER}@{where.frontend}"]
    async with running(plan_for(where), settings(where)) as runtime:
        args = [ssh, *client.options(), *proxy, f"{USER}@10.0.0.5", "cat /etc/lbsim-instance"]
        with trio.fail_after(60):
            done = await trio.run_process(
                args, capture_stdout=True, capture_stderr=True, check=False
            )
        assert runtime.vnet.counts["allowed"] == 1
    assert done.returncode == 0, done.stderr
    assert b'"name": "web_1"' in done.stdout


@pytest.mark.parametrize(
    ("host", "port", "code", "words"),
    [
        ("10.0.0.5", 8080, asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED, "deny-admin-from-vnet"),
        ("10.0.0.9", 22, asyncssh.OPEN_CONNECT_FAILED, "no instance"),
        ("10.0.0.5", 9999, asyncssh.OPEN_CONNECT_FAILED, "connection refused"),
        ("web000001", 22, asyncssh.OPEN_CONNECT_FAILED, "resolves no names"),
    ],
)
async def test_refused_channels_say_why(host: str, port: int, code: int, words: str) -> None:
    where = place()
    async with running(plan_for(where), settings(where)):

        async def open_channel(conn: asyncssh.SSHClientConnection) -> asyncssh.ChannelOpenError:
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await conn.open_connection(host, port)
            return refused.value

        error = await client_of((where.frontend, where.ssh_port), open_channel)
    assert error.code == code
    assert words in error.reason


async def test_remote_forwarding_is_refused() -> None:
    where = place()
    async with running(plan_for(where), settings(where)):

        async def listen(conn: asyncssh.SSHClientConnection) -> None:
            with pytest.raises(asyncssh.ChannelListenError):
                await conn.forward_remote_port("", 0, "127.0.0.1", 9)

        await client_of((where.frontend, where.ssh_port), listen)


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1", "web000001", "10.0.0.5"])
async def test_a_channel_to_the_instance_itself_reaches_its_own_port_unfiltered(
    host: str,
) -> None:
    """``ssh -L 8080:localhost:8080`` on web/1 reaches web/1's own 8080, which its NSG
    denies from the virtual network: local traffic is not filtered; a port nothing serves
    is refused."""
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:

        async def greeting(conn: asyncssh.SSHClientConnection) -> tuple[bytes, str]:
            reader, writer = await conn.open_connection(host, 8080)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            with pytest.raises(asyncssh.ChannelOpenError) as refused:
                await conn.open_connection(host, 9999)
            return bytes(answer), refused.value.reason

        answer, reason = await client_of((where.frontend, where.ssh_port + 1), greeting)
        assert runtime.vnet.counts["denied"] == 0
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"web/1" in answer
    assert "nothing listens there" in reason
