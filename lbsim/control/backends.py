"""Every backend IP configuration of a deployment: standalone NICs and scale-set instances,
with their private addresses and the NSGs that guard them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs

from lbsim.control.addresses import Addresses
from lbsim.control.index import Index
from lbsim.control.types import Backend
from lbsim.errors import Problem, Severity
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


def backends(deployment: Deployment, index: Index, addresses: Addresses) -> list[Member]:
    """All backends: NICs in template order, then each scale set's instances 0..capacity-1."""
    vm_of_nic = {
        nic.key: vm.name for vm in deployment.virtual_machines for nic in vm.network_interfaces
    }
    members: list[Member] = []
    for nic in deployment.network_interfaces:
        nsg = index.resolve(nic.network_security_group, NetworkSecurityGroup, nic.id)
        for ipc in nic.ip_configurations:
            facts = _subnet_facts(ipc, index, addresses, nic.id)  # before the subnet is in use
            address = ipc.private_ip_address
            if ipc.private_ip_allocation_method.lower() != "static" or not address:
                address = addresses.dynamic(_subnet_id(ipc), ipc.at, ipc.private_ip_address_version)
            backend = Backend(
                ip_configuration_id=ipc.id,
                name=vm_of_nic.get(nic.id.lower(), nic.name),
                private_ip_address=address,
                network_interface=nic.name,
                nic_nsg=nsg,
                **facts,
            )
            members.append(Member(backend, ipc))
    for vmss in deployment.virtual_machine_scale_sets:
        members += _instances(vmss, index, addresses)
    return members


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
    vmss: VirtualMachineScaleSet, index: Index, addresses: Addresses
) -> Iterator[Member]:
    shapes = []  # resolved once per scale set, then stamped out per instance
    for config in vmss.network_interface_configurations:
        nsg = index.resolve(config.network_security_group, NetworkSecurityGroup, vmss.id)
        shapes += [
            (config.name, ipc, nsg, _subnet_facts(ipc, index, addresses, vmss.id))
            for ipc in config.ip_configurations
        ]
    for instance in range(vmss.capacity):
        for nic_name, ipc, nsg, facts in shapes:
            backend = Backend(
                ip_configuration_id=vmss.instance_ip_configuration_id(instance, nic_name, ipc.name),
                name=f"{vmss.name}_{instance}",
                private_ip_address=addresses.dynamic(
                    _subnet_id(ipc), ipc.at, ipc.private_ip_address_version
                ),
                scale_set=vmss.name,
                instance_id=instance,
                network_interface=nic_name,
                nic_nsg=nsg,
                os_type=vmss.os_type,
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
    }


def _vnet_of(subnet: Subnet | None, index: Index) -> VirtualNetwork | None:
    if subnet is None:
        return None
    found = index.by_id.get(subnet.id.lower().rsplit("/subnets/", 1)[0])
    return found if isinstance(found, VirtualNetwork) else None


def instance_public_ips(deployment: Deployment) -> list[Problem]:
    """A warning for each way into an instance that bypasses the load balancer: a public IP
    of a VM's NIC, or one per instance of a scale set. lbsim listens only on frontends."""
    found = [
        _bypass(f"every instance of scale set '{vmss.name}'", ipc)
        for vmss in deployment.virtual_machine_scale_sets
        for config in vmss.network_interface_configurations
        for ipc in config.ip_configurations
        if ipc.public_ip_address_configuration
    ]
    found += [
        _bypass(f"network interface '{nic.name}'", ipc)
        for nic in deployment.network_interfaces
        for ipc in nic.ip_configurations
        if ipc.public_ip_address is not None
    ]
    return found


def _bypass(who: str, ipc: IPConfiguration) -> Problem:
    return Problem(
        "InstancePublicIPNotEmulated",
        f"In Azure {who} also has a public IP of its own (ipConfiguration '{ipc.name}'), a way "
        "in that bypasses the load balancer; lbsim emulates only the load balancer's frontends.",
        ipc.at,
        severity=Severity.WARNING,
    )
