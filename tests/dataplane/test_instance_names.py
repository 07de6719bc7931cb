"""A standalone VM's built-in server names the VM (``lbsim_jumpbox``), not a made-up
instance 0 of a scale set named after it."""

from __future__ import annotations

from typing import Any

from runtime_harness import connect, free_ports, place, plan_of, read_line, running, settings

_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
_LB = "Microsoft.Network/loadBalancers"


def _resource(rtype: str, name: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": rtype,
        "apiVersion": "2023-09-01",
        "name": name,
        "location": "[resourceGroup().location]",
        **extra,
        "properties": properties,
    }


def _id(rtype: str, *names: str) -> dict[str, str]:
    quoted = ", ".join(f"'{n}'" for n in (rtype, *names))
    return {"id": f"[resourceId({quoted})]"}


def jumpbox(port: int) -> dict[str, Any]:
    """A VM ``jumpbox`` (10.0.0.4) that a NAT rule (V1) of a Basic load balancer reaches on
    ``port`` -> 22."""
    rule = {
        "name": "ssh",
        "properties": {
            "frontendIPConfiguration": _id(f"{_LB}/frontendIPConfigurations", "lb", "fe"),
            "protocol": "Tcp",
            "frontendPort": port,
            "backendPort": 22,
        },
    }
    frontend = {
        "name": "fe",
        "properties": {"publicIPAddress": _id("Microsoft.Network/publicIPAddresses", "pip")},
    }
    ipconfig = {
        "name": "ipconfig",
        "properties": {
            "subnet": _id("Microsoft.Network/virtualNetworks/subnets", "vnet", "default"),
            "privateIPAllocationMethod": "Static",
            "privateIPAddress": "10.0.0.4",
            "loadBalancerInboundNatRules": [_id(f"{_LB}/inboundNatRules", "lb", "ssh")],
        },
    }
    subnets = [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}]
    nic = _id("Microsoft.Network/networkInterfaces", "jumpbox-nic")
    resources = [
        _resource(
            "Microsoft.Network/virtualNetworks",
            "vnet",
            {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": subnets},
        ),
        _resource(
            "Microsoft.Network/publicIPAddresses",
            "pip",
            {"publicIPAllocationMethod": "Static"},
            sku={"name": "Basic"},
        ),
        _resource(
            _LB,
            "lb",
            {"frontendIPConfigurations": [frontend], "inboundNatRules": [rule]},
            sku={"name": "Basic"},
        ),
        _resource(
            "Microsoft.Network/networkInterfaces", "jumpbox-nic", {"ipConfigurations": [ipconfig]}
        ),
        _resource(
            "Microsoft.Compute/virtualMachines",
            "jumpbox",
            {"networkProfile": {"networkInterfaces": [nic]}},
        ),
    ]
    return {"$schema": _SCHEMA, "contentVersion": "1.0.0.0", "resources": resources}


async def test_a_vm_s_built_in_server_names_the_vm() -> None:
    where = place()
    port = free_ports(where.frontend, 1)
    async with running(plan_of(jumpbox(port), where.frontend), settings(where)) as runtime:
        assert [s.identity.label for s in runtime.instances] == ["jumpbox"]
        sock = await connect((where.frontend, port))
        with sock:
            banner = await read_line(sock)
        assert banner == b"SSH-2.0-lbsim_jumpbox lbsim instance jumpbox at 10.0.0.4\r\n"
