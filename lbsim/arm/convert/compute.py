"""Evaluated Microsoft.Compute resources to model objects."""

from __future__ import annotations

from lbsim.arm.convert.network import ip_configurations
from lbsim.arm.convert.reader import Node
from lbsim.arm.limits import MAX_CAPACITY
from lbsim.model import (
    VirtualMachine,
    VirtualMachineScaleSet,
    VirtualMachineScaleSetNetworkConfiguration,
)
from lbsim.model.compute import SCALE_IN_RULES


def os_type(profile: Node) -> str | None:
    """Linux or Windows, from the OS profile, the OS disk or the image publisher."""
    os_profile = profile.get("osProfile")
    if os_profile.get("linuxConfiguration").present:
        return "Linux"
    if os_profile.get("windowsConfiguration").present:
        return "Windows"
    storage = profile.get("storageProfile")
    declared = storage.path("osDisk", "osType").text()
    if declared:
        return declared.capitalize()
    publisher = storage.path("imageReference", "publisher").text("").lower()
    if publisher:
        return "Windows" if "windows" in publisher else "Linux"
    return None


def _nic_configuration(vmss_id: str, node: Node) -> VirtualMachineScaleSetNetworkConfiguration:
    props = node.get("properties")
    name = node.name()
    owner = f"{vmss_id}/networkInterfaceConfigurations/{name}"
    return VirtualMachineScaleSetNetworkConfiguration(
        name=name,
        primary=props.get("primary").boolean(),
        network_security_group=props.get("networkSecurityGroup").ref(),
        ip_configurations=ip_configurations(owner, props.get("ipConfigurations")),
        at=node.at,
    )


def virtual_machine_scale_set(rid: str, name: str, node: Node) -> VirtualMachineScaleSet:
    props = node.get("properties")
    profile = props.get("virtualMachineProfile")
    capacity = node.path("sku", "capacity")
    if not capacity.present:
        node.sink.error(
            "InvalidParameter",
            f"The scale set '{name}' has no sku.capacity; lbsim needs the instance count.",
            node.get("sku").at,
        )
    configs = profile.path("networkProfile", "networkInterfaceConfigurations").items()
    return VirtualMachineScaleSet(
        id=rid,
        name=name,
        capacity=_capacity(name, capacity),
        sku_name=node.path("sku", "name").text(""),
        overprovision=props.get("overprovision").boolean(default=True),
        scale_in_policy=_scale_in_rule(props.path("scaleInPolicy", "rules").strings()),
        os_type=os_type(profile),
        zones=node.get("zones").strings(),
        computer_name_prefix=profile.path("osProfile", "computerNamePrefix").text(""),
        network_interface_configurations=tuple(_nic_configuration(rid, n) for n in configs),
        at=node.at,
    )


def _capacity(name: str, capacity: Node) -> int:
    """sku.capacity, at most Azure's 1,000 instances of a scale set (platform images:
    https://learn.microsoft.com/en-us/azure/virtual-machine-scale-sets/virtual-machine-scale-sets-placement-groups),
    checked before any instance is made."""
    count = capacity.integer(0) or 0
    if count > MAX_CAPACITY:
        capacity.sink.error(
            "InvalidParameter",
            f"The scale set '{name}' asks for {count} instances (sku.capacity); a scale set "
            f"has at most {MAX_CAPACITY:,}.",
            capacity.at,
        )
        return 0
    return count


def _scale_in_rule(rules: tuple[str, ...]) -> str:
    """The scale set's scale-in rule, in Azure's spelling (``Default`` when none is given)."""
    known = {r.lower(): r for r in SCALE_IN_RULES}
    return known.get(rules[0].lower(), "Default") if rules else "Default"


def virtual_machine(rid: str, name: str, node: Node) -> VirtualMachine:
    props = node.get("properties")
    return VirtualMachine(
        id=rid,
        name=name,
        network_interfaces=props.path("networkProfile", "networkInterfaces").refs(),
        os_type=os_type(props),
        computer_name=props.path("osProfile", "computerName").text(""),
        at=node.at,
    )
