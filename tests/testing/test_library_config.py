"""The library's ``config`` mapping takes ``lbsim.toml``'s keys: ``faults`` set from the
start, ``links`` to local copies of linked templates, and a setting under its older alias
(``metrics_port``). What it cannot take is a clear error naming the key."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import lbsim
from lbsim.api.library import _config_args
from lbsim.dataplane.faults import Target, make_fault
from lbsim.errors import ConfigError

TOPOLOGY = Path(__file__).with_name("topology.json")
OFFICE = {"127.0.0.1": "203.0.113.7"}  # the NSG allows SSH from 203.0.113.0/24 only
SLOW = {
    "name": "slow-web1",
    "type": "latency",
    "attributes": {"latency": 300},
    "target": {"instance": "web/1"},
}


def _config(**more: Any) -> dict[str, Any]:
    return {"port_map": "ephemeral", "sources": OFFICE, **more}


def _first_byte_after(address: tuple[str, int]) -> float:
    started = time.monotonic()
    with socket.create_connection(address, timeout=5) as sock:
        assert sock.recv(200).startswith(b"SSH-2.0-")
    return time.monotonic() - started


def test_faults_in_the_config_are_set_from_the_start() -> None:
    with lbsim.run_in_thread(TOPOLOGY, config=_config(faults=[SLOW])) as lb:
        assert [f["name"] for f in lb.faults()] == ["slow-web1"]
        assert _first_byte_after(lb.endpoint("web", 1, 22)) >= 0.25  # 300 ms, less timer slack
        assert _first_byte_after(lb.endpoint("web", 0, 22)) < 0.25


def test_a_fault_object_is_taken_as_well() -> None:
    down = make_fault("down", name="web0-down", target=Target(instance="web/0"))
    with lbsim.run_in_thread(TOPOLOGY, config=_config(faults=(down, SLOW))) as lb:
        assert [f["name"] for f in lb.faults()] == ["web0-down", "slow-web1"]


@pytest.mark.parametrize(
    ("faults", "code", "says"),
    [
        ([{"type": "latency", "attributes": {"latency": -1}}], "InvalidFault", "faults[0]"),
        ([SLOW, SLOW], "FaultAlreadyExists", "faults[1]: a fault named 'slow-web1' is set"),
        ({"type": "down"}, "InvalidConfigFile", "faults is an array of tables"),
    ],
)
def test_a_bad_fault_in_the_config_is_a_clear_error(faults: Any, code: str, says: str) -> None:
    with (
        pytest.raises(ConfigError) as caught,
        lbsim.run_in_thread(TOPOLOGY, config=_config(faults=faults)),
    ):
        pass
    assert caught.value.code == code
    assert str(caught.value).startswith(f"{code}: config: faults")
    assert says in str(caught.value)


def test_links_in_the_config_name_the_local_copy(tmp_path: Path) -> None:
    url = "https://templates.example.com/lb/azuredeploy.json"
    deployment = {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2022-09-01",
        "name": "linked",
        "properties": {
            "mode": "Incremental",
            "templateLink": {"uri": url + "?sv=2022-11-02&sig=abc%3D"},  # a SAS token's '='
            "parameters": {"instanceCount": {"value": 1}},
        },
    }
    root = tmp_path / "root.json"
    schema = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    doc = {"$schema": schema, "contentVersion": "1.0.0.0", "resources": [deployment]}
    root.write_text(json.dumps(doc), encoding="utf-8")
    links = {url + "?sv=2022-11-02&sig=abc%3D": str(TOPOLOGY)}
    with lbsim.run_in_thread(root, config=_config(links=links)) as lb:
        assert [row["name"] for row in lb.instances()] == ["web/0"]
        lb.assert_reachable("web", 0, 22)


def test_metrics_port_is_the_api_port_s_alias() -> None:
    with lbsim.run_in_thread(TOPOLOGY, config=_config(metrics_port=0)) as lb:
        assert lb.api_url is not None
        with urllib.request.urlopen(lb.api_url + "/healthz", timeout=5) as answer:
            assert answer.status == 200


@pytest.mark.parametrize(
    ("config", "code", "says"),
    [
        ({"api_port": 0, "metrics_port": 0}, "InvalidSetting", "api_port and metrics_port set"),
        ({"sources": "127.0.0.1=203.0.113.7"}, "InvalidSetting", "sources is a mapping, not str"),
        ({"links": ["a"]}, "InvalidSetting", "links is a mapping, not list"),
        ({"backends": {"web": {"pattern": "x"}}}, "InvalidSetting", "backends.web is dict"),
        ({"sources": {"a=b": "c"}}, "InvalidSetting", "sources: 'a=b' holds '='"),
        ({"log_flow": True}, "UnknownConfigKey", "unknown key 'log_flow'"),
    ],
)
def test_what_the_mapping_cannot_take_is_a_clear_error(
    config: dict[str, Any], code: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _config_args(config)
    assert caught.value.code == code
    assert says in str(caught.value)
