"""Which bastion host and which instance a tunnel asks for, with the errors a user of
``az network bastion tunnel`` can act on.

A tunnel goes through a ``Microsoft.Network/bastionHosts`` resource whose IP configuration
is in the subnet named ``AzureBastionSubnet`` (https://learn.microsoft.com/en-us/azure/bastion/
configuration-settings#subnet), and reaches instances of that virtual network. A deployment
without one refuses with ``BastionHostNotFound``; an instance that is not there, with the
``ResourceNotFound`` the other instance verbs give. The native client's tunnel needs a
Standard or Premium bastion host with ``enableTunneling`` set
(https://learn.microsoft.com/en-us/azure/bastion/connect-vm-native-client-linux): another
refuses with ``BastionTunnelingNotEnabled``, naming what to set.
"""

from __future__ import annotations

import ipaddress

from lbsim.api import queries
from lbsim.control.types import Backend, BastionHost, Plan
from lbsim.errors import LbsimError
from lbsim.pointer import Pointer

__all__ = ["check_ports", "check_tunneling", "choose"]

_TUNNEL_SKUS = frozenset({"standard", "premium"})


def choose(plan: Plan, target: str, bastion: str | None = None) -> tuple[BastionHost, Backend]:
    """The bastion host (``bastion`` by name, else one in the target's virtual network) and
    the instance ``target`` names (``web/1``, ``web_1`` or a VM's name)."""
    if not plan.bastions:
        raise LbsimError(
            "BastionHostNotFound",
            "The deployment has no bastion host: a tunnel goes through a "
            "Microsoft.Network/bastionHosts resource whose IP configuration is in a subnet "
            "named AzureBastionSubnet of the target's virtual network. Add one to the template.",
        )
    backend = _instance(plan, target)
    hosts = _named(plan, bastion) if bastion is not None else plan.bastions
    reaching = [host for host in hosts if _reaches(host, backend.private_ip_address)]
    reaching.sort(key=lambda host: not _tunnels(host))  # (a stable sort: plan order kept)
    if not reaching:
        names = ", ".join(host.name for host in hosts)
        raise LbsimError(
            "BastionHostNotFound",
            f"no bastion host in the virtual network of {backend.label} "
            f"({backend.private_ip_address}); bastion hosts: {names}.",
        )
    check_tunneling(reaching[0])
    return reaching[0], backend


def check_tunneling(host: BastionHost) -> None:
    """A tunnel needs a Standard or Premium bastion host with ``enableTunneling``."""
    if _tunnels(host):
        return
    wrong = [] if host.sku.lower() in _TUNNEL_SKUS else [f"sku.name is {host.sku}"]
    if not host.enable_tunneling:
        wrong.append("properties.enableTunneling is not true")
    raise LbsimError(
        "BastionTunnelingNotEnabled",
        f"The bastion host '{host.name}' cannot open a native client tunnel: "
        f"{' and '.join(wrong)}. Set sku.name to Standard (or Premium) and "
        "properties.enableTunneling to true in the template.",
    )


def _tunnels(host: BastionHost) -> bool:
    return host.sku.lower() in _TUNNEL_SKUS and host.enable_tunneling


def check_ports(resource_port: int, port: int) -> None:
    """A resource port is 1-65535; a local port 0-65535 (0: a free one)."""
    if not 1 <= resource_port <= 65535:
        raise _invalid("resourcePort", f"{resource_port} is not a port (1-65535)")
    if not 0 <= port <= 65535:
        raise _invalid("port", f"{port} is not a port (1-65535, or 0 for a free one)")


def _instance(plan: Plan, target: str) -> Backend:
    try:
        return queries.find_instance(plan, target)
    except LbsimError as error:
        message = f"target: {error.message}"
        raise LbsimError(error.code, message, Pointer.parse("/target")) from None


def _named(plan: Plan, name: str) -> tuple[BastionHost, ...]:
    found = tuple(host for host in plan.bastions if host.name.lower() == name.lower())
    if not found:
        known = ", ".join(host.name for host in plan.bastions)
        raise LbsimError(
            "BastionHostNotFound",
            f"bastion: no bastion host {name!r} in the deployment (bastion hosts: {known}).",
            Pointer.parse("/bastion"),
        )
    return found


def _reaches(host: BastionHost, address: str) -> bool:
    """Whether ``address`` is in the host's virtual network (any, when its prefixes are
    not known)."""
    if not host.virtual_network_prefixes:
        return True
    ip = ipaddress.ip_address(address)
    for prefix in host.virtual_network_prefixes:
        network = ipaddress.ip_network(prefix, strict=False)
        if ip.version == network.version and ip in network:
            return True
    return False


def _invalid(field: str, message: str) -> LbsimError:
    return LbsimError("InvalidArgument", f"{field}: {message}", Pointer.parse(f"/{field}"))
