"""Settings that are accepted but cannot work with the template loaded: ``lbsim up`` warns
(a --backend for no scale set or VM, a frontend or control API off loopback) or refuses
(more public frontends than loopback addresses can number) when its Session starts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from templates import PIP, SCHEMA, vmss_behind_lb

from lbsim.api.config import resolve
from lbsim.api.session import Session
from lbsim.api.source import Source
from lbsim.cli import build_parser
from lbsim.dataplane.events import discard
from lbsim.errors import Problem, TemplateInvalid


def session(tmp_path: Path, doc: dict[str, Any], *flags: str) -> Session:
    """A Session of ``doc`` under ``lbsim up t.json FLAGS`` (nothing bound: run() binds)."""
    template = tmp_path / "t.json"
    template.write_text(json.dumps(doc), encoding="utf-8")
    config = resolve(build_parser().parse_args(["up", str(template), *flags]), {})
    return Session(Source.of(template), config, discard)


def ours(problems: tuple[Problem, ...]) -> dict[str, str]:
    codes = ("BackendNotInTemplate", "FrontendNotLoopback", "ApiNotLoopback")
    return {p.code: p.message for p in problems if p.code in codes}


def test_defaults_warn_of_nothing(tmp_path: Path) -> None:
    assert ours(session(tmp_path, vmss_behind_lb(2)).warnings) == {}


def test_a_backend_for_no_scale_set_or_vm_is_a_warning(tmp_path: Path) -> None:
    found = session(tmp_path, vmss_behind_lb(2), "--backend", "webx=127.0.0.1:{2200+instance}")
    warning = next(p for p in found.warnings if p.code == "BackendNotInTemplate")
    assert warning.severity.value == "warning"
    assert warning.message == (
        "backends.webx names no scale set or virtual machine of the template, so it serves "
        "nothing (scale sets: vmss; virtual machines: none)."
    )


@pytest.mark.parametrize("name", ["vmss", "VMSS", "vmss_1"])
def test_a_backend_for_a_scale_set_or_an_instance_is_not(tmp_path: Path, name: str) -> None:
    found = session(tmp_path, vmss_behind_lb(2), "--backend", f"{name}=127.0.0.1:2200")
    assert ours(found.warnings) == {}


def test_a_frontend_off_loopback_says_what_is_exposed(tmp_path: Path) -> None:
    found = session(tmp_path, vmss_behind_lb(3), "--frontend", "fe=0.0.0.0")
    assert ours(found.warnings) == {
        "FrontendNotLoopback": "the frontend lb/fe listens on 0.0.0.0, not loopback: its 3 "
        "ports (50000-50002) are reachable from other hosts, and the NSGs judge them by "
        "their own addresses (unless --source maps them)."
    }


@pytest.mark.parametrize("address", ["127.0.0.9", "::1", "localhost"])
def test_a_frontend_on_loopback_is_not(tmp_path: Path, address: str) -> None:
    found = session(tmp_path, vmss_behind_lb(1), "--frontend", f"fe={address}")
    assert ours(found.warnings) == {}


def test_the_api_off_loopback_says_what_is_exposed(tmp_path: Path) -> None:
    flags = ("--api-address", "0.0.0.0", "--api-token", "tok-3x4mpl3")
    message = ours(session(tmp_path, vmss_behind_lb(1), *flags).warnings)["ApiNotLoopback"]
    assert message.startswith("the control API on 0.0.0.0 is reachable from other hosts: ")
    assert "/healthz answers anyone" in message
    assert "tok-3x4mpl3" not in message


def test_the_api_off_loopback_but_off_is_not(tmp_path: Path) -> None:
    flags = ("--api-address", "0.0.0.0", "--api-token", "t", "--api-port", "off")
    assert ours(session(tmp_path, vmss_behind_lb(1), *flags).warnings) == {}


def frontends(count: int) -> dict[str, Any]:
    """``count`` public IPs, each the frontend of one load balancer."""
    pip = {
        "type": PIP,
        "apiVersion": "2023-09-01",
        "name": "[concat('pip', copyIndex())]",
        "location": "westeurope",
        "sku": {"name": "Standard"},
        "properties": {"publicIPAllocationMethod": "Static"},
        "copy": {"name": "pips", "count": count},
    }
    fe = {
        "name": "[concat('fe', copyIndex('frontendIPConfigurations'))]",
        "properties": {
            "publicIPAddress": {
                "id": "[resourceId('Microsoft.Network/publicIPAddresses', "
                "concat('pip', copyIndex('frontendIPConfigurations')))]"
            }
        },
    }
    lb = {
        "type": "Microsoft.Network/loadBalancers",
        "apiVersion": "2023-09-01",
        "name": "lb",
        "location": "westeurope",
        "sku": {"name": "Standard"},
        "dependsOn": ["pips"],
        "properties": {"copy": [{"name": "frontendIPConfigurations", "count": count, "input": fe}]},
    }
    return {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "resources": [pip, lb]}


def test_more_public_frontends_than_loopback_numbers_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TemplateInvalid) as caught:
        session(tmp_path, frontends(300))
    problem = caught.value.problems[0]
    assert problem.code == "TooManyPublicIPAddresses"
    assert problem.file == str(tmp_path / "t.json")
    assert str(problem.at) == "/resources/0"  # the public IPs' copy
    assert "the template has 300 public IP addresses" in problem.message
    assert "no address for 'pip255' (of frontend lb/fe255; 45 frontend(s) in all)" in (
        problem.message
    )


def test_as_many_public_frontends_as_can_be_numbered_start(tmp_path: Path) -> None:
    found = session(tmp_path, frontends(255))
    assert len(found.plan.frontends) == 255
