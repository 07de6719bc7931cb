"""The control API's reads: health, readiness, metrics, the NAT table, instances, NSG checks
and effective rules, answered from the handle as they are."""

from __future__ import annotations

from api_client import Served


async def test_healthz_is_ok(api: Served) -> None:
    got = await api.request("GET", "/healthz")
    assert (got.status, got.json()) == (200, {"status": "ok"})
    assert got.headers["content-type"] == "application/json"


async def test_readyz_is_503_with_the_reason_until_ready(api: Served) -> None:
    api.fake.not_ready = "binding 3 of 5 listeners"
    got = await api.request("GET", "/readyz")
    assert got.status == 503
    assert got.json() == {"status": "notReady", "reason": "binding 3 of 5 listeners"}
    api.fake.not_ready = None
    got = await api.request("GET", "/readyz")
    assert (got.status, got.json()) == (200, {"status": "ready"})


async def test_metrics_are_prometheus_text_0_0_4(api: Served) -> None:
    got = await api.request("GET", "/metrics")
    assert got.status == 200
    assert got.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert got.body == api.fake.metrics()


async def test_ports_and_instances_are_the_handles_own(api: Served) -> None:
    ports = await api.request("GET", "/v1/ports")
    assert (ports.status, ports.json()) == (200, api.fake.ports())
    instances = await api.request("GET", "/v1/instances")
    assert (instances.status, instances.json()) == (200, api.fake.instances())
    assert [i["scaleSet"] + "/" + str(i["instanceId"]) for i in instances.json()] == [
        "web/0",
        "web/1",
        "db/0",
    ]


async def test_check_passes_the_flow_to_the_handle(api: Served) -> None:
    flow = {"source": "198.51.100.7:4000", "frontendPort": 50001, "protocol": "udp"}
    got = await api.request("POST", "/v1/check", flow)
    assert got.status == 200
    assert got.json()["access"] == "Deny"
    assert api.fake.calls == [("check", "198.51.100.7:4000", 50001, None, "Udp", None)]


async def test_check_by_destination_and_frontend(api: Served) -> None:
    flow = {"source": "203.0.113.7", "destination": "10.0.3.4:22", "frontend": "lb/fe"}
    got = await api.request("POST", "/v1/check", flow)
    assert (got.status, got.json()["access"]) == (200, "Allow")
    assert api.fake.calls == [("check", "203.0.113.7", None, "10.0.3.4:22", "Tcp", "lb/fe")]


async def test_a_check_the_handle_refuses_is_a_400_with_its_code(api: Served) -> None:
    got = await api.request("POST", "/v1/check", {"source": "203.0.113.7", "frontendPort": 1})
    assert got.status == 400
    assert got.error["code"] == "NoSuchFrontendPort"
    assert got.error["message"] == "no rule listens on port 1"


async def test_rules_of_an_instance(api: Served) -> None:
    got = await api.request("GET", "/v1/rules?instance=web/1&direction=Outbound")
    assert got.status == 200
    assert got.json() == {"instance": "web/1", "direction": "Outbound", "rules": []}
    got = await api.request("GET", "/v1/rules?instance=web%2F0")
    assert got.json()["direction"] == "Inbound"  # the default
    assert api.fake.calls == [("rules", "web/1", "Outbound"), ("rules", "web/0", "Inbound")]


async def test_rules_query_errors_name_the_parameter(api: Served) -> None:
    got = await api.request("GET", "/v1/rules?direction=Inbound")
    assert got.status == 400
    assert (got.error["code"], got.error["target"]) == ("InvalidQueryParameterValue", "instance")
    got = await api.request("GET", "/v1/rules?instance=web/1&direction=Sideways")
    assert (got.error["target"], got.status) == ("direction", 400)
    assert "'Sideways' is not one of ['Inbound', 'Outbound']" in got.error["message"]
    got = await api.request("GET", "/v1/rules?instance=web/1&instance=web/2")
    assert (got.error["target"], got.error["message"]) == ("instance", "instance: given 2 times")
    got = await api.request("GET", "/v1/rules?instance=web/1&verbose=1")
    assert got.error["target"] == "verbose"
    got = await api.request("GET", "/v1/rules?instance=nope/1")
    assert (got.status, got.error["code"]) == (400, "UnknownInstance")
