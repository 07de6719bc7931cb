"""Clients whose IP version differs from the backend's: an IPv6 frontend in front of an IPv4
scale set (and back)."""

from __future__ import annotations

import socket

import pytest
import trio
from runtime_harness import example_plan, place, running

from lbsim.control.types import Backend
from lbsim.dataplane.listeners import Route, same_family
from lbsim.dataplane.settings import RuntimeSettings, SourceMap

pytestmark = pytest.mark.every_engine  # once per engine (conftest.py)


def _route(private_ip: str) -> Route:
    return Route(Backend("id", "web_0", private_ip, "web", 0), 22, ("127.0.0.1", 22))


@pytest.mark.parametrize(
    ("client", "backend", "judged"),
    [
        ("::1", "10.0.0.4", "127.0.0.1"),
        ("::ffff:127.0.0.9", "10.0.0.4", "127.0.0.9"),
        ("127.0.0.1", "fd00::4", "::1"),
        ("127.0.0.5", "10.0.0.4", "127.0.0.5"),  # same family: unchanged
        ("2001:db8::7", "10.0.0.4", "2001:db8::7"),  # not loopback: left for the NSG to refuse
    ],
)
def test_loopback_clients_are_judged_in_the_backend_family(
    client: str, backend: str, judged: str
) -> None:
    assert same_family(client, _route(backend)) == judged


async def _banner(port: int) -> bytes:
    sock = trio.socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    with sock:
        with trio.fail_after(3):
            await sock.connect(("::1", port))
            return await sock.recv(200)


async def test_an_ipv6_frontend_reaches_ipv4_instances_through_the_nsg() -> None:
    where = place()
    plan = example_plan("vmss-linux-ssh", "::1", "web-lb/public")
    sources = SourceMap.parse({"127.0.0.1": "203.0.113.7"})  # the NSG allows 203.0.113.0/24
    config = RuntimeSettings(instance_network=where.instance_network, sources=sources)
    async with running(plan, config) as runtime:
        line = await _banner(50001)
        assert line.startswith(b"SSH-2.0-lbsim_web_1")
        assert ("web-nsg", "subnet", "UserRule_allow-ssh", "Allow") in runtime.nsg_decisions
