"""Protection from scale-in through the control API and the CLI (over a FakeHandle):
``PUT /v1/scale-sets/{name}/instances/{id}/protection`` with Azure's ``protectFromScaleIn``,
its closed body, and ``lbsim instance protect|unprotect``."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import trio
from api_client import Served

from lbsim.cli import main

PROTECTION = "/v1/scale-sets/web/instances/1/protection"


async def test_protect_and_unprotect_answer_what_changed(api: Served) -> None:
    got = await api.request("PUT", PROTECTION, {"protectFromScaleIn": True})
    assert (got.status, got.json()["instances"]["changed"]) == (200, ["web/1"])
    assert api.fake.instance("web", 1).protected
    listed = (await api.request("GET", "/v1/instances")).json()
    assert [i["protectFromScaleIn"] for i in listed if i["scaleSet"] == "web"] == [False, True]
    again = await api.request("PUT", PROTECTION, {"protectFromScaleIn": True})
    assert again.json()["instances"]["changed"] == []  # already protected: no change
    got = await api.request("PUT", PROTECTION, {"protectFromScaleIn": False})
    assert got.json()["instances"]["changed"] == ["web/1"]
    assert api.fake.calls == [("protect", "web", 1, on) for on in (True, True, False)]


@pytest.mark.parametrize(
    ("body", "target", "message"),
    [
        ({}, "$.protectFromScaleIn", "$.protectFromScaleIn: is required"),
        ({"protectFromScaleIn": "yes"}, "$.protectFromScaleIn", "$.protectFromScaleIn: 'yes' is"),
        (
            {"protectFromScaleIn": True, "protectFromScaleSetActions": True},
            "$.protectFromScaleSetActions",
            "$.protectFromScaleSetActions: is not a known field; known: protectFromScaleIn",
        ),
    ],
)
async def test_a_bad_protection_body_is_400_and_changes_nothing(
    api: Served, body: Any, target: str, message: str
) -> None:
    got = await api.request("PUT", PROTECTION, body)
    assert got.status == 400
    assert (got.error["code"], got.error["target"]) == ("InvalidRequestContent", target)
    assert got.error["message"].startswith(message)
    assert api.fake.calls == []


async def test_protecting_an_unknown_instance_is_404(api: Served) -> None:
    got = await api.request(
        "PUT", "/v1/scale-sets/web/instances/9/protection", {"protectFromScaleIn": True}
    )
    assert (got.status, got.error["code"]) == (404, "ResourceNotFound")
    got = await api.request("POST", PROTECTION, {"protectFromScaleIn": True})
    assert (got.status, got.error["code"]) == (405, "MethodNotAllowed")


async def _lbsim(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(partial(main, list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


async def test_instance_protect_and_unprotect_verbs(
    api: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await _lbsim(capsys, "instance", "protect", "web", "1", "--api", api.url)
    assert (code, err) == (0, "")
    assert out.splitlines() == ["lbsim: protect web/1: 1 instance changed", "  ~ instance web/1"]
    code, out, _ = await _lbsim(capsys, "instance", "unprotect", "db", "0", "--api", api.url)
    assert (code, out.splitlines()[0]) == (0, "lbsim: unprotect db/0: no change")
    assert api.fake.calls == [("protect", "web", 1, True), ("protect", "db", 0, False)]
    code, _, err = await _lbsim(capsys, "instance", "protect", "web", "7", "--api", api.url)
    assert code == 2
    assert err == (
        "lbsim: ResourceNotFound: The scale set 'web' has no instance 7 (instances: 0, 1).\n"
    )
