"""The control API's changes: scale, start/stop/restart/delete an instance, reload; each
answers the handle's ChangeReport, and a refused one changes nothing."""

from __future__ import annotations

import pytest
from api_client import Served
from api_fake import template_problems


async def test_scale_answers_what_changed(api: Served) -> None:
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 3})
    assert got.status == 200
    report = got.json()
    assert report["instances"] == {"added": ["web/2"], "removed": [], "changed": []}
    assert [e["ruleName"] for e in report["added"]] == ["ssh.2"]
    assert report["removed"] == []
    assert report["networkSecurityGroups"] == {"changed": []}
    assert api.fake.calls == [("scale", "web", 3)]
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 1})
    assert got.json()["instances"]["removed"] == ["web/1", "web/2"]


@pytest.mark.parametrize(("verb", "state"), [("stop", "stopped"), ("restart", "running")])
async def test_instance_actions(api: Served, verb: str, state: str) -> None:
    got = await api.request("POST", f"/v1/scale-sets/web/instances/1/{verb}")
    assert got.status == 200
    assert got.json()["instances"]["changed"] == ["web/1"]
    assert api.fake.scale_sets["web"][1].state == state
    assert api.fake.calls == [(verb, "web", 1)]


async def test_start_a_stopped_instance_and_delete_one(api: Served) -> None:
    api.fake.scale_sets["db"][0].state = "stopped"
    got = await api.request("POST", "/v1/scale-sets/db/instances/0/start", {})
    assert (got.status, got.json()["instances"]["changed"]) == (200, ["db/0"])
    got = await api.request("DELETE", "/v1/scale-sets/web/instances/0")
    assert got.status == 200
    assert got.json()["instances"]["removed"] == ["web/0"]
    assert [e["ruleName"] for e in got.json()["removed"]] == ["ssh.0"]
    assert list(api.fake.scale_sets["web"]) == [1]


async def test_reload_answers_what_changed(api: Served) -> None:
    got = await api.request("POST", "/v1/reload")
    assert (got.status, got.json()["networkSecurityGroups"]) == (200, {"changed": ["web-nsg"]})
    assert api.fake.calls == [("reload",)]


async def test_a_failed_reload_lists_every_problem(api: Served) -> None:
    api.fake.reload_problems = template_problems()
    got = await api.request("POST", "/v1/reload")
    assert got.status == 400
    assert got.error["code"] == "InvalidTemplate"
    assert "2 problems" in got.error["message"]
    assert got.error["details"] == [
        {
            "code": "InvalidTemplate",
            "message": "The value 300 of parameter 'instanceCount' exceeds maxValue 100.",
            "target": "lb.json#/parameters/instanceCount",
        },
        {
            "code": "SecurityRuleConflict",
            "message": "Rules 'a' and 'b' have the same priority 100 and direction Inbound.",
            "target": "lb.json#/resources/1/properties/securityRules/1",
        },
    ]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/scale-sets/nope/capacity", {"capacity": 1}),
        ("POST", "/v1/scale-sets/nope/instances/0/stop", None),
        ("POST", "/v1/scale-sets/web/instances/7/restart", None),
        ("DELETE", "/v1/scale-sets/web/instances/7", None),
    ],
)
async def test_unknown_scale_sets_and_instances_are_404(
    api: Served, method: str, path: str, body: object
) -> None:
    before = api.fake.instances()
    got = await api.request(method, path, body)
    assert got.status == 404
    assert got.error["code"] == "ResourceNotFound"
    assert api.fake.instances() == before


async def test_conflicts_are_409_and_change_nothing(api: Served) -> None:
    before = api.fake.instances()
    got = await api.request("POST", "/v1/scale-sets/web/instances/0/start")
    assert (got.status, got.error["code"]) == (409, "OperationNotAllowed")
    assert got.error["message"] == "web/0 is already running"
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 11})
    assert got.status == 409
    assert got.error["code"] == "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"
    assert api.fake.instances() == before
