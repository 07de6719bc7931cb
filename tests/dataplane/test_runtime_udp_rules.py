"""UDP load-balancing rules: each new flow goes to one backend the rule picks, through the
NSGs, and stays there."""

from __future__ import annotations

import json

from runtime_harness import EXAMPLES, place, plan_of, running, udp_ask, udp_client
from waiting import eventually

from lbsim.control.types import Plan
from lbsim.dataplane.events import FlowEvent
from lbsim.dataplane.settings import RuntimeSettings


def _udp_web_plan(frontend: str) -> Plan:
    doc = json.loads((EXAMPLES / "lb-rules-probe" / "azuredeploy.json").read_text("utf-8"))
    lb = next(r for r in doc["resources"] if r["type"] == "Microsoft.Network/loadBalancers")
    rules = lb["properties"]["copy"][0]["input"]["properties"]
    rules["protocol"] = "Udp"  # both rules (80 and 8080) carry UDP; probes stay HTTP
    return plan_of(doc, frontend, "web-lb/fe")


async def test_udp_rule_flows_spread_over_backends_and_stick() -> None:
    where = place()
    plan = _udp_web_plan(where.frontend)
    config = RuntimeSettings(instance_network=where.instance_network)
    async with running(plan, config) as runtime:
        names = set()
        for _ in range(8):  # 8 client ports: the 5-tuple hash spreads them
            sock = await udp_client(where.client(1))
            with sock:
                first = await udp_ask(sock, (where.frontend, 80), b"hi")
                again = await udp_ask(sock, (where.frontend, 80), b"hi")
            name = first.split(b":")[0]
            assert again.split(b":")[0] == name  # one flow, one backend
            names.add(name)
        assert len(names) > 1
        assert names <= {b"web/0", b"web/1", b"web/2"}
        rule = next(x for x in runtime.listeners if x.entry.rule_name == "http-80")
        assert rule.protocol.value == "Udp"
        assert rule.stats.allowed == 8


async def test_an_idle_udp_flow_ends_with_a_close_event_and_its_counts() -> None:
    where = place()
    plan = _udp_web_plan(where.frontend)
    config = RuntimeSettings(instance_network=where.instance_network, idle_timeout_scale=0.002)
    events: list[FlowEvent] = []
    async with running(plan, config, events):
        sock = await udp_client(where.client(2))
        with sock:
            reply = await udp_ask(sock, (where.frontend, 80), b"ping")
            assert reply.endswith(b"ping")
            # 5 minutes scaled to 0.6 s
            await eventually(lambda: any(e.kind == "close" for e in events), within=5)
    (close,) = [e for e in events if e.kind == "close"]
    assert (close.protocol, close.rule, close.reason) == ("Udp", "http-80", "idle-timeout")
    assert (close.packets_in, close.bytes_in, close.packets_out) == (1, 4, 1)
    assert close.bytes_out == len(reply)
    assert close.destination.endswith(":80")
