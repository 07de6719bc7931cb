"""Bastion tunnels through the Python API: a tunnel reaches the target's port from the
bastion host's address (judged by the target's NSGs), refuses what they deny and names the
rule, follows the live deployment (a stopped or deleted target, a bastion host gone), closes
on request and with the runtime; and the refusals: no bastion host, an unknown target or
bastion host, one in another virtual network, a local port taken."""

from __future__ import annotations

import socket
from pathlib import Path

import attrs
import pytest
import trio
from vnet_harness import BASTION, add_bastion, http_get, receive_all, serving

import lbsim
from lbsim.control.diff import diff
from lbsim.errors import LbsimError
from lbsim.pointer import Pointer


async def connect(address: tuple[str, int]) -> trio.SocketStream:
    with trio.fail_after(10):
        return await trio.open_tcp_stream(*address)


async def test_a_tunnel_reaches_the_instance_from_the_bastion_host(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True) as lb:
        async with lb.bastion_tunnel("vmss/1", 80) as address:
            assert address[0] == "127.0.0.1"
            for _ in range(2):  # every connection is a flow of its own
                async with await connect(address) as stream:
                    answer = await http_get(stream)
                assert answer["backend"] == "vmss/1"
        assert lb.tunnels() == []
        assert lb.runtime.vnet.counts["allowed"] == 2


async def test_half_close_passes_through_a_tunnel(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True) as lb, lb.bastion_tunnel("vmss_2", 7001) as to:
        stream = await connect(to)
        async with stream:
            await stream.send_all(b"ping")
            await stream.send_eof()
            assert await receive_all(stream) == b"lbsim instance vmss/2 at 10.0.0.6\nping"


async def test_an_nsg_deny_closes_the_connection_and_names_the_rule(tmp_path: Path) -> None:
    notices: list[str] = []
    async with serving(tmp_path, bastion=True) as lb:
        lb.runtime.notice = notices.append
        async with lb.bastion_tunnel("vmss/1", 7000) as address:
            stream = await connect(address)
            async with stream:
                assert await receive_all(stream) == b""
    denied = [line for line in notices if "tunnel 1 to vmss/1" in line]
    assert len(denied) == 1, notices
    assert "from 10.0.1.4: denied by NSG rule" in denied[0]
    assert "deny-7000-from-vnet" in denied[0]


async def test_the_tunnel_follows_the_live_deployment(tmp_path: Path) -> None:
    notices: list[str] = []
    async with serving(tmp_path, bastion=True) as lb:
        lb.runtime.notice = notices.append
        first = await lb.open_tunnel("vmss/1", 80)
        second = await lb.open_tunnel("vmss/2", 80, bastion="BASTION")
        where = [(t["listenAddress"], t["listenPort"]) for t in (first, second)]
        await lb.stop("vmss", 1)
        await lb.delete("vmss", 2)
        await add_bastion(lb)  # (a change plans the template again: it has no bastion host)
        for address in where:
            async with await connect(address) as stream:
                assert await receive_all(stream) == b""
        await lb.start("vmss", 1)
        await add_bastion(lb)
        async with await connect(where[0]) as stream:
            assert (await http_get(stream))["backend"] == "vmss/1"
        await lb.runtime.apply(diff(lb.plan, attrs.evolve(lb.plan, bastions=())))
        async with await connect(where[0]) as stream:
            assert await receive_all(stream) == b""
    assert any("vmss/1 (10.0.0.5:80) is stopped" in line for line in notices), notices
    assert any("tunnel 2: instance vmss/2 is gone" in line for line in notices), notices
    assert any("tunnel 1: bastion host bastion is gone" in line for line in notices), notices


def refused(address: tuple[str, int]) -> bool:
    with socket.socket() as sock:
        sock.settimeout(10)
        return sock.connect_ex(address) != 0


async def test_tunnels_list_close_and_end_with_the_runtime(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True) as lb:
        one = await lb.open_tunnel("vmss/0", 80)
        two = await lb.open_tunnel("vmss/1", 22)
        assert [t["id"] for t in lb.tunnels()] == [one["id"], two["id"]]
        assert one == {
            "id": one["id"],
            "bastion": "bastion",
            "target": "vmss/0",
            "targetIp": "10.0.0.4",
            "resourcePort": 80,
            "listenAddress": "127.0.0.1",
            "listenPort": one["listenPort"],
        }
        assert lb.close_tunnel(one["id"]) == one
        assert lb.tunnels() == [two]
        assert refused(("127.0.0.1", one["listenPort"]))
        with pytest.raises(LbsimError) as raised:
            lb.close_tunnel(one["id"])
        assert raised.value.code == "ResourceNotFound"
    assert refused(("127.0.0.1", two["listenPort"]))


async def test_a_deployment_without_a_bastion_host_refuses_clearly(tmp_path: Path) -> None:
    async with serving(tmp_path) as lb:
        with pytest.raises(LbsimError) as raised:
            await lb.open_tunnel("vmss/1", 22)
    assert raised.value.code == "BastionHostNotFound"
    assert "Microsoft.Network/bastionHosts" in raised.value.message
    assert "AzureBastionSubnet" in raised.value.message


UNKNOWN = [
    (("vmss/9", None), ("ResourceNotFound", "/target", "target: vmss/9: no such instance")),
    (("vmss/1", "other"), ("BastionHostNotFound", "/bastion", "no bastion host 'other'")),
]


@pytest.mark.parametrize(("asked", "expected"), UNKNOWN)
async def test_unknown_targets_and_bastion_hosts(
    tmp_path: Path, asked: tuple[str, str | None], expected: tuple[str, str, str]
) -> None:
    (target, bastion), (code, at, message) = asked, expected
    async with serving(tmp_path, bastion=True) as lb:
        with pytest.raises(LbsimError) as raised:
            await lb.open_tunnel(target, 22, bastion=bastion)
        assert lb.tunnels() == []
    assert (raised.value.code, raised.value.at) == (code, Pointer.parse(at))
    assert message in raised.value.message


async def test_a_bastion_host_of_another_virtual_network_does_not_reach(tmp_path: Path) -> None:
    elsewhere = attrs.evolve(BASTION, virtual_network_prefixes=("192.168.0.0/16",))
    async with serving(tmp_path) as lb:
        await add_bastion(lb, elsewhere)
        with pytest.raises(LbsimError, match="no bastion host in the virtual network of vmss/1"):
            await lb.open_tunnel("vmss/1", 22)


@pytest.mark.parametrize(("resource_port", "port"), [(0, 0), (70000, 0), (22, -1), (22, 65536)])
async def test_ports_out_of_range(tmp_path: Path, resource_port: int, port: int) -> None:
    async with serving(tmp_path, bastion=True) as lb:
        with pytest.raises(LbsimError) as raised:
            await lb.open_tunnel("vmss/1", resource_port, port)
    assert raised.value.code == "InvalidArgument"


async def test_a_local_port_taken_is_tunnel_bind_failed(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        async with serving(tmp_path, bastion=True) as lb:
            with pytest.raises(LbsimError) as raised:
                await lb.open_tunnel("vmss/1", 22, taken.getsockname()[1])
            assert lb.tunnels() == []
    assert raised.value.code == "TunnelBindFailed"


def test_the_synchronous_handle_opens_a_tunnel(tmp_path: Path) -> None:
    from vnet_harness import config, write_template

    with lbsim.run_in_thread(write_template(tmp_path), config=config()) as lb:
        trio.from_thread.run(add_bastion, lb.session, trio_token=lb._token)
        with lb.bastion_tunnel("vmss/0", 7001) as address:
            assert lb.tunnels()[0]["listenPort"] == address[1]
            with socket.create_connection(address, timeout=10) as sock:
                assert sock.recv(100).startswith(b"lbsim instance vmss/0 at 10.0.0.4")
        assert lb.tunnels() == []
