"""What the control API refuses, in Azure's error envelope: bad bodies (each problem with the
JSON path of its field), invalid instance ids, unknown paths (404), wrong methods (405), a
missing or wrong token (401), and a bug in the handle (500, printed once). A refused request
never reaches the handle's changes."""

from __future__ import annotations

from typing import Any

import pytest
from api_client import TOKEN, Served

CAPACITY = "/v1/scale-sets/web/capacity"


@pytest.mark.parametrize(
    ("body", "target", "message"),
    [
        ({}, "$.capacity", "$.capacity: is required"),
        ({"capacity": "3"}, "$.capacity", "$.capacity: '3' is not of type 'integer'"),
        ({"capacity": 2.5}, "$.capacity", "$.capacity: 2.5 is not of type 'integer'"),
        ({"capacity": True}, "$.capacity", "$.capacity: True is not of type 'integer'"),
        ({"capacity": -1}, "$.capacity", "$.capacity: -1 is less than the minimum of 0"),
        ({"capacity": 1001}, "$.capacity", "$.capacity: 1001 is greater than the maximum"),
        (
            {"capacity": 2, "sku": "x"},
            "$.sku",
            "$.sku: is not a known field; known: capacity",
        ),
        ([2], "$", "$: [2] is not of type 'object'"),
    ],
)
async def test_bad_capacity_bodies_are_400_naming_the_field(
    api: Served, body: Any, target: str, message: str
) -> None:
    got = await api.request("PUT", CAPACITY, body)
    assert got.status == 400
    assert (got.error["code"], got.error["target"]) == ("InvalidRequestContent", target)
    assert got.error["message"].startswith(message)
    assert api.fake.calls == []


async def test_every_problem_of_a_body_is_a_detail(api: Served) -> None:
    body = {"frontendPort": "22", "protocol": 6, "extra": 1}
    got = await api.request("POST", "/v1/check", body)
    assert got.status == 400
    targets = [d["target"] for d in got.error["details"]]
    assert sorted(targets) == ["$.extra", "$.frontendPort", "$.protocol", "$.source"]
    assert {d["code"] for d in got.error["details"]} == {"InvalidRequestContent"}
    assert api.fake.calls == []


@pytest.mark.parametrize(
    ("body", "target", "message"),
    [
        ({"source": "203.0.113.7"}, "$", "give the flow's frontendPort or its destination"),
        (
            {"source": "203.0.113.7", "frontendPort": 22, "destination": "10.0.0.4:22"},
            "$",
            "one of them",
        ),
        ({"source": "203.0.113.7", "frontendPort": 0}, "$.frontendPort", "less than the min"),
        ({"source": "203.0.113.7", "frontendPort": 22, "protocol": "Icmp"}, "$.protocol", "Icmp"),
        ({"source": "", "frontendPort": 22}, "$.source", "should be non-empty"),
    ],
)
async def test_bad_check_bodies(api: Served, body: Any, target: str, message: str) -> None:
    got = await api.request("POST", "/v1/check", body)
    assert (got.status, got.error["code"]) == (400, "InvalidRequestContent")
    assert got.error["target"] == target
    assert message in got.error["message"]
    assert api.fake.calls == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"capacity": 2', "the body is not JSON: Expecting ',' delimiter: line 1 column 15"),
        (b'{"capacity": NaN}', "NaN is not a JSON number"),
        (b'\xff{"capacity": 2}', "the body is not UTF-8 text"),
    ],
)
async def test_a_body_that_is_not_json_is_400(api: Served, raw: bytes, message: str) -> None:
    got = await api.request("PUT", CAPACITY, raw=raw)
    assert got.status == 400
    assert (got.error["code"], got.error["target"]) == ("InvalidRequestContent", "$")
    assert message in got.error["message"]
    assert api.fake.calls == []


async def test_a_huge_body_is_413(api: Served) -> None:
    got = await api.request("PUT", CAPACITY, raw=b" " * (2 << 20))
    assert (got.status, got.error["code"]) == (413, "RequestBodyTooLarge")
    assert api.fake.calls == []


@pytest.mark.parametrize("path", ["/v1/reload", "/v1/scale-sets/web/instances/0/restart"])
async def test_actions_take_no_fields(api: Served, path: str) -> None:
    got = await api.request("POST", path, {"force": True})
    assert (got.status, got.error["target"]) == (400, "$.force")
    assert api.fake.calls == []


@pytest.mark.parametrize("instance_id", ["-1", "one", "1.5", "%C2%B2", "1234567890"])
async def test_instance_ids_are_non_negative_integers(api: Served, instance_id: str) -> None:
    got = await api.request("POST", f"/v1/scale-sets/web/instances/{instance_id}/stop")
    assert got.status == 400
    assert (got.error["code"], got.error["target"]) == ("InvalidParameter", "instanceId")
    got = await api.request("DELETE", f"/v1/scale-sets/web/instances/{instance_id}")
    assert (got.status, got.error["code"]) == (400, "InvalidParameter")
    assert api.fake.calls == []


@pytest.mark.parametrize(
    "path", ["/", "/v1", "/v1/port", "/v1/scale-sets/web", "/v1/scale-sets/web/instances/0/x"]
)
async def test_unknown_paths_are_404(api: Served, path: str) -> None:
    got = await api.request("GET", path)
    assert (got.status, got.error["code"], got.error["target"]) == (404, "NotFound", path)


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v1/ports", "GET"),
        ("GET", "/v1/reload", "POST"),
        ("POST", CAPACITY, "PUT"),
        ("PUT", "/v1/scale-sets/web/instances/0", "DELETE"),
        ("DELETE", "/metrics", "GET"),
    ],
)
async def test_a_wrong_method_is_405_with_allow(
    api: Served, method: str, path: str, allow: str
) -> None:
    got = await api.request(method, path, raw=b"{}")
    assert (got.status, got.error["code"]) == (405, "MethodNotAllowed")
    assert got.headers["allow"] == allow
    assert api.fake.calls == []


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"]
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/metrics"), ("GET", "/readyz"), ("GET", "/v1/ports"), ("POST", "/v1/reload")],
)
async def test_a_token_is_required_everywhere_but_healthz(
    secured: Served, authorization: str | None, method: str, path: str
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    got = await secured.request(method, path, headers=headers)
    assert (got.status, got.error["code"]) == (401, "AuthenticationFailed")
    assert got.headers["www-authenticate"].startswith("Bearer")
    assert secured.fake.calls == []
    got = await secured.request("GET", "/healthz", headers=headers)
    assert got.status == 200


async def test_the_right_token_is_let_in(secured: Served) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    got = await secured.request("POST", "/v1/reload", headers=headers)
    assert got.status == 200
    got = await secured.request("GET", "/metrics", headers={"authorization": f"bearer {TOKEN}"})
    assert got.status == 200
    assert secured.fake.calls == [("reload",)]


async def test_a_bug_in_the_handle_is_a_500_printed_once(
    api: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    api.fake.broken = True
    got = await api.request("GET", "/v1/instances")
    assert (got.status, got.error["code"]) == (500, "InternalError")
    assert "RuntimeError" in got.error["message"]
    assert "the fake is broken on purpose" not in got.body.decode()  # no internals leak
    err = capsys.readouterr().err
    assert err.count("lbsim: InternalError: control API, GET /v1/instances:") == 1
    assert err.count("RuntimeError: the fake is broken on purpose") == 1
    api.fake.broken = False
    assert (await api.request("GET", "/v1/instances")).status == 200  # still serving
