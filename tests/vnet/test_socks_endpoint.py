"""The SOCKS5 endpoint against a running load balancer: CONNECT allowed reaches the built-in
instance (and curl gets through it), an NSG's deny is reply 2, an unknown address, a stopped
instance and a name are reply 4, a closed port reply 5, other commands reply 7, a client
offering only authentication 0xFF; half-close passes through; malformed and silent peers end
their own connection only, counted and noticed."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio
from prometheus_client import CollectorRegistry
from vnet_harness import (
    connect_request,
    http_get,
    receive_all,
    receive_exactly,
    serving,
    socks_connect,
)

from lbsim.api.session import Session
from lbsim.dataplane.socks import SocksEndpoint
from lbsim.observe.metrics import RuntimeCollector

Address = tuple[str, int]


async def endpoint_of(
    lb: Session, nursery: trio.Nursery, notices: list[str], **options: Any
) -> tuple[SocksEndpoint, Address]:
    """An endpoint of the test's own over ``lb``'s virtual network (its counts are read)."""
    endpoint = SocksEndpoint(lb.runtime.vnet, notices.append, **options)
    address: Address = await nursery.start(endpoint.serve, ("127.0.0.1", 0))
    return endpoint, address


async def test_the_runtime_serves_socks_where_the_settings_say(tmp_path: Path) -> None:
    async with serving(tmp_path) as lb:
        assert lb.runtime.socks_address is not None
        code, stream = await socks_connect(lb.runtime.socks_address, "10.0.0.5", 80)
        async with stream:
            assert code == 0
            answer = await http_get(stream)
        assert answer["backend"] == "vmss/1"
        assert answer["privateIp"] == "10.0.0.5"


async def test_outcomes_and_their_reply_codes(tmp_path: Path, nursery: trio.Nursery) -> None:
    notices: list[str] = []
    async with serving(tmp_path) as lb:
        endpoint, address = await endpoint_of(lb, nursery, notices)
        await lb.stop("vmss", 2)
        cases = [
            ("10.0.0.4", 80, 0),  # allowed: AllowVnetInBound
            ("10.0.0.5", 7000, 2),  # denied by deny-7000-from-vnet
            ("10.0.0.200", 80, 4),  # no instance has the address
            ("10.0.0.6", 80, 4),  # stopped
            ("10.0.0.5", 9999, 5),  # allowed, nothing listens
            ("example.com", 80, 4),  # a name: instances are reached by address
        ]
        for host, port, expected in cases:
            code, stream = await socks_connect(address, host, port)
            async with stream:
                assert code == expected, (host, port)
    counts = endpoint.counts
    assert counts == {"connected": 1, "denied": 1, "unreachable": 3, "refused": 1}
    assert any("10.0.0.5:9999: connection refused" in line for line in notices), notices
    assert any("example.com:80: a name" in line for line in notices), notices


async def test_a_denied_connect_names_the_nsg_rule_to_the_operator(tmp_path: Path) -> None:
    notices: list[str] = []
    async with serving(tmp_path) as lb:
        lb.runtime.notice = notices.append
        assert lb.runtime.socks_address is not None
        code, stream = await socks_connect(lb.runtime.socks_address, "10.0.0.5", 7000)
        await stream.aclose()
    assert code == 2
    source = "10.0.0.254"  # the highest usable address of subnet 10.0.0.0/24: no NIC holds it
    assert any(
        "vmss/1 (10.0.0.5:7000) from " + source in line and "deny-7000-from-vnet" in line
        for line in notices
    ), notices


async def test_an_ip_address_written_as_a_name_is_taken(tmp_path: Path) -> None:
    async with serving(tmp_path) as lb:
        assert lb.runtime.socks_address is not None
        code, stream = await socks_connect(lb.runtime.socks_address, "vm-10-0-0-4", 80)
        await stream.aclose()
        assert code == 4  # not an address
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(*lb.runtime.socks_address)
        async with stream:
            await stream.send_all(b"\x05\x01\x00" + b"\x05\x01\x00\x03\x0810.0.0.4\x00\x50")
            assert await receive_exactly(stream, 2) == b"\x05\x00"
            assert (await receive_exactly(stream, 10))[1] == 0
            assert (await http_get(stream))["backend"] == "vmss/0"


@pytest.mark.parametrize("command", [2, 3])
async def test_bind_and_udp_associate_are_not_supported(tmp_path: Path, command: int) -> None:
    async with serving(tmp_path) as lb:
        assert lb.runtime.socks_address is not None
        code, stream = await socks_connect(lb.runtime.socks_address, "10.0.0.4", 80, command)
        async with stream:
            assert code == 7
            assert await receive_all(stream) == b""


async def test_a_client_offering_only_authentication_gets_ff(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    notices: list[str] = []
    async with serving(tmp_path) as lb:
        endpoint, address = await endpoint_of(lb, nursery, notices)
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(b"\x05\x01\x02")  # username/password only
            assert await receive_all(stream) == b"\x05\xff"
    assert endpoint.counts == {"unsupported": 1}
    assert any("offers no method without authentication" in line for line in notices)


async def test_half_close_passes_through_and_bytes_sent_early_are_relayed(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as lb:
        assert lb.runtime.socks_address is not None
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(*lb.runtime.socks_address)
        async with stream:
            # greeting, request and the first data in one write, before any reply
            await stream.send_all(b"\x05\x01\x00" + connect_request("10.0.0.6", 7001) + b"early ")
            replies = await receive_exactly(stream, 2 + 10)
            # succeeded, bound at the endpoint's own address in the virtual network
            assert replies[:10] == b"\x05\x00\x05\x00\x00\x01" + bytes((10, 0, 0, 254))
            await stream.send_all(b"late")
            await stream.send_eof()  # the instance still answers after our end of stream
            echoed = await receive_all(stream)
    assert echoed == b"lbsim instance vmss/2 at 10.0.0.6\nearly late"


async def test_malformed_peers_end_their_own_connection_only(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    notices: list[str] = []
    async with serving(tmp_path) as lb:
        endpoint, address = await endpoint_of(lb, nursery, notices)
        garbage = [
            b"GET / HTTP/1.1\r\n\r\n",  # not SOCKS at all
            b"\x04\x01\x00\x50\x0a\x00\x00\x05\x00",  # SOCKS4
            b"\x05\x01\x00\x05\x01\x00\x02" + bytes(6),  # address type 2
            b"\x05\x01",  # truncated, then closed
        ]
        answers = []
        for data in garbage:
            with trio.fail_after(10):
                stream = await trio.open_tcp_stream(*address)
            async with stream:
                await stream.send_all(data)
                await stream.send_eof()
                answers.append(await receive_all(stream))
        code, stream = await socks_connect(address, "10.0.0.4", 80)  # still serving
        async with stream:
            assert code == 0
            assert (await http_get(stream))["backend"] == "vmss/0"
    assert answers == [b"", b"", b"\x05\x00\x05\x08\x00\x01" + bytes(6), b""]
    assert endpoint.counts == {"malformed": 4, "connected": 1}
    malformed = [line for line in notices if "connection closed" in line]
    assert len(malformed) == 1, notices  # at most one line a second: the rest are counted
    assert "greeting: version 71, not SOCKS5" in malformed[0]
    assert endpoint.tell.untold["malformed"] == 3


async def test_clients_beyond_the_handshake_cap_are_closed_at_once(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    notices: list[str] = []
    async with serving(tmp_path) as lb:
        options = {"max_handshakes": 2, "handshake_timeout_s": 60}
        endpoint, address = await endpoint_of(lb, nursery, notices, **options)
        with trio.fail_after(10):
            silent = [await trio.open_tcp_stream(*address) for _ in range(2)]
            await wait_until(lambda: endpoint.handshakes == 2)
            async with await trio.open_tcp_stream(*address) as third:
                assert await receive_all(third) == b""  # closed without a word
        assert endpoint.counts["busy"] == 1
        for stream in silent:
            await stream.aclose()
        with trio.fail_after(10):
            await wait_until(lambda: endpoint.handshakes == 0)
        code, stream = await socks_connect(address, "10.0.0.4", 80)  # room again
        async with stream:
            assert code == 0
    assert any("2 handshakes under way; closed" in line for line in notices), notices


async def wait_until(done: Callable[[], bool]) -> None:
    for _ in range(500):  # (under the caller's fail_after)
        if done():
            return
        await trio.sleep(0.02)
    raise AssertionError("never happened")


async def test_a_silent_client_is_closed_after_the_handshake_timeout(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    notices: list[str] = []
    async with serving(tmp_path) as lb:
        endpoint, address = await endpoint_of(lb, nursery, notices, handshake_timeout_s=0.3)
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(b"\x05\x01\x00")  # a greeting, then nothing
            assert await receive_all(stream) == b"\x05\x00"
    assert endpoint.counts == {"malformed": 1}
    assert any("no complete request within 0.3 s" in line for line in notices), notices


def _curl(socks: Address, url: str) -> subprocess.CompletedProcess[str]:
    curl = shutil.which("curl")
    assert curl is not None
    proxy = f"{socks[0]}:{socks[1]}"
    command = [curl, "--silent", "--show-error", "--max-time", "20", "--socks5", proxy, url]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_curl_through_the_endpoint(tmp_path: Path) -> None:
    async with serving(tmp_path) as lb:
        socks = lb.runtime.socks_address
        assert socks is not None
        done = await trio.to_thread.run_sync(_curl, socks, "http://10.0.0.5/")
        denied = await trio.to_thread.run_sync(_curl, socks, "http://10.0.0.5:7000/")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["backend"] == "vmss/1"
    assert denied.returncode == 97, denied.stderr  # curl's "proxy handshake error"


async def test_the_runtimes_endpoint_and_ssh_servers_are_counted_as_metrics(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as lb:
        assert lb.runtime.socks_address is not None
        for port in (80, 7000):  # allowed, then denied
            _, stream = await socks_connect(lb.runtime.socks_address, "10.0.0.5", port)
            await stream.aclose()
        registry = CollectorRegistry()
        registry.register(RuntimeCollector(lb.runtime))

        def sample(name: str, outcome: str) -> float | None:
            return registry.get_sample_value(
                f"lbsim_{name}_connections_total", {"outcome": outcome}
            )

        assert sample("socks", "connected") == 1.0
        assert sample("socks", "denied") == 1.0
        assert sample("vnet", "allowed") == 1.0
        assert sample("vnet", "denied") == 1.0
        assert sample("ssh", "accepted") is None  # nobody logged in
