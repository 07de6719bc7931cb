"""The jump box of arm-examples/vmss-jumpbox with OpenSSH: ``ssh -J`` through the jump box's
own public IP reaches web/1, whose NSG admits SSH only from the virtual network (it sees the
jump box's private address); a client outside the jump box NSG's range is refused at the jump
box; ``ssh -N -L`` through it forwards to web/1's port 22."""

from __future__ import annotations

import random
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import trio
from ssh_harness import USER, OpenSsh, openssh, require

import lbsim
from lbsim.api.session import Session

EXAMPLE = Path(__file__).resolve().parents[2] / "arm-examples" / "vmss-jumpbox"
ALLOWED, DENIED = "127.0.0.1", "127.0.0.66"  # presented as 203.0.113.7 and 198.51.100.66


@asynccontextmanager
async def jumpbox_example() -> AsyncIterator[tuple[Session, int]]:
    """The example running on free ports (port 22 needs no privilege): the session and the
    port its jump box's public IP listens on for SSH."""
    config: dict[str, Any] = {
        "port_map": "ephemeral",
        "api_port": "off",
        "log_flows": False,
        "sources": {ALLOWED: "203.0.113.7", DENIED: "198.51.100.66"},
    }
    async with lbsim.serve(
        EXAMPLE / "azuredeploy.json",
        parameters=EXAMPLE / "azuredeploy.parameters.json",
        config=config,
    ) as lb:
        (row,) = [p for p in lb.ports() if p["ruleName"] == "jumpbox-pip.22"]
        assert row["backend"] == "jumpbox"
        yield lb, row["listenPort"]


def _config_file(client: OpenSsh, path: Path) -> str:
    """An ssh_config with the client's options, for every host."""
    options = client.options()
    pairs = [options[i + 1] for i in range(2, len(options) - 2, 2) if options[i] == "-o"]
    lines = ["Host *", *(f"  {pair.replace('=', ' ', 1)}" for pair in pairs)]
    path.write_text("\n".join([*lines, f"  IdentityFile {client.key}", ""]), encoding="utf-8")
    return str(path)


async def _ssh(
    client: OpenSsh, *args: str, config: str | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``ssh`` with the client's options, or with ``config`` (an ssh_config) alone."""
    options = ["-F", config] if config is not None else client.options()
    command = [require("ssh"), *options, *args]
    with trio.fail_after(60):
        return await trio.run_process(
            command, capture_stdout=True, capture_stderr=True, check=False, stdin=subprocess.DEVNULL
        )


async def test_ssh_dash_j_through_the_jump_box_reaches_an_instance_open_only_to_the_vnet(
    tmp_path: Path,
) -> None:
    client = await openssh(tmp_path)
    async with jumpbox_example() as (lb, port):
        jump = f"{USER}@{ALLOWED}:{port}"
        # (the ssh that -J starts for the jump reads the config file, not -o options)
        config = _config_file(client, tmp_path / "ssh_config")
        done = await _ssh(client, "-J", jump, f"{USER}@10.0.0.5", "hostname", config=config)
        assert done.returncode == 0, done.stderr
        assert done.stdout == b"web000001\n"
        assert lb.runtime.vnet.counts["allowed"] == 1  # web/1 judged from 10.0.1.4
        on_the_jumpbox = await _ssh(client, "-p", str(port), f"{USER}@{ALLOWED}", "hostname -I")
        assert on_the_jumpbox.stdout.split() == [b"10.0.1.4"]


async def test_a_client_outside_the_jump_box_nsgs_range_is_refused(tmp_path: Path) -> None:
    client = await openssh(tmp_path)
    async with jumpbox_example() as (_, port):
        bound = ["-o", f"BindAddress={DENIED}"]
        refused = await _ssh(client, *bound, "-p", str(port), f"{USER}@{ALLOWED}", "true")
    assert refused.returncode == 255
    assert b"Connection reset" in refused.stderr or b"closed" in refused.stderr, refused.stderr


async def test_ssh_dash_l_through_the_jump_box_forwards_to_web_1(tmp_path: Path) -> None:
    client = await openssh(tmp_path)
    async with jumpbox_example() as (_, port), trio.open_nursery() as nursery:
        nursery.cancel_scope.deadline = trio.current_time() + 90  # no ssh -N outlives the test
        local = free_port_below_ephemeral("127.0.0.1")  # for the forward
        spec = f"127.0.0.1:{local}:10.0.0.5:22"
        command = [require("ssh"), *client.options(), "-N", "-L", spec]
        command += ["-o", "ExitOnForwardFailure=yes", "-p", str(port), f"{USER}@{ALLOWED}"]
        run = partial(trio.run_process, stdin=subprocess.DEVNULL, check=False)
        forwarding: trio.Process = await nursery.start(run, command)
        with trio.fail_after(30):
            while True:
                try:
                    stream = await trio.open_tcp_stream("127.0.0.1", local)
                    break
                except OSError:
                    await trio.sleep(0.05)
        async with stream:
            with trio.fail_after(20):
                hello = await stream.receive_some(256)
        forwarding.kill()
    assert hello.startswith(b"SSH-2.0-lbsim_web_1 lbsim instance web/1 at 10.0.0.5")


def free_port_below_ephemeral(host: str) -> int:
    """A port free on ``host`` below Linux's ephemeral range (32768-60999): ``ssh -L`` binds
    it after the check, and no connection's local port is picked from there meanwhile."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
        return port
    raise AssertionError(f"no free port on {host} in 20000-32000")
