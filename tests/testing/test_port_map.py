"""Port maps: where lbsim listens changes, the plan (Azure's frontend ports, the NAT table,
the NSG verdicts) does not. Two load balancers of one template run at once under
per-worker:N; offset:N and ephemeral move the ports; the handle always says where to connect.
These tests use worker numbers and offsets that no other test of the suite uses."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

import lbsim
from lbsim.api.config import resolve
from lbsim.api.library import _config_args
from lbsim.dataplane.portmap import PortMap, PortMapKind, xdist_worker
from lbsim.errors import ConfigError, LbsimError

TOPOLOGY = Path(__file__).with_name("topology.json")
OFFICE = {"127.0.0.1": "203.0.113.7"}  # the NSG allows SSH from 203.0.113.0/24 only


def _config(port_map: str) -> dict[str, object]:
    return {"port_map": port_map, "sources": OFFICE}


@pytest.mark.parametrize(
    ("text", "kind", "value"),
    [
        ("azure", PortMapKind.AZURE, 0),
        ("per-worker:3", PortMapKind.PER_WORKER, 3),
        ("Offset:1000", PortMapKind.OFFSET, 1000),
        ("ephemeral", PortMapKind.EPHEMERAL, 0),
    ],
)
def test_port_maps_parse(text: str, kind: PortMapKind, value: int) -> None:
    assert PortMap.parse(text) == PortMap(kind, value)


def test_a_bare_per_worker_is_the_xdist_worker() -> None:
    assert PortMap.parse("per-worker", {"PYTEST_XDIST_WORKER": "gw7"}) == PortMap(
        PortMapKind.PER_WORKER, 7
    )
    assert PortMap.parse("per-worker", {}) == PortMap(PortMapKind.PER_WORKER, 0)
    assert xdist_worker({"PYTEST_XDIST_WORKER": "master"}) == 0


def test_where_each_map_listens() -> None:
    assert PortMap.parse("azure").listen("127.0.0.3", 50000) == ("127.0.0.3", 50000)
    assert PortMap.parse("per-worker:2").listen("127.0.0.3", 50000) == ("127.0.3.3", 50000)
    assert PortMap.parse("per-worker:2").listen("::1", 50000) == ("::1", 50000)
    assert PortMap.parse("per-worker:2").listen("127.9.0.1", 22) == ("127.9.0.1", 22)
    assert PortMap.parse("per-worker:2").instance_network == "127.102.0.0/16"
    assert PortMap.parse("offset:7").listen("127.0.0.1", 50000) == ("127.0.0.1", 50007)
    assert PortMap.parse("ephemeral").listen("127.0.0.1", 50000) == ("127.0.0.1", 0)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nearby", "choose azure, per-worker"),
        ("offset", "offset takes a number"),
        ("offset:-5", "whole number"),
        ("per-worker:156", "workers 0 to 155"),
        ("ephemeral:3", "takes no"),
    ],
)
def test_a_bad_port_map_is_a_clear_setting_error(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(_config_args({"port_map": text}), {})
    assert caught.value.code == "InvalidSetting"
    assert "--port-map" in str(caught.value)
    assert why in str(caught.value)


@pytest.mark.parametrize(
    "number",
    ["\u0663", "\u00b2", "\uff17", "9" * 5000, "123456", "1_0", " 7", "+7"],
    ids=["arabic-indic", "superscript", "fullwidth", "5000-digits", "6-digits", "_", "space", "+"],
)
@pytest.mark.parametrize("form", ["offset", "per-worker"])
def test_a_port_map_number_is_ascii_digits_only(form: str, number: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(_config_args({"port_map": f"{form}:{number}"}), {})
    assert caught.value.code == "InvalidSetting"
    message = str(caught.value)
    assert "--port-map" in message
    assert f"{form}:N takes a whole number of at most 5 ASCII digits" in message
    assert len(message) < 300  # a 5,000-digit value is cut short


def _banner(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=5) as sock:
        return sock.recv(200)


def test_two_workers_run_one_template_at_once_without_a_collision() -> None:
    with (
        lbsim.run_in_thread(TOPOLOGY, config=_config("per-worker:60")) as first,
        lbsim.run_in_thread(TOPOLOGY, config=_config("per-worker:61")) as second,
    ):
        assert first.endpoint("web", 0, 22) == ("127.0.61.1", 50000)
        assert second.endpoint("web", 0, 22) == ("127.0.62.1", 50000)
        for lb in (first, second):
            row = lb.ports()[0]
            # the plan is Azure's; only where lbsim listens moved
            assert (row["frontendIPAddress"], row["frontendPort"]) == ("127.0.0.1", 50000)
            assert (row["listenAddress"], row["listenPort"]) == lb.endpoint("web", 0, 22)
            assert lb.check(source="203.0.113.5", frontend_port=50000)["access"] == "Allow"
            banner = _banner(lb.endpoint("web", 1, 22))
            assert banner.startswith(b"SSH-2.0-lbsim_web_1")
        served = [lb.instances()[0]["ports"][0]["servedBy"] for lb in (first, second)]
        assert served == ["127.160.0.1:22", "127.161.0.1:22"]


def test_offset_moves_every_frontend_port() -> None:
    with lbsim.run_in_thread(TOPOLOGY, config=_config("offset:11237")) as lb:
        assert lb.endpoint("web", 1, 22) == ("127.0.0.1", 61238)
        listening = {(r["frontendPort"], r["listenPort"]) for r in lb.ports()}
        assert listening == {(50000, 61237), (50001, 61238), (80, 11317)}
        assert _banner(lb.endpoint("web", 1, 22)).startswith(b"SSH-2.0-lbsim_web_1")


def test_ephemeral_listens_on_free_ports_the_handle_names() -> None:
    with lbsim.run_in_thread(TOPOLOGY, config=_config("ephemeral")) as lb:
        host, port = lb.endpoint("web", 0, 22)
        assert host == "127.0.0.1"
        assert port not in (0, 50000)
        ports = lb.instances()[0]["ports"]
        assert (ports[0]["frontendPort"], ports[0]["listenPort"]) == (50000, port)
        assert _banner((host, port)).startswith(b"SSH-2.0-lbsim_web_0")


def test_an_offset_past_the_last_port_is_a_clear_bind_error() -> None:
    with (
        pytest.raises(LbsimError) as caught,
        lbsim.run_in_thread(TOPOLOGY, config=_config("offset:65500")),
    ):
        pass
    assert caught.value.code == "FrontendBindFailed"
    assert "past 65535" in str(caught.value)


def _with_udp(tmp_path: Path) -> Path:
    """The topology with a UDP NAT pool 53000-53009 -> 53, open to the office only."""
    template = json.loads(TOPOLOGY.read_text(encoding="utf-8"))
    nsg, lb = template["resources"][0], template["resources"][3]
    rule = json.loads(json.dumps(nsg["properties"]["securityRules"][0]))
    rule["name"] = "allow-dns-office"
    rule["properties"].update(priority=120, protocol="Udp", destinationPortRange="53")
    nsg["properties"]["securityRules"].append(rule)
    pool = json.loads(json.dumps(lb["properties"]["inboundNatPools"][0]))
    pool["name"] = "dns"
    pool["properties"].update(
        protocol="Udp", frontendPortRangeStart=53000, frontendPortRangeEnd=53009, backendPort=53
    )
    lb["properties"]["inboundNatPools"].append(pool)
    ipconfig = template["resources"][4]["properties"]["virtualMachineProfile"]["networkProfile"][
        "networkInterfaceConfigurations"
    ][0]["properties"]["ipConfigurations"][0]["properties"]
    ipconfig["loadBalancerInboundNatPools"].append(
        {"id": "[resourceId('Microsoft.Network/loadBalancers/inboundNatPools', 'lb', 'dns')]"}
    )
    path = tmp_path / "udp.json"
    path.write_text(json.dumps(template), encoding="utf-8")
    return path


def test_udp_reachability_is_an_answer_and_a_denial_is_none(tmp_path: Path) -> None:
    with lbsim.run_in_thread(_with_udp(tmp_path), config=_config("per-worker:62")) as lb:
        assert lb.endpoint("web", 1, 53, "Udp") == ("127.0.63.1", 53001)
        lb.assert_reachable("web", 1, 53, protocol="Udp")
        lb.assert_reachable("web", 1, 53, source="203.0.113.99", protocol="Udp")
        lb.assert_denied("web", 1, 53, source="198.51.100.99", protocol="Udp")
        with pytest.raises(AssertionError) as caught:
            lb.assert_reachable("web", 0, 53, source="198.51.100.99", protocol="Udp")
        message = str(caught.value)
        assert "Udp port 53 of web/0: expected reachable" in message
        assert ": no answer." in message
        assert "NAT entry: dns.0 127.0.0.1:53000 -> web/0 (10.0.0.4):53 Udp" in message
        assert "Deny by web-nsg/DenyAllInBound" in message


def test_an_ipv6_source_is_a_clear_error() -> None:
    with lbsim.run_in_thread(TOPOLOGY, config=_config("per-worker:63")) as lb:
        with pytest.raises(LbsimError) as caught:
            lb.assert_reachable("web", 0, 22, source="2001:db8::1")
        assert caught.value.code == "InvalidArgument"
        assert "only an IPv4 source" in str(caught.value)
