"""``offset:N`` and ``ephemeral`` are for machines where only 127.0.0.1 is usable: every
frontend lbsim numbers in 127.0.0.0/24 listens on 127.0.0.1 and every built-in instance
serves on 127.0.0.1, each on a port of its own; the handle says where. Port numbers here
are ones no other test of the suite uses."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

import lbsim
from lbsim.api.library import ThreadedLoadBalancer
from lbsim.dataplane.portmap import PortMap
from lbsim.errors import LbsimError

TOPOLOGY = Path(__file__).with_name("topology.json")
OFFICE = {"127.0.0.1": "203.0.113.7"}  # the NSG allows SSH from 203.0.113.0/24 only


def _ref(kind: str, *names: str) -> dict[str, str]:
    quoted = ", ".join(f"'{name}'" for name in names)
    return {"id": f"[resourceId('Microsoft.Network/{kind}', {quoted})]"}


def _two_frontends(tmp_path: Path, second_http_port: int) -> Path:
    """The topology with a second public IP: its own NAT pool 52000-52009 -> 2222 (the
    built-in echo server, open to all) and an HTTP rule on ``second_http_port`` -> 8080."""
    template = json.loads(TOPOLOGY.read_text(encoding="utf-8"))
    resources = template["resources"]
    rules = resources[0]["properties"]["securityRules"]
    rules.append(json.loads(json.dumps(rules[1])))
    rules[-1]["name"] = "allow-admin"
    rules[-1]["properties"].update(priority=120, destinationPortRange="2222")
    pip2 = json.loads(json.dumps(resources[1]))
    pip2["name"] = "pip2"
    resources.insert(2, pip2)
    lb = resources[4]["properties"]
    lb["frontendIPConfigurations"].append(
        {"name": "fe2", "properties": {"publicIPAddress": _ref("publicIPAddresses", "pip2")}}
    )
    fe2 = _ref("loadBalancers/frontendIPConfigurations", "lb", "fe2")
    lb["inboundNatPools"].append(
        {
            "name": "admin",
            "properties": {
                "frontendIPConfiguration": fe2,
                "protocol": "Tcp",
                "frontendPortRangeStart": 52000,
                "frontendPortRangeEnd": 52009,
                "backendPort": 2222,
            },
        }
    )
    lb["loadBalancingRules"].append(
        {
            "name": "http2",
            "properties": {
                "frontendIPConfiguration": fe2,
                "backendAddressPool": _ref("loadBalancers/backendAddressPools", "lb", "pool"),
                "protocol": "Tcp",
                "frontendPort": second_http_port,
                "backendPort": 8080,
            },
        }
    )
    ipconfig = resources[5]["properties"]["virtualMachineProfile"]["networkProfile"][
        "networkInterfaceConfigurations"
    ][0]["properties"]["ipConfigurations"][0]["properties"]
    ipconfig["loadBalancerInboundNatPools"].append(
        _ref("loadBalancers/inboundNatPools", "lb", "admin")
    )
    path = tmp_path / "two-frontends.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return path


def _first_line(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        return sock.recv(200)


def _all_on_one_address(lb: ThreadedLoadBalancer) -> None:
    """Every listener and every built-in server on 127.0.0.1, no two on one port, and
    each instance reached through ``lb.endpoint``."""
    rows = lb.ports()
    assert {row["frontendIPAddress"] for row in rows} == {"127.0.0.1", "127.0.0.2"}
    assert {row["listenAddress"] for row in rows} == {"127.0.0.1"}
    listening = [row["listenPort"] for row in rows]
    assert len(set(listening)) == len(listening)
    served: list[Any] = [p["servedBy"] for i in lb.instances() for p in i["ports"]]
    assert all(str(s).startswith("127.0.0.1:") for s in served), served
    assert len(set(served)) == len(served) == 4  # 2 instances x (22, 2222)
    for instance in (0, 1):
        name = f"web_{instance}".encode()
        assert _first_line(lb.endpoint("web", instance, 22)).startswith(b"SSH-2.0-lbsim_" + name)
        assert f"web/{instance}".encode() in _first_line(lb.endpoint("web", instance, 2222))
        lb.assert_reachable("web", instance, 2222)


def test_offset_puts_every_frontend_and_instance_on_127_0_0_1(tmp_path: Path) -> None:
    template = _two_frontends(tmp_path, second_http_port=81)
    # An offset that puts the NAT ports above Linux's ephemeral range (32768-60999): no
    # other program's recent connection can hold one of them in TIME_WAIT.
    offset = 11100
    config = {"port_map": f"offset:{offset}", "sources": OFFICE}
    with lbsim.run_in_thread(template, config=config) as lb:
        _all_on_one_address(lb)
        assert lb.endpoint("web", 1, 22) == ("127.0.0.1", 50001 + offset)
        assert lb.endpoint("web", 1, 2222) == ("127.0.0.1", 52001 + offset)
        rule = {(r["frontendIPAddress"], r["frontendPort"], r["listenPort"]) for r in lb.ports()}
        assert {("127.0.0.1", 80, 80 + offset), ("127.0.0.2", 81, 81 + offset)} <= rule


def test_ephemeral_puts_every_frontend_and_instance_on_127_0_0_1(tmp_path: Path) -> None:
    template = _two_frontends(tmp_path, second_http_port=80)  # one Azure port: no matter
    with lbsim.run_in_thread(template, config={"port_map": "ephemeral", "sources": OFFICE}) as lb:
        _all_on_one_address(lb)
        assert all(row["listenPort"] not in (0, row["frontendPort"]) for row in lb.ports())


def test_two_frontends_on_one_azure_port_collide_under_offset(tmp_path: Path) -> None:
    template = _two_frontends(tmp_path, second_http_port=80)
    with (
        pytest.raises(LbsimError) as caught,
        lbsim.run_in_thread(template, config={"port_map": "offset:2321"}),
    ):
        pass
    assert caught.value.code == "FrontendBindFailed"
    message = str(caught.value)
    assert "127.0.0.2:80 (at 127.0.0.1:2401)" in message
    assert "held by lbsim's own listener for http, frontend 127.0.0.1:80" in message
    assert "port map offset:2321 puts both there" in message


def test_a_frontend_off_lbsim_s_loopback_range_keeps_its_address() -> None:
    for text in ("offset:5", "ephemeral"):
        port_map = PortMap.parse(text)
        assert port_map.listen("127.0.0.9", 80)[0] == "127.0.0.1"
        assert port_map.listen("::1", 80)[0] == "::1"
        assert port_map.listen("127.9.0.1", 80)[0] == "127.9.0.1"
        assert port_map.instance_network == "127.0.0.1/32"
