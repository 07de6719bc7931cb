"""Every backend IP configuration of a deployment: standalone NICs and scale-set instances,
with their private addresses and the NSGs that guard them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from lbsim.control.addresses import Addresses
from lbsim.control.fleet import Fleet, Instance, fresh
from lbsim.control.index import Index
from lbsim.control.types import Backend
from lbsim.model import (
    Deployment,
    IPConfiguration,
    NetworkSecurityGroup,
    Subnet,
    VirtualMachineScaleSet,
    VirtualNetwork,
)


@attrs.frozen
class Member:
    """A backend with the template ipConfiguration it was made from."""

    backend: Backend
    ip_configuration: IPConfiguration


def backends(
    deployment: Deployment,
    index: Index,
    addresses: Addresses,
    fleet: Fleet | None = None,
    held: Mapping[str, str] | None = None,
) -> list[Member]:
    """All backends: NICs in template order, then each scale set's instances (``fleet``'s,
    else ``0 .. capacity-1``). ``held`` (backend key -> private address) gives a backend the
    address it had in an earlier plan, as Azure keeps a NIC's dynamic address for its life;
    the others take the lowest free address."""
    fleet = fleet or fresh(deployment)
    held = _live_held(deployment, fleet, held or {}, addresses)
    vm_of_nic = {nic.key: vm for vm in deployment.virtual_machines for nic in vm.network_interfaces}
    members: list[Member] = []
    for nic in deployment.network_interfaces:
        nsg = index.resolve(nic.network_security_group, NetworkSecurityGroup, nic.id)
        for ipc in nic.ip_configurations:
            facts = _subnet_facts(ipc, index, addresses, nic.id)  # before the subnet is in use
            address = ipc.private_ip_address
            if ipc.private_ip_allocation_method.lower() != "static" or not address:
                address = held.get(ipc.id.lower()) or addresses.dynamic(
                    _subnet_id(ipc), ipc.at, ipc.private_ip_address_version
                )
            vm = vm_of_nic.get(nic.id.lower())
            backend = Backend(
                ip_configuration_id=ipc.id,
                name=vm.name if vm else nic.name,
                private_ip_address=address,
                network_interface=nic.name,
                nic_nsg=nsg,
                os_type=vm.os_type if vm else None,
                computer_name=vm.hostname if vm else "",
                **facts,
            )
            members.append(Member(backend, ipc))
    for vmss in deployment.virtual_machine_scale_sets:
        instances = fleet.instances(vmss.name) or ()
        members += _instances(vmss, instances, index, addresses, held)
    return members


def _live_held(
    deployment: Deployment, fleet: Fleet, held: Mapping[str, str], addresses: Addresses
) -> dict[str, str]:
    """The held addresses of backends that still exist and may keep them (dynamic ones, still
    free in their subnet), reserved before any dynamic address is handed out."""
    kept: dict[str, str] = {}
    for key, ipc in _dynamic_ip_configurations(deployment, fleet):
        address = held.get(key)
        if address and addresses.allocator(_subnet_id(ipc), _version_of(address)).reserve(address):
            kept[key] = address
    return kept


def _dynamic_ip_configurations(
    deployment: Deployment, fleet: Fleet
) -> Iterator[tuple[str, IPConfiguration]]:
    """(backend key, ipConfiguration) of every backend whose address is dynamic."""
    for nic in deployment.network_interfaces:
        for ipc in nic.ip_configurations:
            if ipc.private_ip_allocation_method.lower() != "static" or not ipc.private_ip_address:
                yield ipc.id.lower(), ipc
    for vmss in deployment.virtual_machine_scale_sets:
        for instance in fleet.instances(vmss.name) or ():
            for config in vmss.network_interface_configurations:
                for ipc in config.ip_configurations:
                    rid = vmss.instance_ip_configuration_id(
                        instance.instance_id, config.name, ipc.name
                    )
                    yield rid.lower(), ipc


def _version_of(address: str) -> int:
    return 6 if ":" in address else 4


def reserve_static(deployment: Deployment, addresses: Addresses) -> None:
    """Make every subnet's allocator and reserve every static address, NICs' and internal
    frontends', before any dynamic address is handed out."""
    for vnet in deployment.virtual_networks:
        for subnet in vnet.subnets:
            addresses.add_subnet(subnet.id, subnet.address_prefixes)
    for nic in deployment.network_interfaces:
        for ipc in nic.ip_configurations:
            static = ipc.private_ip_allocation_method.lower() == "static"
            if static and ipc.private_ip_address:
                addresses.static(_subnet_id(ipc), ipc.private_ip_address, ipc.at)
    for lb in deployment.load_balancers:
        for fe in lb.frontend_ip_configurations:
            static = fe.private_ip_allocation_method.lower() == "static"
            if fe.subnet is not None and static and fe.private_ip_address:
                addresses.static(fe.subnet.id, fe.private_ip_address, fe.at)


def _instances(
    vmss: VirtualMachineScaleSet,
    instances: tuple[Instance, ...],
    index: Index,
    addresses: Addresses,
    held: Mapping[str, str],
) -> Iterator[Member]:
    shapes = []  # resolved once per scale set, then stamped out per instance
    for config in vmss.network_interface_configurations:
        nsg = index.resolve(config.network_security_group, NetworkSecurityGroup, vmss.id)
        shapes += [
            (config.name, ipc, nsg, _subnet_facts(ipc, index, addresses, vmss.id))
            for ipc in config.ip_configurations
        ]
    for instance in instances:
        number = instance.instance_id
        for nic_name, ipc, nsg, facts in shapes:
            rid = vmss.instance_ip_configuration_id(number, nic_name, ipc.name)
            backend = Backend(
                ip_configuration_id=rid,
                name=f"{vmss.name}_{number}",
                private_ip_address=held.get(rid.lower())
                or addresses.dynamic(_subnet_id(ipc), ipc.at, ipc.private_ip_address_version),
                scale_set=vmss.name,
                instance_id=number,
                running=instance.running,
                generation=instance.generation,
                network_interface=nic_name,
                nic_nsg=nsg,
                os_type=vmss.os_type,
                computer_name=vmss.computer_name(number),
                **facts,
            )
            yield Member(backend, ipc)


def _subnet_id(ipc: IPConfiguration) -> str | None:
    return ipc.subnet.id if ipc.subnet else None


def _subnet_facts(
    ipc: IPConfiguration, index: Index, addresses: Addresses, referrer: str
) -> dict[str, Any]:
    subnet = index.resolve(ipc.subnet, Subnet, referrer)
    if subnet is None:
        addresses.warn_unknown(_subnet_id(ipc), ipc.at)
    nsg = None
    if subnet is not None:
        nsg = index.resolve(subnet.network_security_group, NetworkSecurityGroup, subnet.id)
    vnet = _vnet_of(subnet, index)
    return {
        "subnet_id": subnet.id if subnet else _subnet_id(ipc),
        "subnet_nsg": nsg,
        "application_security_groups": tuple(a.key for a in ipc.application_security_groups),
        "virtual_network_prefixes": vnet.address_prefixes if vnet else (),
        "subnet_prefixes": subnet.address_prefixes if subnet else (),
    }


def _vnet_of(subnet: Subnet | None, index: Index) -> VirtualNetwork | None:
    if subnet is None:
        return None
    found = index.by_id.get(subnet.id.lower().rsplit("/subnets/", 1)[0])
    return found if isinstance(found, VirtualNetwork) else None
