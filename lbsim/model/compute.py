"""Microsoft.Compute resources: virtual machine scale sets and virtual machines."""

from __future__ import annotations

import attrs

from lbsim.model.common import SubResource, at_field
from lbsim.model.network import IPConfiguration
from lbsim.pointer import Pointer


@attrs.frozen
class VirtualMachineScaleSetNetworkConfiguration:
    """``networkProfile.networkInterfaceConfigurations[]`` of a scale set.

    The ``id`` of each ipConfiguration here is the template-level id; instance-level ids are
    made by ``instance_ip_configuration_id``."""

    name: str
    primary: bool = False
    network_security_group: SubResource | None = None
    ip_configurations: tuple[IPConfiguration, ...] = ()
    at: Pointer | None = at_field()


# Which instances a scale-in removes first (learn.microsoft.com/azure/virtual-machine-scale-sets/
# virtual-machine-scale-sets-scale-in-policy): Default deletes the highest instance id (after
# balancing zones), NewestVM the most recently created, OldestVM the earliest created.
SCALE_IN_RULES = ("Default", "NewestVM", "OldestVM")


@attrs.frozen
class VirtualMachineScaleSet:
    id: str
    name: str
    capacity: int
    sku_name: str = ""
    overprovision: bool = True
    scale_in_policy: str = "Default"  # scaleInPolicy.rules[0]: one of SCALE_IN_RULES
    os_type: str | None = None
    zones: tuple[str, ...] = ()
    computer_name_prefix: str = ""  # osProfile.computerNamePrefix ("" when not given)
    network_interface_configurations: tuple[VirtualMachineScaleSetNetworkConfiguration, ...] = ()
    at: Pointer | None = at_field()

    def computer_name(self, instance: int) -> str:
        """An instance's computer name (its hostname) as Azure forms it: the prefix and the
        instance id in base 36, six digits, zero-padded, upper case (``nsgvmss`` and 85 give
        ``nsgvmss00002D``). lbsim takes the scale set's name for a prefix the template does
        not give (Azure's documentation says nothing of that case)."""
        return f"{self.computer_name_prefix or self.name}{base36(instance).rjust(6, '0')}"

    def instance_id(self, instance: int) -> str:
        return f"{self.id}/virtualMachines/{instance}"

    def instance_ip_configuration_id(self, instance: int, nic: str, ip_config: str) -> str:
        """The id Azure gives an instance's ipconfig (``.../virtualMachines/<id>/
        networkInterfaces/<nic>/ipConfigurations/<ipconfig>``, as the scale set's network
        interfaces API lists them)."""
        return f"{self.instance_id(instance)}/networkInterfaces/{nic}/ipConfigurations/{ip_config}"


def base36(number: int) -> str:
    """``number`` (0 or more) in base 36, upper case, without padding."""
    digits = ""
    while True:
        number, digit = divmod(number, 36)
        digits = _BASE36[digit] + digits
        if number == 0:
            return digits


_BASE36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@attrs.frozen
class VirtualMachine:
    id: str
    name: str
    network_interfaces: tuple[SubResource, ...] = ()
    os_type: str | None = None
    computer_name: str = ""  # osProfile.computerName ("" when not given)
    at: Pointer | None = at_field()

    @property
    def hostname(self) -> str:
        """The VM's computer name: ``osProfile.computerName``, else (as Azure names a VM
        created without one) the VM's name."""
        return self.computer_name or self.name
