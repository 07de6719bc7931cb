"""The bastion tunnels' endpoints of the control API: POST opens (201, the tunnel's JSON),
GET lists, DELETE closes; refusals in Azure's error envelope (no bastion host, an unknown
target, a body that is not a tunnel, an unknown tunnel)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import trio
from vnet_harness import http_get, serving

Answer = tuple[int, Any]
PATH = "/v1/bastion/tunnels"


def _call(url: str, method: str, body: Any = None) -> Answer:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


async def call(base: str | None, method: str, path: str, body: Any = None) -> Answer:
    assert base is not None
    return await trio.to_thread.run_sync(_call, base + path, method, body)


async def test_open_list_use_and_close_a_tunnel(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True, api_port=0) as lb:
        status, made = await call(
            lb.api_url, "POST", PATH, {"target": "vmss/2", "resourcePort": 80}
        )
        assert status == 201
        assert made["target"] == "vmss/2"
        assert made["targetIp"] == "10.0.0.6"
        assert made["bastion"] == "bastion"
        assert (made["resourcePort"], made["listenAddress"]) == (80, "127.0.0.1")
        assert await call(lb.api_url, "GET", PATH) == (200, [made])
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(made["listenAddress"], made["listenPort"])
        async with stream:
            assert (await http_get(stream))["backend"] == "vmss/2"
        assert await call(lb.api_url, "DELETE", f"{PATH}/{made['id']}") == (200, made)
        assert await call(lb.api_url, "GET", PATH) == (200, [])


async def test_without_a_bastion_host_the_answer_is_404_bastion_host_not_found(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path, api_port=0) as lb:
        status, body = await call(
            lb.api_url, "POST", PATH, {"target": "vmss/1", "resourcePort": 22}
        )
    assert status == 404
    assert body["error"]["code"] == "BastionHostNotFound"
    assert "AzureBastionSubnet" in body["error"]["message"]


async def test_refusals_in_azures_envelope(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True, api_port=0) as lb:
        unknown = await call(lb.api_url, "POST", PATH, {"target": "vmss/7", "resourcePort": 22})
        bad = await call(lb.api_url, "POST", PATH, {"target": "vmss/1", "resourcePort": 0, "x": 1})
        missing = await call(lb.api_url, "POST", PATH, {})
        gone = await call(lb.api_url, "DELETE", f"{PATH}/42")
    status, body = unknown
    assert status == 404
    assert body["error"]["code"] == "ResourceNotFound"
    assert body["error"]["target"] == "$.target"
    assert body["error"]["message"].startswith("$.target: vmss/7: no such instance")
    status, body = bad
    assert status == 400
    targets = {d["target"] for d in body["error"]["details"]}
    assert targets == {"$.resourcePort", "$.x"}
    status, body = missing
    assert status == 400
    assert {d["target"] for d in body["error"]["details"]} == {"$.target", "$.resourcePort"}
    status, body = gone
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")


async def test_a_leased_tunnel_is_renewed_by_post_renew(tmp_path: Path) -> None:
    async with serving(tmp_path, bastion=True, api_port=0) as lb:
        body = {"target": "vmss/0", "resourcePort": 22, "leaseSeconds": 15}
        status, made = await call(lb.api_url, "POST", PATH, body)
        assert (status, made["leaseSeconds"]) == (201, 15)
        assert await call(lb.api_url, "POST", f"{PATH}/{made['id']}/renew") == (200, made)
        status, missing = await call(lb.api_url, "POST", f"{PATH}/99/renew")
        assert (status, missing["error"]["code"]) == (404, "ResourceNotFound")
        status, wrong = await call(lb.api_url, "POST", PATH, {**body, "leaseSeconds": 0})
        assert status == 400, wrong
