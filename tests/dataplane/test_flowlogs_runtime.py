"""The runtime feeds NSG flow logs: each NSG level that evaluated a flow logs it."""

from __future__ import annotations

import json
from pathlib import Path

import trio
from runtime_harness import example_plan, place

from lbsim.dataplane.events import FlowEvent, as_events
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import RuntimeSettings, SourceMap
from lbsim.observe.flowlogs import FlowLogWriter


def _tuples(root: Path, nsg: str) -> list[tuple[str, str]]:
    found = []
    for path in root.rglob("PT1H.json"):
        if f"NETWORKSECURITYGROUPS/{nsg.upper()}/" not in str(path):
            continue
        for record in json.loads(path.read_text(encoding="utf-8"))["records"]:
            for flow in record["properties"]["flows"]:
                found += [(flow["rule"], t) for t in flow["flows"][0]["flowTuples"]]
    return found


async def _talk(address: str, port: int, source: str) -> bytes:
    sock = trio.socket.socket()
    with sock:
        await sock.bind((source, 0))
        with trio.fail_after(3):
            await sock.connect((address, port))
            try:
                return await sock.recv(100)
            except ConnectionResetError:
                return b""


async def test_both_levels_log_an_allowed_flow_and_the_subnet_logs_a_denied_one(
    tmp_path: Path, nursery: trio.Nursery
) -> None:
    where = place()
    plan = example_plan("subnet-and-nic-nsg", where.frontend, "layered-lb/fe")
    allowed, denied = where.client(7), where.client(66)
    sources = SourceMap.parse({allowed: "203.0.113.7", denied: "203.0.113.66"})
    settings = RuntimeSettings(
        instance_network=where.instance_network, sources=sources, explain_nsg=True
    )
    writer = FlowLogWriter(tmp_path, interval_s=3600)
    closed = trio.Event()

    def sink(event: FlowEvent) -> None:
        writer(event)
        if event.kind == "close":
            closed.set()

    runtime: Runtime = await nursery.start(Runtime(plan, settings, as_events(sink)).run)
    assert (await _talk(where.frontend, 50000, allowed)).startswith(b"SSH-2.0-lbsim_servers_0")
    assert await _talk(where.frontend, 50001, denied) == b""
    with trio.fail_after(3):
        await closed.wait()
    runtime.stop()
    writer.flush()
    subnet, nic = _tuples(tmp_path, "subnet-nsg"), _tuples(tmp_path, "nic-nsg")
    states = {(rule, t.split(",")[7], t.split(",")[8]) for rule, t in subnet}
    assert states == {
        ("UserRule_allow-ssh-partners", "A", "B"),
        ("UserRule_allow-ssh-partners", "A", "E"),
        ("UserRule_deny-bad-host", "D", "B"),
    }
    # the NIC's NSG never sees the flow the subnet denied
    assert {(rule, t.split(",")[1], t.split(",")[8]) for rule, t in nic} == {
        ("UserRule_allow-admins", "203.0.113.7", "B"),
        ("UserRule_allow-admins", "203.0.113.7", "E"),
    }
