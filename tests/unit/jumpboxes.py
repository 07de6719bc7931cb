"""Templates with jump boxes, per-instance public IPs and bastion hosts, for the tests of
computer names, instance public IPs and bastion hosts."""

from __future__ import annotations

from typing import Any

from templates import (
    NIC,
    NSG,
    PIP,
    VNET,
    Json,
    ip_configuration,
    resource,
    rid,
    scale_set,
    subnet,
    template,
    vnet,
)

VM = "Microsoft.Compute/virtualMachines"
BASTION = "Microsoft.Network/bastionHosts"


def public_ip(name: str, sku: str = "Standard") -> Json:
    return resource(PIP, name, {"publicIPAllocationMethod": "Static"}, sku={"name": sku})


def virtual_machine(
    name: str, nic: str, *, computer_name: str | None = None, os: str = "linux"
) -> Json:
    profile: Json = {"adminUsername": "azureuser", f"{os}Configuration": {}}
    if computer_name is not None:
        profile["computerName"] = computer_name
    props = {"osProfile": profile, "networkProfile": {"networkInterfaces": [rid(NIC, nic)]}}
    return resource(VM, name, props)


def jumpbox_nic(
    name: str = "jumpbox-nic",
    *,
    pip: str | None = "jumpbox-pip",
    subnet_name: str = "jump",
    nsg: str | None = None,
) -> Json:
    ipc = ip_configuration("ipconfig")
    ipc["properties"]["subnet"] = rid(f"{VNET}/subnets", "vnet", subnet_name)
    if pip is not None:
        ipc["properties"]["publicIPAddress"] = rid(PIP, pip)
    props: Json = {"ipConfigurations": [ipc]}
    if nsg is not None:
        props["networkSecurityGroup"] = rid(NSG, nsg)
    return resource(NIC, name, props)


def network(*, web_nsg: str | None = None, jump_nsg: str | None = None) -> Json:
    """vnet 10.0.0.0/16: web 10.0.0.0/24, jump 10.0.1.0/24, AzureBastionSubnet 10.0.2.0/26."""
    return vnet(
        "vnet",
        "10.0.0.0/16",
        subnet("web", "10.0.0.0/24", nsg=web_nsg),
        subnet("jump", "10.0.1.0/24", nsg=jump_nsg),
        subnet("AzureBastionSubnet", "10.0.2.0/26"),
    )


def jumpbox(
    *nsgs: Json,
    sku: str = "Standard",
    nic_nsg: str | None = None,
    subnet_nsg: str | None = None,
    os: str = "linux",
) -> Json:
    """A VM ``jumpbox`` whose NIC has the public IP ``jumpbox-pip`` (``sku``), in subnet
    ``jump``; ``nsgs`` are deployed, ``nic_nsg`` and ``subnet_nsg`` name the ones it uses."""
    return template(
        *nsgs,
        network(jump_nsg=subnet_nsg),
        public_ip("jumpbox-pip", sku),
        jumpbox_nic(nsg=nic_nsg),
        virtual_machine("jumpbox", "jumpbox-nic", os=os),
    )


def web_scale_set(capacity: int = 2, sku: str | None = "Standard") -> Json:
    """Scale set ``web`` in subnet ``web`` whose instances each get a public IP ``pub``."""
    ipc = ip_configuration("ipconfig")
    ipc["properties"]["subnet"] = rid(f"{VNET}/subnets", "vnet", "web")
    config: Json = {"name": "pub", "properties": {"idleTimeoutInMinutes": 10}}
    if sku is not None:
        config["sku"] = {"name": sku}
    ipc["properties"]["publicIPAddressConfiguration"] = config
    return scale_set("web", capacity, ipc)


def per_instance(
    capacity: int = 2, *nsgs: Json, sku: str | None = "Standard", web_nsg: str | None = None
) -> Json:
    """``web_scale_set`` in the network of ``network``."""
    return template(*nsgs, network(web_nsg=web_nsg), web_scale_set(capacity, sku))


def bastion_host(name: str = "bastion", subnet_name: str = "AzureBastionSubnet") -> Json:
    config = {
        "name": "ipconfig",
        "properties": {
            "subnet": rid(f"{VNET}/subnets", "vnet", subnet_name),
            "publicIPAddress": rid(PIP, "bastion-pip"),
        },
    }
    return resource(BASTION, name, {"ipConfigurations": [config]}, sku={"name": "Standard"})


def with_bastion(doc: Json, host: Json | None = None) -> Json:
    resources: list[Any] = doc["resources"]
    resources += [public_ip("bastion-pip"), host or bastion_host()]
    return doc
