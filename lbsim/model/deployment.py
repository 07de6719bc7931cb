"""The whole of what a template deploys, as lbsim understands it."""

from __future__ import annotations

from typing import Any

import attrs

from lbsim.errors import Problem
from lbsim.model.common import at_field
from lbsim.model.compute import VirtualMachine, VirtualMachineScaleSet
from lbsim.model.network import (
    ApplicationSecurityGroup,
    BastionHost,
    LoadBalancer,
    NetworkInterface,
    NetworkSecurityGroup,
    PublicIPAddress,
    VirtualNetwork,
)
from lbsim.pointer import Pointer


@attrs.frozen
class DeploymentContext:
    """Where the template is deployed: what ``subscription()``, ``resourceGroup()`` and
    ``deployment()`` return."""

    subscription_id: str = "00000000-0000-0000-0000-000000000000"
    tenant_id: str = "00000000-0000-0000-0000-000000000000"
    resource_group: str = "lbsim-rg"
    location: str = "westeurope"
    deployment_name: str = "deployment1"

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"


@attrs.frozen
class NotEmulatedResource:
    """A resource that lbsim keeps and lists but does not emulate."""

    type: str
    name: str
    at: Pointer | None = at_field()


@attrs.frozen
class Deployment:
    context: DeploymentContext = DeploymentContext()
    load_balancers: tuple[LoadBalancer, ...] = ()
    network_security_groups: tuple[NetworkSecurityGroup, ...] = ()
    application_security_groups: tuple[ApplicationSecurityGroup, ...] = ()
    virtual_networks: tuple[VirtualNetwork, ...] = ()
    public_ip_addresses: tuple[PublicIPAddress, ...] = ()
    network_interfaces: tuple[NetworkInterface, ...] = ()
    virtual_machine_scale_sets: tuple[VirtualMachineScaleSet, ...] = ()
    virtual_machines: tuple[VirtualMachine, ...] = ()
    bastion_hosts: tuple[BastionHost, ...] = ()
    not_emulated: tuple[NotEmulatedResource, ...] = ()
    warnings: tuple[Problem, ...] = ()
    outputs: tuple[tuple[str, Any], ...] = ()  # the template's outputs, (name, value)
