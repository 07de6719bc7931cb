"""The live load balancer through the Python API (``lbsim.serve``, ``lbsim.run_in_thread``)
and through the control API over HTTP, on the SSH example: after every change the live
listeners, the handle's ports and the pure plan agree; freed ports are reused; a stream on
an untouched instance survives; a stopped instance's port resets; an invalid reload keeps
the old plan."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trio

import lbsim
from lbsim.api.session import Session
from lbsim.control.diff import listen_table
from lbsim.errors import LbsimError, TemplateInvalid

EXAMPLE = Path(__file__).parents[2] / "arm-examples" / "vmss-linux-ssh"
FRONTEND = "127.77.0.1"
SOURCES = {"127.0.0.0/8": "203.0.113.0/24"}  # presented inside the NSG's allowed range


def _config(**more: Any) -> dict[str, Any]:
    return {"frontends": {"web-lb/public": FRONTEND}, "sources": SOURCES, **more}


def _serve(template: Path = EXAMPLE / "azuredeploy.json", **more: Any) -> Any:
    return lbsim.serve(
        template, parameters=EXAMPLE / "azuredeploy.parameters.json", config=_config(**more)
    )


RESET = b"<reset>"  # what _banner gives for a connection that is reset (b"" for a FIN)


async def _banner(host: str, port: int) -> bytes:
    """The first bytes the server sends; b"" if it closes quietly, RESET if it resets."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            try:
                return bytes(await stream.receive_some(200))
            except trio.BrokenResourceError:
                return RESET


def _nat_ports(lb: Session) -> dict[str, int]:
    return {row["backend"]: row["frontendPort"] for row in lb.ports() if "instanceId" in row}


def _agree(lb: Session) -> None:
    """The live listeners are exactly the running plan's."""
    assert {listener.key for listener in lb.runtime.listeners} == set(listen_table(lb.plan))


async def test_scale_out_and_in_reuse_freed_ports_and_leave_other_flows_alone() -> None:
    async with _serve() as lb:
        assert _nat_ports(lb) == {"web/0": 50000, "web/1": 50001, "web/2": 50002}
        kept = await trio.open_tcp_stream(*lb.endpoint("web", 0, 22))
        async with kept:
            assert (await kept.receive_some(200)).startswith(b"SSH-2.0-lbsim_web_0")
            report = await lb.delete("web", 1)
            assert report.instances_removed == ("web/1",)
            assert [r["frontendPort"] for r in report.removed] == [50001]
            _agree(lb)
            report = await lb.scale("web", 4)  # ids 3 and 4: 3 takes the freed 50001
            assert report.instances_added == ("web/3", "web/4")
            assert _nat_ports(lb) == {
                "web/0": 50000,
                "web/2": 50002,
                "web/3": 50001,
                "web/4": 50003,
            }
            _agree(lb)
            assert (await _banner(FRONTEND, 50001)).startswith(b"SSH-2.0-lbsim_web_3")
            await lb.scale("web", 2)  # Default policy: the highest ids go
            assert sorted(_nat_ports(lb)) == ["web/0", "web/2"]
            _agree(lb)
            with pytest.raises(OSError, match="failed"):  # refused: nobody listens
                await trio.open_tcp_stream(FRONTEND, 50003)
            # the stream opened before all of it is still open: no reset, no end (its SSH
            # server answers the client's identification line with its key exchange)
            await kept.send_all(b"SSH-2.0-still_here\r\n")
            with trio.fail_after(5):
                assert await kept.receive_some(10)


async def test_stop_resets_new_connections_and_start_brings_the_instance_back() -> None:
    async with _serve() as lb:
        await lb.stop("web", 2)
        assert [i["state"] for i in lb.instances() if i["name"] == "web/2"] == ["stopped"]
        assert _nat_ports(lb)["web/2"] == 50002  # it keeps its port
        assert await _banner(FRONTEND, 50002) == RESET  # it listens, and resets (live.md)
        await lb.start("web", 2)
        assert (await _banner(FRONTEND, 50002)).startswith(b"SSH-2.0-lbsim_web_2")
        await lb.restart("web", 2)
        assert (await _banner(FRONTEND, 50002)).startswith(b"SSH-2.0-lbsim_web_2")


async def test_refused_changes_change_nothing() -> None:
    async with _serve() as lb:
        before = lb.ports()
        with pytest.raises(LbsimError) as unknown:
            await lb.scale("nope", 2)
        assert unknown.value.code == "ResourceNotFound"
        with pytest.raises(LbsimError) as missing:
            await lb.stop("web", 9)
        assert missing.value.code == "ResourceNotFound"
        with pytest.raises(LbsimError) as full:
            await lb.scale("web", 121)  # 50000-50119 holds 120
        assert full.value.code == "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"
        assert lb.ports() == before
        _agree(lb)
        report = await lb.scale("web", 4)  # the refusals used no id and no port
        assert report.instances_added == ("web/3",)
        assert [(e["backend"], e["frontendPort"]) for e in report.added] == [("web/3", 50003)]
        assert _nat_ports(lb)["web/3"] == 50003
        _agree(lb)


async def test_reload_applies_a_changed_nsg_to_new_flows_and_refuses_an_invalid_template(
    tmp_path: Path,
) -> None:
    template = tmp_path / "azuredeploy.json"
    shutil.copy(EXAMPLE / "azuredeploy.json", template)
    async with _serve(template) as lb:
        assert lb.check(source="203.0.113.7", frontend_port=50000)["access"] == "Allow"
        kept = await trio.open_tcp_stream(FRONTEND, 50000)
        async with kept:
            await kept.receive_some(200)
            text = template.read_text().replace('"Allow"', '"Deny"', 1)
            template.write_text(text)
            report = await lb.reload()
            assert report.nsgs_changed
            assert lb.check(source="203.0.113.7", frontend_port=50000)["access"] == "Deny"
            assert await _banner(FRONTEND, 50001) == RESET  # new flows: denied (deny_mode reset)
            await kept.send_all(b"x")  # the open flow stays open
            with trio.move_on_after(0.3) as waited:
                await kept.receive_some(10)
            assert waited.cancelled_caught
            template.write_text("{ not json")
            with pytest.raises(TemplateInvalid) as invalid:
                await lb.reload()
            assert [p.code for p in invalid.value.problems] == ["InvalidTemplate"]
            assert [p.document for p in invalid.value.problems] == [str(template)]
            assert lb.check(source="203.0.113.7", frontend_port=50000)["access"] == "Deny"
            _agree(lb)


async def test_the_control_api_scales_and_answers_in_azures_envelope() -> None:
    async with _serve(api_port=0) as lb:
        base = lb.api_url
        assert base is not None

        def call(method: str, path: str, body: Any = None) -> tuple[int, Any]:
            data = None if body is None else json.dumps(body).encode()
            request = urllib.request.Request(base + path, data=data, method=method)
            request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as error:
                return error.code, json.loads(error.read())

        status, body = await trio.to_thread.run_sync(
            call, "PUT", "/v1/scale-sets/web/capacity", {"capacity": 4}
        )
        assert status == 200
        assert body["instances"]["added"] == ["web/3"]
        status, listed = await trio.to_thread.run_sync(call, "GET", "/v1/ports")
        ports = listed  # the JSON of lbsim ports -o json
        assert ports == lb.ports()
        assert {p["backend"] for p in ports if p.get("instanceId") is not None} == {
            "web/0",
            "web/1",
            "web/2",
            "web/3",
        }
        status, body = await trio.to_thread.run_sync(
            call, "PUT", "/v1/scale-sets/web/capacity", {"capacity": 4, "extra": 1}
        )
        assert status == 400
        assert body["error"]["code"]
        status, body = await trio.to_thread.run_sync(
            call, "POST", "/v1/scale-sets/web/instances/7/stop"
        )
        assert (status, body["error"]["code"]) == (404, "ResourceNotFound")
        _agree(lb)


def test_run_in_thread_gives_a_synchronous_handle() -> None:
    with lbsim.run_in_thread(
        EXAMPLE / "azuredeploy.json",
        parameters=EXAMPLE / "azuredeploy.parameters.json",
        params={"instanceCount": 2},
        config=_config(),
    ) as lb:
        assert lb.readiness() is None
        host, port = lb.endpoint("web", 1, 22)
        assert (host, port) == (FRONTEND, 50001)
        report = lb.scale("web", 3)
        assert report.instances_added == ("web/2",)
        assert lb.endpoint("web", 2, 22) == (FRONTEND, 50002)
        assert b"lbsim_" in lb.metrics()


def test_run_in_thread_raises_the_template_error() -> None:
    with (
        pytest.raises(TemplateInvalid) as error,
        lbsim.run_in_thread(
            EXAMPLE / "azuredeploy.json", params={"instanceCount": 300}, fill_missing=True
        ),
    ):
        pass
    assert error.value.problems[0].code == "InvalidTemplate"
