"""Bastion hosts: an Azure Bastion (``Microsoft.Network/bastionHosts``) sits in its virtual
network's ``AzureBastionSubnet`` and opens tunnels to instances from an address of that subnet,
which is the source the instances' NSGs judge.

Azure refuses a bastion host in a subnet of any other name (``SubnetNameMustBeAzureBastionSubnet``).
The host's private address is dynamic in that subnet (the lowest free one, as a NIC's), and it
keeps it across plans (``held``: bastion id lowered -> address, from the plan running before).
"""

from __future__ import annotations

from collections.abc import Mapping

from lbsim.control.addresses import Addresses
from lbsim.control.index import Index
from lbsim.control.types import BastionHost, Plan
from lbsim.errors import Problem
from lbsim.model import BastionHost as BastionHostResource
from lbsim.model import Deployment, Subnet, VirtualNetwork
from lbsim.pointer import Pointer

BASTION_SUBNET = "AzureBastionSubnet"


def held_bastion_addresses(plan: Plan) -> dict[str, str]:
    return {bastion.id.lower(): bastion.private_ip_address for bastion in plan.bastions}


def plan_bastions(
    deployment: Deployment,
    index: Index,
    addresses: Addresses,
    held: Mapping[str, str] | None = None,
) -> tuple[list[BastionHost], list[Problem]]:
    """A ``BastionHost`` per bastion host of the deployment, and the errors Azure would give."""
    planned: list[BastionHost] = []
    problems: list[Problem] = []
    for resource in deployment.bastion_hosts:
        found = _bastion(resource, index, addresses, (held or {}).get(resource.id.lower()))
        if isinstance(found, Problem):
            problems.append(found)
        else:
            planned.append(found)
    return planned, problems


def _bastion(
    resource: BastionHostResource, index: Index, addresses: Addresses, held: str | None
) -> BastionHost | Problem:
    config = next((c for c in resource.ip_configurations if c.subnet is not None), None)
    if config is None or config.subnet is None:
        return Problem(
            "InvalidRequestFormat",
            f"The bastion host '{resource.name}' needs an ipConfiguration with a subnet "
            f"(its virtual network's {BASTION_SUBNET}).",
            resource.at,
        )
    ref = config.subnet
    subnet = index.resolve(ref, Subnet, resource.id)
    name = subnet.name if subnet is not None else ref.id.rstrip("/").rsplit("/", 1)[-1]
    if name.lower() != BASTION_SUBNET.lower():
        return Problem(
            "SubnetNameMustBeAzureBastionSubnet",
            f"Subnet name {ref.id} is invalid for Azure Bastion. Azure Bastion can only be "
            f"created in subnet with name '{BASTION_SUBNET}'.",
            ref.at,
        )
    return BastionHost(
        name=resource.name,
        id=resource.id,
        subnet_id=subnet.id if subnet is not None else ref.id,
        private_ip_address=_address(ref.id, addresses, held, config.at),
        virtual_network_prefixes=_prefixes(ref.id, index),
        sku=resource.sku,
        enable_tunneling=resource.enable_tunneling,
        at=resource.at,
    )


def _address(subnet_id: str, addresses: Addresses, held: str | None, at: Pointer | None) -> str:
    """The held address while it is still free in the subnet, else the lowest free one."""
    if held and addresses.allocator(subnet_id, 6 if ":" in held else 4).reserve(held):
        return held
    return addresses.dynamic(subnet_id, at)


def _prefixes(subnet_id: str, index: Index) -> tuple[str, ...]:
    found = index.by_id.get(subnet_id.lower().rsplit("/subnets/", 1)[0])
    return found.address_prefixes if isinstance(found, VirtualNetwork) else ()
