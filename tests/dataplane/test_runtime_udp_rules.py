"""UDP load-balancing rules: each new flow goes to one backend the rule picks, through the
NSGs, and stays there."""

from __future__ import annotations

import json

from runtime_harness import EXAMPLES, place, plan_of, running, udp_ask, udp_client

from lbsim.control.types import Plan
from lbsim.dataplane.settings import RuntimeSettings


def _udp_web_plan(frontend: str) -> Plan:
    doc = json.loads((EXAMPLES / "lb-rules-probe" / "azuredeploy.json").read_text("utf-8"))
    rules = doc["resources"][2]["properties"]["copy"][0]["input"]["properties"]
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
        assert names <= {b"web_0", b"web_1", b"web_2"}
        rule = next(x for x in runtime.listeners if x.entry.rule_name == "http-80")
        assert rule.protocol.value == "Udp"
        assert rule.stats.allowed == 8
