"""The control API's changes: scale, start/stop/restart/delete an instance, reload; each
answers the handle's ChangeReport, and a refused one changes nothing."""

from __future__ import annotations

import pytest
from api_client import Served
from api_fake import template_problems

from lbsim.control.fleet import PowerState


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


async def test_scale_out_never_gives_an_id_twice(api: Served) -> None:
    """Ids continue above the highest ever used; the new instance takes the freed port."""
    got = await api.request("DELETE", "/v1/scale-sets/web/instances/1")
    assert got.json()["instances"]["removed"] == ["web/1"]
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 2})
    assert got.json()["instances"]["added"] == ["web/2"]
    assert [(e["backend"], e["frontendPort"]) for e in got.json()["added"]] == [("web/2", 50001)]
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 1})
    assert got.json()["instances"]["removed"] == ["web/2"]  # Default: the highest id goes
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 2})
    assert got.json()["instances"]["added"] == ["web/3"]
    assert api.fake.ids("web") == (0, 3)


@pytest.mark.parametrize(("verb", "state"), [("stop", "stopped"), ("restart", "running")])
async def test_instance_actions(api: Served, verb: str, state: str) -> None:
    got = await api.request("POST", f"/v1/scale-sets/web/instances/1/{verb}")
    assert got.status == 200
    assert got.json()["instances"]["changed"] == ["web/1"]
    assert api.fake.instance("web", 1).state is PowerState(state)
    assert api.fake.calls == [(verb, "web", 1)]


async def test_reimage_changes_the_instance_and_keeps_its_port(api: Served) -> None:
    got = await api.request("POST", "/v1/scale-sets/web/instances/1/reimage")
    assert got.status == 200
    assert got.json()["instances"]["changed"] == ["web/1"]
    assert api.fake.instance("web", 1).generation == 1
    assert api.fake.instance("web", 1).state is PowerState.RUNNING
    assert api.fake.calls == [("reimage", "web", 1)]
    got = await api.request("POST", "/v1/scale-sets/web/instances/7/reimage")
    assert (got.status, got.error["code"]) == (404, "ResourceNotFound")


async def test_start_a_stopped_instance_and_delete_one(api: Served) -> None:
    api.fake.given("db", 0, state=PowerState.STOPPED)
    got = await api.request("POST", "/v1/scale-sets/db/instances/0/start", {})
    assert (got.status, got.json()["instances"]["changed"]) == (200, ["db/0"])
    got = await api.request("DELETE", "/v1/scale-sets/web/instances/0")
    assert got.status == 200
    assert got.json()["instances"]["removed"] == ["web/0"]
    assert [e["ruleName"] for e in got.json()["removed"]] == ["ssh.0"]
    assert api.fake.ids("web") == (1,)


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


@pytest.mark.parametrize(("verb", "state"), [("start", "running"), ("stop", "stopped")])
async def test_starting_a_running_or_stopping_a_stopped_instance_changes_nothing(
    api: Served, verb: str, state: str
) -> None:
    """As in Azure and the real Session: a success with an empty report, not a refusal."""
    api.fake.given("web", 0, state=PowerState(state))
    before = api.fake.instances()
    got = await api.request("POST", f"/v1/scale-sets/web/instances/0/{verb}")
    assert got.status == 200
    assert got.json() == {
        "added": [],
        "removed": [],
        "instances": {"added": [], "removed": [], "changed": []},
        "networkSecurityGroups": {"changed": []},
    }
    assert api.fake.instances() == before
    assert api.fake.calls == [(verb, "web", 0)]


async def test_a_port_range_too_small_is_409_and_changes_nothing(api: Served) -> None:
    before = api.fake.instances()
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 11})
    assert got.status == 409
    assert got.error["code"] == "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"
    assert api.fake.instances() == before
    got = await api.request("PUT", "/v1/scale-sets/web/capacity", {"capacity": 3})
    assert got.json()["instances"]["added"] == ["web/2"]  # the refusal used no id
