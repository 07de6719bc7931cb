"""Faults through every surface of a live lbsim (the SSH example, three instances): the control
API (``GET/POST /v1/faults``, ``DELETE /v1/faults/{name}``, bad bodies in Azure's error
envelope), the Python API's context managers, the config file's ``[[faults]]`` and the CLI's
``lbsim fault add|rm|list``."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

import lbsim
from lbsim.api.session import Session
from lbsim.cli import main
from lbsim.errors import ConfigError, LbsimError

EXAMPLE = Path(__file__).parents[2] / "arm-examples" / "vmss-linux-ssh"
FRONTEND = "127.77.12.1"
SOURCES = {"127.0.0.0/8": "203.0.113.0/24"}  # presented inside the NSG's allowed range
CONFIG: dict[str, Any] = {"frontends": {"web-lb/public": FRONTEND}, "sources": SOURCES}


def _serve(config: Any = None, **more: Any) -> Any:
    return lbsim.serve(
        EXAMPLE / "azuredeploy.json",
        parameters=EXAMPLE / "azuredeploy.parameters.json",
        config=config or {**CONFIG, **more},
    )


async def _http(url: str, method: str, body: Any = None) -> tuple[int, Any]:
    def call() -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())

    return await trio.to_thread.run_sync(call)


async def _banner_after(lb: Session, instance: int) -> float:
    """How long the instance's SSH banner takes through its NAT port."""
    started = trio.current_time()
    with trio.fail_after(10):  # generous: the bounds are the callers'
        stream = await trio.open_tcp_stream(*lb.endpoint("web", instance, 22))
        async with stream:
            assert (await stream.receive_some(200)).startswith(b"SSH-2.0-lbsim_web_")
    return trio.current_time() - started


async def test_add_list_and_remove_through_the_control_api() -> None:
    async with _serve(api_port=0) as lb:
        url = f"{lb.api_url}/v1/faults"
        body = {"type": "latency", "attributes": {"latency": 1000}, "target": {"instance": "web/1"}}
        status, made = await _http(url, "POST", body)
        assert status == 200
        assert made == {
            "name": "latency_downstream",
            "type": "latency",
            "stream": "downstream",
            "toxicity": 1.0,
            "seed": made["seed"],
            "attributes": {"latency": 1000, "jitter": 0},
            "target": {"instance": "web/1"},
        }
        assert await _http(url, "GET") == (200, [made])
        assert await _banner_after(lb, 1) >= 1.0
        assert await _banner_after(lb, 0) < 0.5  # not the second the latency adds
        assert await _http(f"{url}/latency_downstream", "DELETE") == (200, made)
        assert await _http(url, "GET") == (200, [])
        assert await _banner_after(lb, 1) < 0.5
        status, gone = await _http(f"{url}/latency_downstream", "DELETE")
        assert (status, gone["error"]["code"]) == (404, "ResourceNotFound")


@pytest.mark.parametrize(
    ("body", "status", "code", "target"),
    [
        ({"type": "latency", "color": "red"}, 400, "InvalidRequestContent", "$.color"),
        ({"type": "lag"}, 400, "InvalidRequestContent", "$.type"),
        ({"type": "latency", "toxicity": 2}, 400, "InvalidRequestContent", "$.toxicity"),
        ({"type": "bandwidth"}, 400, "InvalidRequestContent", "$.attributes.rate"),
        (
            {"type": "latency", "attributes": {"rate": 5}},
            400,
            "InvalidRequestContent",
            "$.attributes.rate",
        ),
        (
            {"type": "latency", "attributes": {"latency": -5}},
            400,
            "InvalidRequestContent",
            "$.attributes.latency",
        ),
        ({"type": "down", "toxicity": 0.5}, 400, "InvalidRequestContent", "$.toxicity"),
        ({"type": "down", "target": {"instance": "web/9"}}, 404, "ResourceNotFound", None),
        ({"type": "down", "target": {"rule": "nope"}}, 404, "ResourceNotFound", None),
        ({"type": "down", "target": {"frontendPort": 1}}, 404, "ResourceNotFound", None),
    ],
)
async def test_bad_bodies_are_refused_naming_the_field(
    body: dict[str, Any], status: int, code: str, target: str | None
) -> None:
    async with _serve(api_port=0) as lb:
        got, answer = await _http(f"{lb.api_url}/v1/faults", "POST", body)
        assert (got, answer["error"]["code"]) == (status, code)
        expected = target or "$.target." + next(iter(body["target"]))
        assert answer["error"]["target"] == expected
        assert lb.faults() == []


async def test_a_name_set_twice_is_a_conflict() -> None:
    async with _serve(api_port=0) as lb:
        url = f"{lb.api_url}/v1/faults"
        assert (await _http(url, "POST", {"name": "x", "type": "down"}))[0] == 200
        status, answer = await _http(url, "POST", {"name": "x", "type": "latency"})
        assert (status, answer["error"]["code"]) == (409, "FaultAlreadyExists")


async def test_the_context_manager_removes_its_fault_on_exit() -> None:
    async def failing(lb: Session) -> None:
        async with lb.fault("latency", latency=1000, instance="web/2") as made:
            assert lb.faults() == [made]
            assert await _banner_after(lb, 2) >= 1.0
            raise RuntimeError("the test's own failure")

    async with _serve() as lb:
        with pytest.raises(RuntimeError, match="the test's own failure"):
            await failing(lb)
        assert lb.faults() == []
        assert await _banner_after(lb, 2) < 0.5


async def test_the_python_api_refuses_what_no_fault_can_be() -> None:
    async with _serve() as lb:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("latency", {"latency": float("inf")}, "/attributes/latency"),
            ("bandwidth", {"rate": float("nan")}, "/attributes/rate"),
            ("down", {"toxicity": 0.5, "instance": "web/0"}, "/toxicity"),
        ]
        for kind, options, at in cases:
            with pytest.raises(LbsimError) as error:
                lb.add_fault(kind, **options)
            assert (error.value.code, str(error.value.at)) == ("InvalidFault", at)
        assert lb.faults() == []


def test_the_threaded_handle_has_the_same_faults() -> None:
    with lbsim.run_in_thread(
        EXAMPLE / "azuredeploy.json",
        parameters=EXAMPLE / "azuredeploy.parameters.json",
        config=CONFIG,
    ) as lb:
        with lb.fault("down", name="crash", instance="web/0"):
            assert [f["name"] for f in lb.faults()] == ["crash"]
        assert lb.faults() == []


def _toml(tmp_path: Path, faults: str) -> Path:
    path = tmp_path / "lbsim.toml"
    path.write_text(
        f'api_port = "off"\nlog_flows = false\n[frontends]\n"web-lb/public" = "{FRONTEND}"\n'
        f'[sources]\n"127.0.0.0/8" = "203.0.113.0/24"\n{faults}',
        encoding="utf-8",
    )
    return path


async def test_config_file_faults_are_set_from_the_start(tmp_path: Path) -> None:
    faults = (
        '[[faults]]\nname = "slow"\ntype = "latency"\nattributes = { latency = 150 }\n'
        'target = { instance = "web/0" }\n'
    )
    async with _serve(str(_toml(tmp_path, faults))) as lb:
        assert [f["name"] for f in lb.faults()] == ["slow"]
        assert await _banner_after(lb, 0) >= 0.15


def test_a_bad_config_fault_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[[faults]]\ntype = "latency"\nattributes = { lag = 1 }\n')
    with pytest.raises(ConfigError) as error:
        lbsim.api.config.resolve(lbsim.api.library._config_args(str(path)), {})
    assert error.value.code == "InvalidFault"
    assert error.value.message.startswith(f"{path}: faults[0].attributes.lag: is not a known")


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(partial(main, list(argv)))
    out, err = capsys.readouterr()
    return code, out, err


async def test_the_cli_adds_lists_and_removes_faults(capsys: pytest.CaptureFixture[str]) -> None:
    async with _serve(api_port=0) as lb:
        api = ("--api", str(lb.api_url))
        code, out, err = await _cli(
            capsys, "fault", "add", "-t", "latency", "-a", "latency=150", "--rule", "ssh", *api
        )
        assert (code, err) == (0, "")
        assert out.startswith("fault latency_downstream added: latency downstream")
        assert await _banner_after(lb, 0) >= 0.15
        code, out, _ = await _cli(capsys, "fault", "list", "-o", "json", *api)
        assert (code, [f["name"] for f in json.loads(out)]) == (0, ["latency_downstream"])
        code, out, _ = await _cli(capsys, "fault", "rm", "latency_downstream", *api)
        assert (code, out.startswith("fault latency_downstream removed")) == (0, True)
        code, out, err = await _cli(capsys, "fault", "rm", "latency_downstream", *api)
        assert code == 2
        assert err.startswith("lbsim: ResourceNotFound: no fault named 'latency_downstream'")
        code, _, err = await _cli(capsys, "fault", "add", "-a", "latency=x", "-t", "latency", *api)
        assert (code, err.split(":")[1].strip()) == (2, "InvalidArgument")


async def test_the_cli_takes_a_fault_name_as_n_or_positional(
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with _serve(api_port=0) as lb:
        api = ("--api", str(lb.api_url))
        code, out, err = await _cli(
            capsys, "fault", "add", "-n", "crash", "-t", "down", "--instance", "web/2", *api
        )
        assert (code, err, out.startswith("fault crash added: down")) == (0, "", True)
        code, out, _ = await _cli(capsys, "fault", "add", "slow", "-t", "latency", *api)
        assert (code, out.startswith("fault slow added: latency")) == (0, True)
        assert [f["name"] for f in lb.faults()] == ["crash", "slow"]
        code, _, err = await _cli(capsys, "fault", "add", "a", "--name", "b", "-t", "down", *api)
        assert (code, err) == (2, "lbsim: InvalidArgument: lbsim fault: two names, 'a' and 'b'\n")
        code, out, _ = await _cli(capsys, "fault", "rm", "--name", "crash", *api)
        assert (code, out.startswith("fault crash removed")) == (0, True)
        code, _, err = await _cli(
            capsys, "fault", "add", "-t", "latency", "-a", "latency=inf", *api
        )
        assert (code, err.split(":")[1].strip()) == (2, "InvalidArgument")
        assert [f["name"] for f in lb.faults()] == ["slow"]


def test_the_cli_refuses_a_toxicity_json_cannot_carry(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as usage:
        main(["fault", "add", "-t", "loss", "--toxicity", "nan"])
    assert usage.value.code == 2
    assert "--toxicity: 'nan' is not a finite number" in capsys.readouterr().err
