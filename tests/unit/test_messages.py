"""Messages a user can act on: every warning's pointer names a node of the template, even
inside lists that copy loops, variables or expressions made; floating IP changes the
destination the NSGs judge; every option of every command says what it does."""

from __future__ import annotations

import argparse
import copy
from typing import Any

from templates import (
    ip_configuration,
    lb_rule,
    load_balancer,
    network_interface,
    nsg,
    plan_of,
    public_ip,
    scale_set,
    security_rule,
    subnet,
    template,
    vnet,
)

from lbsim.api.config import SETTINGS
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.cli import build_parser
from lbsim.control.check import check_balancing, find_entry
from lbsim.control.plan import plan
from lbsim.control.types import BalancingEntry
from lbsim.model import TransportProtocol
from lbsim.pointer import Pointer

OUTSIDE = "/subscriptions/x/resourceGroups/other/providers/Microsoft.Network/virtualNetworks/v"


def resolve(doc: Any, at: Pointer) -> Any:
    """The node ``at`` points at (property names in any letter case, as Azure reads them);
    KeyError, IndexError or ValueError when there is none."""
    node = doc
    for part in at:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict):
            key = next(k for k in node if k.lower() == part.lower()) if part not in node else part
            node = node[key]
        else:
            raise KeyError(part)
    return node


def _outside_ipconfig(name: str) -> dict[str, Any]:
    """An ipConfiguration in a subnet the template does not deploy."""
    ipc = ip_configuration(name)
    ipc["properties"]["subnet"] = {"id": f"{OUTSIDE}/subnets/s"}
    return ipc


def lists_everywhere() -> dict[str, Any]:
    """A template whose warnings come from list items written out, made by a property copy
    loop, taken from a variable, and built by an expression."""
    rule = security_rule("tagged", 100, source="LbsimNoSuchTag")
    looped = nsg("looped")
    looped["properties"] = {
        "copy": [
            {
                "name": "securityRules",
                "count": 2,
                "input": {
                    "name": "[concat('r', copyIndex('securityRules'))]",
                    "properties": {
                        **rule["properties"],
                        "priority": "[add(100, copyIndex('securityRules'))]",
                    },
                },
            }
        ]
    }
    built = nsg("built")
    built["properties"]["securityRules"] = "[createArray(union(variables('rule'), json('{}')))]"
    copied = network_interface("copied")
    copied["properties"] = {
        "copy": [{"name": "ipConfigurations", "count": 2, "input": _outside_ipconfig("c")}]
    }
    from_variable = network_interface("from-variable")
    from_variable["properties"]["ipConfigurations"] = "[variables('ipconfigs')]"
    made = network_interface("made")
    made["properties"]["ipConfigurations"] = (
        "[createArray(union(variables('ipconfigs')[0], json('{}')))]"
    )
    vmss_ipc = _outside_ipconfig("vmss-ip")
    vmss_ipc["properties"]["publicIPAddressConfiguration"] = {
        "name": "pub",
        "sku": {"name": "Standard"},  # closed, and no NSG guards the scale set: it says so
        "properties": {},
    }
    return template(
        nsg("plain", rule),
        looped,
        built,
        public_ip(),
        public_ip("pip2"),
        vnet(),
        network_interface("plain", ip_configuration("a"), _outside_ipconfig("b")),
        copied,
        from_variable,
        made,
        scale_set("vmss", 1, vmss_ipc),
        variables={"rule": rule, "ipconfigs": [_outside_ipconfig("v0"), _outside_ipconfig("v1")]},
    )


def test_every_warning_points_at_a_node_of_the_template() -> None:
    doc = lists_everywhere()
    original = copy.deepcopy(doc)
    deployment = load_template(doc, "t.json", LoadOptions())
    warnings = [*deployment.warnings, *plan(deployment).warnings]
    codes = {w.code for w in warnings}
    assert {
        "LbsimServiceTagNotEmulated",
        "ReferenceOutsideTemplate",
        "SubnetOutsideTemplate",
        "InstancePublicIPAdmitsNothing",
    } <= codes
    for warning in warnings:
        assert warning.at is not None, warning
        resolve(original, warning.at)  # raises if the pointer names no node
    tagged = sorted(str(w.at) for w in warnings if w.code == "LbsimServiceTagNotEmulated")
    assert tagged == [
        "/resources/0/properties/securityRules/0/properties/sourceAddressPrefix",
        "/resources/1/properties/copy/0/input/properties/sourceAddressPrefix",
        "/resources/1/properties/copy/0/input/properties/sourceAddressPrefix",
        "/resources/2/properties/securityRules",  # the expression that made the list
    ]


def test_a_path_below_an_expression_stays_at_the_expression() -> None:
    at = Pointer.parse("/resources/2/properties/securityRules").sealed()
    assert str(at / 0 / "properties" / "sourceAddressPrefix") == str(at)
    assert str(Pointer.parse("/a") / 0 / "b") == "/a/0/b"


# --- floating IP ---------------------------------------------------------------------------
def _web(floating_ip: bool, destination: str) -> dict[str, Any]:
    """Scale set ``vmss`` behind rule ``http`` (80 -> 8080); its subnet's NSG allows port
    8080 to ``destination`` only (a Standard load balancer: nothing else gets in)."""
    allow = security_rule("allow-http", 100, port="8080")
    allow["properties"]["destinationAddressPrefix"] = destination
    rule = lb_rule("http", 80, 8080, floating_ip=floating_ip)
    return template(
        nsg("web-nsg", allow),
        public_ip(),
        vnet("vnet", "10.0.0.0/16", subnet("default", "10.0.0.0/24", nsg="web-nsg")),
        load_balancer(rules=[rule]),
        scale_set("vmss", 2, ip_configuration(backend_pools=["pool"])),
    )


def _verdict(floating_ip: bool, destination: str) -> tuple[str, str]:
    """(access, destination judged) of a flow to port 80; ``FRONTEND`` in ``destination``
    stands for the frontend's address."""
    frontend = find_entry(plan_of(_web(floating_ip, "*")), TransportProtocol.TCP, 80).frontend
    the_plan = plan_of(_web(floating_ip, destination.replace("FRONTEND", frontend.address)))
    entry = find_entry(the_plan, TransportProtocol.TCP, 80)
    assert isinstance(entry, BalancingEntry)
    result = check_balancing(the_plan, entry, "198.51.100.7", 50000)
    assert result.floating_ip is floating_ip
    return result.verdict.access.value, str(result.flow.destination_address)


def test_with_floating_ip_the_nsgs_judge_the_frontend_address() -> None:
    assert _verdict(True, "FRONTEND") == ("Allow", "127.0.0.1")
    assert _verdict(True, "VirtualNetwork") == ("Deny", "127.0.0.1")
    access, destination = _verdict(False, "FRONTEND")
    assert access == "Deny"
    assert destination.startswith("10.0.0.")
    assert _verdict(False, "VirtualNetwork")[0] == "Allow"


# --- help ----------------------------------------------------------------------------------
def _commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def test_every_option_of_every_command_has_help() -> None:
    parser = build_parser()
    commands = _commands(parser)
    assert {"validate", "ports", "check", "rules", "up"} <= set(commands)
    missing = [
        f"{name} {action.dest}"
        for name, command in [("lbsim", parser), *commands.items()]
        for action in command._actions
        if not (action.help or "").strip()
    ]
    assert missing == []


def test_help_shows_defaults_and_each_up_setting_its_variable() -> None:
    commands = _commands(build_parser())
    ports = " ".join(commands["ports"].format_help().split())
    assert "(default: lbsim-rg)" in ports
    assert "(default: table)" in ports
    up = {a.dest: a.help or "" for a in commands["up"]._actions}
    for setting in SETTINGS:
        assert setting.env in up[setting.key], setting.key
        assert "default: " in up[setting.key], setting.key
    assert "LBSIM_FRONTENDS" in up["frontends"]
    assert "(default: 9150; env LBSIM_API_PORT)" in " ".join(commands["up"].format_help().split())
