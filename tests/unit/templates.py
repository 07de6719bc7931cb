"""Small ARM templates as Python dicts, for the loader, plan and CLI tests.

Each builder returns one JSON value as a template writes it; references between resources use
``resourceId()`` expressions, as real templates do, so the loader's evaluation is exercised
too. ``load`` and ``problems_of`` run the loader with the default deployment context.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import Plan
from lbsim.errors import Problem, TemplateInvalid
from lbsim.model import Deployment, DeploymentContext

Json = dict[str, Any]
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
PARAMETERS_SCHEMA = (
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
)
CONTEXT = DeploymentContext()
LB = "Microsoft.Network/loadBalancers"
NSG = "Microsoft.Network/networkSecurityGroups"
VNET = "Microsoft.Network/virtualNetworks"
PIP = "Microsoft.Network/publicIPAddresses"
NIC = "Microsoft.Network/networkInterfaces"
VMSS = "Microsoft.Compute/virtualMachineScaleSets"
DEPLOYMENTS = "Microsoft.Resources/deployments"


# --- ids and references -------------------------------------------------------------------------
def resource_id(rtype: str, *names: str) -> str:
    """The literal id Azure gives a resource of the default deployment context."""
    namespace, _, types = rtype.partition("/")
    path = "/".join(f"{t}/{n}" for t, n in zip(types.split("/"), names, strict=True))
    return f"{CONTEXT.resource_group_id}/providers/{namespace}/{path}"


def rid(rtype: str, *names: str) -> Json:
    """A ``{"id": ...}`` reference written with ``resourceId()``."""
    args = ", ".join(f"'{n}'" for n in (rtype, *names))
    return {"id": f"[resourceId({args})]"}


def lb_ref(lb: str, kind: str, name: str) -> Json:
    """A reference to a part of a load balancer: ``kind`` is ``frontendIPConfigurations``,
    ``backendAddressPools``, ``inboundNatPools``, ``inboundNatRules`` or ``probes``."""
    return rid(f"{LB}/{kind}", lb, name)


# --- documents ---------------------------------------------------------------------------------
def template(
    *resources: Json,
    parameters: Mapping[str, Any] | None = None,
    variables: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    **top: Any,
) -> Json:
    doc: Json = {"$schema": SCHEMA, "contentVersion": "1.0.0.0"}
    if parameters is not None:
        doc["parameters"] = dict(parameters)
    if variables is not None:
        doc["variables"] = dict(variables)
    doc["resources"] = list(resources)
    if outputs is not None:
        doc["outputs"] = dict(outputs)
    doc.update(top)
    return doc


def parameters_file(**values: Any) -> Json:
    return {
        "$schema": PARAMETERS_SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": {name: {"value": value} for name, value in values.items()},
    }


def resource(
    rtype: str, name: str, properties: Mapping[str, Any] | None = None, **extra: Any
) -> Json:
    out: Json = {"type": rtype, "apiVersion": "2023-09-01", "name": name}
    out["location"] = "[resourceGroup().location]"
    out.update(extra)
    out["properties"] = dict(properties or {})
    return out


# --- network resources -------------------------------------------------------------------------
def public_ip(name: str = "pip", *, label: str | None = None) -> Json:
    props: Json = {"publicIPAllocationMethod": "Static"}
    if label is not None:
        props["dnsSettings"] = {"domainNameLabel": label}
    return resource(PIP, name, props, sku={"name": "Standard"})


def subnet(name: str, prefix: str, *, nsg: str | None = None) -> Json:
    props: Json = {"addressPrefix": prefix}
    if nsg is not None:
        props["networkSecurityGroup"] = rid(NSG, nsg)
    return {"name": name, "properties": props}


def vnet(name: str = "vnet", prefix: str = "10.0.0.0/16", *subnets: Json) -> Json:
    props = {
        "addressSpace": {"addressPrefixes": [prefix]},
        "subnets": list(subnets) or [subnet("default", "10.0.0.0/24")],
    }
    return resource(VNET, name, props)


def security_rule(
    name: str,
    priority: int | str,
    access: str = "Allow",
    *,
    source: str = "*",
    port: str = "*",
    protocol: str = "Tcp",
    direction: str = "Inbound",
) -> Json:
    return {
        "name": name,
        "properties": {
            "priority": priority,
            "direction": direction,
            "access": access,
            "protocol": protocol,
            "sourceAddressPrefix": source,
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": port,
        },
    }


def nsg(name: str, *rules: Json) -> Json:
    return resource(NSG, name, {"securityRules": list(rules)})


def public_frontend(name: str = "fe", pip: str = "pip") -> Json:
    return {"name": name, "properties": {"publicIPAddress": rid(PIP, pip)}}


def internal_frontend(
    name: str = "fe", vnet_name: str = "vnet", subnet_name: str = "default", ip: str | None = None
) -> Json:
    props: Json = {"subnet": rid(f"{VNET}/subnets", vnet_name, subnet_name)}
    if ip is not None:
        props.update(privateIPAllocationMethod="Static", privateIPAddress=ip)
    return {"name": name, "properties": props}


def nat_pool(
    name: str,
    start: int | str,
    end: int | str,
    backend_port: int | str,
    *,
    lb: str = "lb",
    frontend: str = "fe",
    protocol: str = "Tcp",
) -> Json:
    return {
        "name": name,
        "properties": {
            "frontendIPConfiguration": lb_ref(lb, "frontendIPConfigurations", frontend),
            "protocol": protocol,
            "frontendPortRangeStart": start,
            "frontendPortRangeEnd": end,
            "backendPort": backend_port,
        },
    }


def nat_rule(
    name: str,
    backend_port: int,
    *,
    port: int | None = None,
    ports: tuple[int, int] | None = None,
    pool: str | None = None,
    lb: str = "lb",
    frontend: str = "fe",
    protocol: str = "Tcp",
) -> Json:
    """A NAT rule: V1 with ``port``, V2 with ``ports`` (a range) and ``pool``."""
    props: Json = {
        "frontendIPConfiguration": lb_ref(lb, "frontendIPConfigurations", frontend),
        "protocol": protocol,
        "backendPort": backend_port,
    }
    if port is not None:
        props["frontendPort"] = port
    if ports is not None:
        props["frontendPortRangeStart"], props["frontendPortRangeEnd"] = ports
    if pool is not None:
        props["backendAddressPool"] = lb_ref(lb, "backendAddressPools", pool)
    return {"name": name, "properties": props}


def lb_rule(
    name: str,
    frontend_port: int,
    backend_port: int,
    *,
    pool: str = "pool",
    probe: str | None = None,
    lb: str = "lb",
    frontend: str = "fe",
    protocol: str = "Tcp",
    floating_ip: bool = False,
) -> Json:
    props: Json = {
        "frontendIPConfiguration": lb_ref(lb, "frontendIPConfigurations", frontend),
        "backendAddressPool": lb_ref(lb, "backendAddressPools", pool),
        "protocol": protocol,
        "frontendPort": frontend_port,
        "backendPort": backend_port,
        "enableFloatingIP": floating_ip,
    }
    if probe is not None:
        props["probe"] = lb_ref(lb, "probes", probe)
    return {"name": name, "properties": props}


def probe(name: str, port: int | str) -> Json:
    return {"name": name, "properties": {"protocol": "Tcp", "port": port}}


def load_balancer(
    name: str = "lb",
    *,
    frontends: Iterable[Json] | None = None,
    backend_pools: Iterable[str] = ("pool",),
    nat_pools: Iterable[Json] = (),
    nat_rules: Iterable[Json] = (),
    rules: Iterable[Json] = (),
    probes: Iterable[Json] = (),
) -> Json:
    props = {
        "frontendIPConfigurations": list(frontends or [public_frontend()]),
        "backendAddressPools": [{"name": p} for p in backend_pools],
        "inboundNatPools": list(nat_pools),
        "inboundNatRules": list(nat_rules),
        "loadBalancingRules": list(rules),
        "probes": list(probes),
    }
    return resource(LB, name, props, sku={"name": "Standard"})


def ip_configuration(
    name: str = "ipconfig",
    *,
    vnet_name: str = "vnet",
    subnet_name: str = "default",
    nat_pools: Iterable[str] = (),
    nat_rules: Iterable[str] = (),
    backend_pools: Iterable[str] = (),
    lb: str = "lb",
    ip: str | None = None,
) -> Json:
    props: Json = {"subnet": rid(f"{VNET}/subnets", vnet_name, subnet_name)}
    if nat_pools:
        props["loadBalancerInboundNatPools"] = [lb_ref(lb, "inboundNatPools", p) for p in nat_pools]
    if nat_rules:
        props["loadBalancerInboundNatRules"] = [lb_ref(lb, "inboundNatRules", r) for r in nat_rules]
    if backend_pools:
        props["loadBalancerBackendAddressPools"] = [
            lb_ref(lb, "backendAddressPools", p) for p in backend_pools
        ]
    if ip is not None:
        props.update(privateIPAllocationMethod="Static", privateIPAddress=ip)
    return {"name": name, "properties": props}


def scale_set(
    name: str = "vmss",
    capacity: int | str = 2,
    *ip_configurations: Json,
    nsg_name: str | None = None,
) -> Json:
    nic: Json = {
        "primary": True,
        "ipConfigurations": list(ip_configurations) or [ip_configuration()],
    }
    if nsg_name is not None:
        nic["networkSecurityGroup"] = rid(NSG, nsg_name)
    props = {
        "overprovision": False,
        "upgradePolicy": {"mode": "Manual"},
        "virtualMachineProfile": {
            "osProfile": {"computerNamePrefix": name, "linuxConfiguration": {}},
            "networkProfile": {
                "networkInterfaceConfigurations": [{"name": "nic", "properties": nic}]
            },
        },
    }
    return resource(VMSS, name, props, sku={"name": "Standard_B1s", "capacity": capacity})


def network_interface(name: str, *ip_configurations: Json, nsg_name: str | None = None) -> Json:
    props: Json = {"ipConfigurations": list(ip_configurations) or [ip_configuration()]}
    if nsg_name is not None:
        props["networkSecurityGroup"] = rid(NSG, nsg_name)
    return resource(NIC, name, props)


def vmss_behind_lb(
    capacity: int = 3,
    *,
    nat_pools: Iterable[Json] = (nat_pool("ssh", 50000, 50119, 22),),
    subnet_nsg: Json | None = None,
) -> Json:
    """A scale set whose instances are reached through the NAT pools of a public LB."""
    pools = list(nat_pools)
    subnets = [subnet("default", "10.0.0.0/24", nsg=subnet_nsg["name"] if subnet_nsg else None)]
    ipc = ip_configuration(nat_pools=[p["name"] for p in pools], backend_pools=["pool"])
    resources = [
        public_ip(),
        vnet("vnet", "10.0.0.0/16", *subnets),
        load_balancer(nat_pools=pools),
        scale_set("vmss", capacity, ipc),
    ]
    if subnet_nsg is not None:
        resources.insert(0, subnet_nsg)
    return template(*resources)


# --- running the loader ------------------------------------------------------------------------
def load(doc: Any, file: str | None = "t.json", **options: Any) -> Deployment:
    return load_template(doc, file, LoadOptions(**options))


def problems_of(doc: Any, file: str | None = "t.json", **options: Any) -> tuple[Problem, ...]:
    """The errors that loading ``doc`` raises (the test fails if it loads)."""
    with pytest.raises(TemplateInvalid) as caught:
        load(doc, file, **options)
    return caught.value.problems


def plan_of(doc: Any, **options: Any) -> Plan:
    return plan(load(doc, **options))


def plan_problems(doc: Any, **options: Any) -> tuple[Problem, ...]:
    """The errors that planning ``doc`` raises (the template itself must load)."""
    deployment = load(doc, **options)
    with pytest.raises(TemplateInvalid) as caught:
        plan(deployment)
    return caught.value.problems


def codes(problems: Iterable[Problem]) -> list[str]:
    return [p.code for p in problems]


def where(problems: Iterable[Problem]) -> dict[str, list[str]]:
    """Each problem's code with the pointers it was reported at, as text."""
    out: dict[str, list[str]] = {}
    for p in problems:
        out.setdefault(p.code, []).append(str(p.at) if p.at is not None else "")
    return out
