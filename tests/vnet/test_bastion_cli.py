"""``lbsim bastion tunnel`` as a user runs it: it asks the running lbsim for a tunnel, prints
where it listens as ``az network bastion tunnel`` does, holds it until SIGINT or SIGTERM and
then closes it (exit 0); a tunnel lbsim closes first, or a deployment without a bastion host
(``lbsim up`` as a process), exits 2 with the code and message."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trio
from vnet_harness import http_get, serving, write_template

ROOT = Path(__file__).resolve().parents[2]


def verb(api: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lbsim", "bastion", "tunnel", "--api", api, *extra]


async def read_lines(stream: trio.abc.ReceiveStream, count: int) -> list[str]:
    data = b""
    with trio.fail_after(30):
        while data.count(b"\n") < count:
            chunk = await stream.receive_some(4096)
            assert chunk, f"ended after {data!r}"
            data += chunk
    return data.decode().splitlines()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
async def test_the_verb_holds_a_tunnel_until_a_signal(tmp_path: Path, signum: int) -> None:
    async with serving(tmp_path, bastion=True, api_port=0) as lb:
        assert lb.api_url is not None
        command = verb(lb.api_url, "--target", "vmss/1", "--resource-port", "80")
        process = await trio.lowlevel.open_process(command, cwd=ROOT, stdout=subprocess.PIPE)
        try:
            assert process.stdout is not None
            lines = await read_lines(process.stdout, 3)
            port = lb.tunnels()[0]["listenPort"]
            assert lb.tunnels()[0]["leaseSeconds"] == 15
            assert lines == [
                f"Opening tunnel on port: {port}",
                f"Tunnel is ready, connect on port {port}",
                "Ctrl + C to close",
            ]
            with trio.fail_after(10):
                stream = await trio.open_tcp_stream("127.0.0.1", port)
            async with stream:
                assert (await http_get(stream))["backend"] == "vmss/1"
            process.send_signal(signum)
            with trio.fail_after(30):
                assert await process.wait() == 0
            assert lb.tunnels() == []
        finally:
            process.kill()
            await process.wait()


async def test_the_verb_exits_2_when_lbsim_closes_the_tunnel(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True, api_port=0) as lb:
        assert lb.api_url is not None
        command = verb(lb.api_url, "--target", "vmss_0", "--resource-port", "22", "-o", "json")
        process = await trio.lowlevel.open_process(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            assert process.stdout is not None
            assert process.stderr is not None
            made = json.loads("\n".join(await read_lines(process.stdout, 9)))
            assert made["target"] == "vmss/0"
            lb.close_tunnel(made["id"])
            with trio.fail_after(30):
                assert await process.wait() == 2
            errors = await process.stderr.receive_some(4096)
            assert f"lbsim: TunnelClosed: lbsim at {lb.api_url} closed tunnel" in errors.decode()
        finally:
            process.kill()
            await process.wait()


async def test_a_killed_verbs_tunnel_closes_when_its_lease_runs_out(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True, api_port=0) as lb:
        assert lb.api_url is not None
        command = verb(lb.api_url, "--target", "vmss/1", "--resource-port", "22")
        process = await trio.lowlevel.open_process(command, cwd=ROOT, stdout=subprocess.PIPE)
        try:
            assert process.stdout is not None
            await read_lines(process.stdout, 3)
        finally:
            process.kill()  # SIGKILL: the verb cannot close its tunnel
            await process.wait()
        assert len(lb.tunnels()) == 1
        for _ in range(120):  # its 15 s lease runs out unrenewed (within 60 s, at most)
            if not lb.tunnels():
                break
            await trio.sleep(0.5)
        assert lb.tunnels() == []


@contextmanager
def lbsim_up(tmp_path: Path) -> Iterator[str]:
    """``lbsim up`` on the harness template (no bastion host); its API's URL."""
    ready = tmp_path / "ready.json"
    template = write_template(tmp_path)
    command = [sys.executable, "-m", "lbsim", "up", str(template), "--port-map", "ephemeral"]
    command += ["--api-port", "0", "--ready-file", str(ready)]
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "lbsim up did not get ready"
                time.sleep(0.05)
            yield json.loads(ready.read_text(encoding="utf-8"))["api"]
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_without_a_bastion_host_the_verb_exits_2_naming_what_is_missing(tmp_path: Path) -> None:
    with lbsim_up(tmp_path) as api:
        command = verb(api, "--target", "vmss/1", "--resource-port", "22", "--port", "0")
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("lbsim: BastionHostNotFound: The deployment has no bastion host")
    assert "AzureBastionSubnet" in done.stderr
