"""What the virtual-network tests share: a small scale set whose NSG denies one port to the
virtual network, a running load balancer on free loopback ports (``port_map = ephemeral``),
a bastion host added to its plan, and a SOCKS5 client.

The scale set ``vmss`` (instances 10.0.0.4-6 in 10.0.0.0/16) has NAT pools to 80 (HTTP),
7000 and 7001 (a line naming the instance, then an echo); its subnet NSG denies TCP 7000
from ``VirtualNetwork`` (rule ``deny-7000-from-vnet``), and AllowVnetInBound lets the rest in.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import trio

import lbsim
from lbsim.api.session import Session
from lbsim.control.diff import diff
from lbsim.control.types import BastionHost

Json = dict[str, Any]
DENY_7000: Json = {
    "name": "deny-7000-from-vnet",
    "properties": {
        "priority": 100,
        "direction": "Inbound",
        "access": "Deny",
        "protocol": "Tcp",
        "sourceAddressPrefix": "VirtualNetwork",
        "sourcePortRange": "*",
        "destinationAddressPrefix": "*",
        "destinationPortRange": "7000",
    },
}
BASTION = BastionHost(
    name="bastion",
    id="/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/bastionHosts/bastion",
    subnet_id="/subscriptions/0/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks"
    "/vnet/subnets/AzureBastionSubnet",
    private_ip_address="10.0.1.4",
    virtual_network_prefixes=("10.0.0.0/16",),
    sku="Standard",
    enable_tunneling=True,
)


def _resource(rtype: str, name: str, properties: Json, **extra: Any) -> Json:
    return {
        "type": rtype,
        "apiVersion": "2023-09-01",
        "name": name,
        **extra,
        "properties": properties,
    }


def _id(rtype: str, *names: str) -> str:
    return f"[resourceId('Microsoft.Network/{rtype}', {', '.join(repr(n) for n in names)})]"


def _pool(name: str, start: int, backend_port: int) -> Json:
    frontend = f"[concat({_id('loadBalancers', 'lb')[1:-1]}, '/frontendIPConfigurations/fe')]"
    return {
        "name": name,
        "properties": {
            "frontendIPConfiguration": {"id": frontend},
            "protocol": "Tcp",
            "frontendPortRangeStart": start,
            "frontendPortRangeEnd": start + 9,
            "backendPort": backend_port,
        },
    }


def _scale_set(pools: list[str]) -> Json:
    lb = _id("loadBalancers", "lb")[1:-1]
    ipconfig = {
        "name": "ipconfig",
        "properties": {
            "subnet": {"id": _id("virtualNetworks/subnets", "vnet", "default")},
            "loadBalancerInboundNatPools": [
                {"id": f"[concat({lb}, '/inboundNatPools/{name}')]"} for name in pools
            ],
        },
    }
    nic = {"name": "nic", "properties": {"primary": True, "ipConfigurations": [ipconfig]}}
    profile = {
        "osProfile": {"computerNamePrefix": "vmss", "adminUsername": "azureuser"},
        "networkProfile": {"networkInterfaceConfigurations": [nic]},
    }
    props = {
        "overprovision": False,
        "upgradePolicy": {"mode": "Manual"},
        "virtualMachineProfile": profile,
    }
    sku = {"name": "Standard_B1s", "capacity": 3}
    return _resource("Microsoft.Compute/virtualMachineScaleSets", "vmss", props, sku=sku)


def template() -> Json:
    pools = [_pool("web", 50000, 80), _pool("deny", 51000, 7000), _pool("echo", 52000, 7001)]
    subnet = {
        "addressPrefix": "10.0.0.0/24",
        "networkSecurityGroup": {"id": _id("networkSecurityGroups", "nsg")},
    }
    lb = {
        "frontendIPConfigurations": [
            {
                "name": "fe",
                "properties": {"publicIPAddress": {"id": _id("publicIPAddresses", "pip")}},
            }
        ],
        "backendAddressPools": [{"name": "pool"}],
        "inboundNatPools": pools,
    }
    standard = {"name": "Standard"}
    resources = [
        _resource("Microsoft.Network/networkSecurityGroups", "nsg", {"securityRules": [DENY_7000]}),
        _resource(
            "Microsoft.Network/virtualNetworks",
            "vnet",
            {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "default", "properties": subnet}],
            },
        ),
        _resource(
            "Microsoft.Network/publicIPAddresses",
            "pip",
            {"publicIPAllocationMethod": "Static"},
            sku=standard,
        ),
        _resource("Microsoft.Network/loadBalancers", "lb", lb, sku=standard),
        _scale_set([pool["name"] for pool in pools]),
    ]
    schema = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
    return {"$schema": schema, "contentVersion": "1.0.0.0", "resources": resources}


def write_template(folder: Path) -> Path:
    path = folder / "azuredeploy.json"
    path.write_text(json.dumps(template()), encoding="utf-8")
    return path


def config(**more: Any) -> Json:
    """Every listener and built-in instance on a free port of 127.0.0.1; a SOCKS endpoint."""
    return {"port_map": "ephemeral", "socks": "127.0.0.1:0", "connect_timeout_seconds": 5, **more}


@contextlib.asynccontextmanager
async def serving(folder: Path, *, bastion: bool = False, **more: Any) -> AsyncIterator[Session]:
    """The load balancer of :func:`template`, with :data:`BASTION` in its plan if asked."""
    async with lbsim.serve(write_template(folder), config=config(**more)) as lb:
        if bastion:
            await add_bastion(lb)
        yield lb


async def add_bastion(lb: Session, host: BastionHost = BASTION) -> None:
    """Run the live plan with ``host`` as its bastion host, in the instances' virtual network
    (whose id the deployment's subscription spells)."""
    subnet = lb.plan.backends[0].subnet_id or ""
    vnet = subnet[: subnet.lower().rindex("/subnets/")]
    host = attrs.evolve(host, subnet_id=f"{vnet}/subnets/AzureBastionSubnet")
    await lb.runtime.apply(diff(lb.plan, attrs.evolve(lb.plan, bastions=(host,))))


# --- a SOCKS5 client -----------------------------------------------------------------------
async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    with trio.fail_after(10):
        while len(data) < size:
            chunk = await stream.receive_some(size - len(data))
            assert chunk, f"closed after {data!r}"
            data += chunk
    return data


async def receive_all(stream: trio.SocketStream) -> bytes:
    """Everything until the peer's end of stream."""
    data = b""
    with trio.fail_after(10):
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data


def connect_request(host: str, port: int, command: int = 1) -> bytes:
    """A request; ``host`` an IPv4 or IPv6 address, else a domain name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        address = b"\x03" + bytes((len(host),)) + host.encode()
    else:
        address = bytes((1 if ip.version == 4 else 4,)) + ip.packed
    return bytes((5, command, 0)) + address + struct.pack("!H", port)


async def socks_connect(
    endpoint: tuple[str, int], host: str, port: int, command: int = 1
) -> tuple[int, trio.SocketStream]:
    """(the reply code, the stream): relayed to the target when the code is 0."""
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(*endpoint)
    await stream.send_all(b"\x05\x01\x00")
    assert await receive_exactly(stream, 2) == b"\x05\x00"
    await stream.send_all(connect_request(host, port, command))
    reply = await receive_exactly(stream, 4)
    size = {1: 4, 4: 16}[reply[3]]
    await receive_exactly(stream, size + 2)
    return reply[1], stream


async def http_get(stream: trio.SocketStream) -> Json:
    """One HTTP/1.1 request over ``stream``; the JSON body a built-in instance answers."""
    await stream.send_all(b"GET / HTTP/1.1\r\nHost: lbsim\r\nConnection: close\r\n\r\n")
    response = await receive_all(stream)
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    answer: Json = json.loads(body)
    return answer
