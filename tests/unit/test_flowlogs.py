"""NSG flow log v2 records and files, from flow events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lbsim.dataplane.events import FlowEvent, FlowNames, NsgHit
from lbsim.observe.flowlogs import CONTAINER, FlowLogWriter, flow_tuple, mac_address

NSG = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/networkSecurityGroups/web-nsg"
NIC = (
    "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web"
    "/virtualMachines/0/networkInterfaces/nic/ipConfigurations/ip"
)
ALLOW = NsgHit(NSG, "UserRule_allow-ssh", "Allow")
DENY = NsgHit(NSG, "DefaultRule_DenyAllInBound", "Deny")
NOON = 1795435200.25  # 2026-11-23T12:00:00.25Z


def event(
    kind: str,
    *,
    protocol: str = "Tcp",
    peer: tuple[str, int] = ("127.0.0.1", 40000),
    source: str = "203.0.113.7",
    **extra: Any,
) -> FlowEvent:
    names = FlowNames(
        protocol, "127.0.0.1:50000", "ssh.0", "web/0", "127.1.0.1:22", NIC, "10.0.0.4:22"
    )
    return FlowEvent(kind, NOON, names, peer, source, **extra)


def test_begin_and_end_tuples_in_azures_field_order() -> None:
    assert (
        flow_tuple(event("decision"), ALLOW)
        == "1795435200,203.0.113.7,10.0.0.4,40000,22,T,I,A,B,,,,"
    )
    closed = event("close", packets_in=3, bytes_in=120, packets_out=2, bytes_out=4096)
    assert (
        flow_tuple(closed, ALLOW) == "1795435200,203.0.113.7,10.0.0.4,40000,22,T,I,A,E,3,120,2,4096"
    )
    assert flow_tuple(event("decision", protocol="Udp"), DENY).endswith(",U,I,D,B,,,,")


def test_mac_addresses_are_stable_azure_style() -> None:
    mac = mac_address(NIC)
    assert mac == mac_address(NIC.upper())
    assert len(mac) == 12
    assert mac.startswith("000D3A")
    assert mac != mac_address(NIC + "2")


def test_records_are_appended_per_nsg_nic_and_hour(tmp_path: Path) -> None:
    writer = FlowLogWriter(tmp_path, clock=lambda: NOON)
    writer(event("decision", nsg_hits=(ALLOW,)))
    writer(event("close", nsg_hits=(ALLOW,), bytes_in=5, packets_in=1))
    writer(event("decision", peer=("127.0.0.66", 1), source="198.51.100.9", nsg_hits=(DENY,)))
    writer(event("decision"))  # not explained: nothing to log
    writer.flush()
    writer(event("decision", nsg_hits=(ALLOW,)))
    writer.flush()
    path = (
        tmp_path
        / CONTAINER
        / f"resourceId={NSG.upper()}"
        / "y=2026/m=11/d=23/h=12/m=00"
        / f"macAddress={mac_address(NIC)}"
        / "PT1H.json"
    )
    records = json.loads(path.read_text(encoding="utf-8"))["records"]
    assert len(records) == 2  # one per flush
    first = records[0]
    assert first["time"] == "2026-11-23T12:00:00.2500000Z"
    assert first["category"] == "NetworkSecurityGroupFlowEvent"
    assert first["operationName"] == "NetworkSecurityGroupFlowEvents"
    assert first["resourceId"] == NSG.upper()
    assert first["properties"]["Version"] == 2
    flows = {f["rule"]: f["flows"][0]["flowTuples"] for f in first["properties"]["flows"]}
    assert [t.split(",")[8] for t in flows["UserRule_allow-ssh"]] == ["B", "E"]
    assert flows["DefaultRule_DenyAllInBound"][0].split(",")[1:3] == ["198.51.100.9", "10.0.0.4"]


def test_nothing_pending_writes_nothing(tmp_path: Path) -> None:
    writer = FlowLogWriter(tmp_path)
    writer.flush()
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_cannot_be_written_loses_records_not_traffic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the flow logs should go")
    writer = FlowLogWriter(blocked, clock=lambda: NOON)
    for _ in range(2):
        writer(event("decision", nsg_hits=(ALLOW,)))
        writer.flush()  # raises nothing
    assert (writer.records_written, writer.records_lost) == (0, 2)
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == 1  # said once
    assert warnings[0].startswith("lbsim: warning: FlowLogWriteFailed: ")
    assert str(blocked) in warnings[0]
