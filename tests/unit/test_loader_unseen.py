"""Regressions found by loading real templates lbsim had not seen: each case here is a small
template written for lbsim that keeps one such shape."""

from __future__ import annotations

import pytest
from templates import (
    Json,
    codes,
    internal_frontend,
    ip_configuration,
    load,
    load_balancer,
    network_interface,
    plan_of,
    problems_of,
    public_frontend,
    public_ip,
    subnet,
    template,
    vnet,
)

from lbsim.cli.render import check_text
from lbsim.control.check import check_direct
from lbsim.model import TransportProtocol


def _dual_stack_nic(name: str) -> Json:
    """A NIC whose IPv6 configuration names no subnet, as older dual-stack templates write it."""
    v6: Json = {"name": "v6", "properties": {"privateIPAddressVersion": "IPv6"}}
    return network_interface(name, ip_configuration("v4", backend_pools=["pool"]), v6)


def _dual_stack_template(*subnet_prefixes: str) -> Json:
    net = vnet("vnet", "10.0.0.0/16", subnet("default", subnet_prefixes[0]))
    net["properties"]["subnets"][0]["properties"]["addressPrefixes"] = list(subnet_prefixes[1:])
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "resources": [
            public_ip(),
            net,
            load_balancer(frontends=[public_frontend()]),
            _dual_stack_nic("nic0"),
            _dual_stack_nic("nic1"),
        ],
    }


def test_ip_configuration_without_subnet_shares_the_primary_subnet() -> None:
    deployment = load(_dual_stack_template("10.0.0.0/24"))
    nic = deployment.network_interfaces[0]
    v4, v6 = nic.ip_configurations
    assert v6.subnet is not None
    assert v4.subnet is not None
    assert v6.subnet.id == v4.subnet.id


def test_dual_stack_nic_gets_no_unknown_subnet_warning_and_an_ipv6_address() -> None:
    result = plan_of(_dual_stack_template("10.0.0.0/24"))
    assert "SubnetOutsideTemplate" not in codes(result.warnings)
    addresses = [b.private_ip_address for b in result.backends]
    assert addresses == ["10.0.0.4", "fd00:ffff::4", "10.0.0.5", "fd00:ffff::5"]


def test_dual_stack_subnet_hands_out_ipv6_from_its_ipv6_prefix() -> None:
    result = plan_of(_dual_stack_template("10.0.0.0/24", "fd12:3456:789a::/64"))
    addresses = [b.private_ip_address for b in result.backends]
    assert addresses == ["10.0.0.4", "fd12:3456:789a::4", "10.0.0.5", "fd12:3456:789a::5"]


@pytest.mark.parametrize(
    ("method", "seen"),
    [("Dynamic", "<private IP of lb/fe>"), ("Static", "10.0.0.250")],
)
def test_reference_shows_a_given_private_frontend_address_only_when_static(
    method: str, seen: str
) -> None:
    """A Dynamic internal frontend that also names an address gets the plan's address, not
    the named one, so ``reference()`` must not report the named one."""
    frontend = internal_frontend("fe", ip="10.0.0.250")
    frontend["properties"]["privateIPAllocationMethod"] = method
    lb_id = "resourceId('Microsoft.Network/loadBalancers', 'lb')"
    value = f"[reference({lb_id}).frontendIPConfigurations[0].properties.privateIPAddress]"
    doc = template(
        vnet(),
        load_balancer(frontends=[frontend]),
        outputs={"ip": {"type": "string", "value": value}},
    )
    assert dict(load(doc).outputs) == {"ip": seen}
    addresses = {f.name: f.private_ip_address for f in plan_of(doc).frontends}
    assert addresses == {"fe": "10.0.0.4" if method == "Dynamic" else "10.0.0.250"}


def _without_api_versions(doc: Json) -> Json:
    for item in doc["resources"]:
        item.pop("apiVersion")
    return doc


def test_api_profile_lets_resources_leave_out_their_api_version() -> None:
    doc = _without_api_versions(
        template(public_ip(), load_balancer(), apiProfile="2020-09-01-hybrid")
    )
    assert [lb.name for lb in load(doc).load_balancers] == ["lb"]


def test_without_api_profile_a_missing_api_version_is_still_an_error() -> None:
    problems = problems_of(_without_api_versions(template(public_ip(), load_balancer())))
    assert codes(problems) == ["InvalidTemplate", "InvalidTemplate"]
    assert [str(p.at) for p in problems] == [
        "/resources/0/apiVersion",
        "/resources/1/apiVersion",
    ]


def test_a_nested_template_without_its_own_api_profile_needs_api_versions() -> None:
    inner = _without_api_versions(template(public_ip()))
    nested = {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2022-09-01",
        "name": "inner",
        "properties": {"mode": "Incremental", "template": inner},
    }
    problems = problems_of(template(nested, apiProfile="2020-09-01-hybrid"))
    assert codes(problems) == ["InvalidTemplate"]
    assert str(problems[0].at) == "/resources/0/properties/template/resources/0/apiVersion"


def _respelled(doc: Json) -> Json:
    """The load balancer's properties spelled as some real templates do (ARM ignores case)."""
    for item in doc["resources"]:
        if item["type"] == "Microsoft.Network/loadBalancers":
            props = item["properties"]
            props["frontendIpConfigurations"] = props.pop("frontendIPConfigurations")
            for frontend in props["frontendIpConfigurations"]:
                inner = frontend["properties"]
                if "privateIPAddress" in inner:
                    inner["privateIpAddress"] = inner.pop("privateIPAddress")
    return doc


def test_property_names_of_a_load_balancer_match_in_any_letter_case() -> None:
    lb_id = "resourceId('Microsoft.Network/loadBalancers', 'lb')"
    value = f"[reference({lb_id}).frontendIPConfigurations[0].properties.privateIPAddress]"
    internal = template(
        vnet(),
        load_balancer(frontends=[internal_frontend("fe")]),  # Dynamic
        outputs={"ip": {"type": "string", "value": value}},
    )
    assert dict(load(_respelled(internal)).outputs) == {"ip": "<private IP of lb/fe>"}
    public = _respelled(template(public_ip("other"), public_ip(), vnet(), load_balancer()))
    (frontend,) = plan_of(public).frontends
    assert frontend.address == "127.0.0.1"  # a frontend's public IP takes the first address


def test_check_text_writes_ipv6_endpoints_in_brackets() -> None:
    result = plan_of(_dual_stack_template("10.0.0.0/24", "fd12:3456:789a::/64"))
    flow = check_direct(
        result, TransportProtocol.TCP, "2001:db8::7", 4000, address="fd12:3456:789a::4", port=22
    )
    first = check_text(flow).splitlines()[0]
    assert "Tcp [2001:db8::7]:4000 -> " in first
    assert first.endswith("[fd12:3456:789a::4]:22")
