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
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from lbsim.api import queries
from lbsim.control.types import Backend, BastionHost, Plan
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.tunnels import Tunnels
from lbsim.errors import LbsimError
from lbsim.pointer import Pointer

__all__ = ["Bastion", "check_ports", "check_tunneling", "choose"]

MAX_LEASE_S = 3600.0


class Bastion:
    """The bastion tunnels of one session (``session.bastion``): :meth:`run` holds them in
    the session's nursery; the session's handle methods and the routes call the rest."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._tunnels = Tunnels(runtime.vnet)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the tunnels until cancelled (they close when the runtime ends)."""
        await self._tunnels.run(task_status=task_status)

    async def open_tunnel(
        self,
        target: str,
        resource_port: int,
        port: int = 0,
        bastion: str | None = None,
        lease_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Open a tunnel, as ``az network bastion tunnel`` does: 127.0.0.1:``port`` (0: a
        free one) reaches port ``resource_port`` of ``target`` (``web/1`` or a VM's name)
        from the bastion host, judged by the target's NSGs per connection; with
        ``lease_seconds``, closed once that long passes without :meth:`renew_tunnel`."""
        check_ports(resource_port, port)
        check_lease(lease_seconds)
        host, backend = choose(self.runtime.plan, target, bastion)
        if self.runtime.stopping:
            raise LbsimError("OperationNotAllowed", "lbsim is stopping: no tunnel opens")
        address = backend.private_ip_address
        made = await self._tunnels.open(
            host, backend.label, address, resource_port, port, lease_s=lease_seconds
        )
        return made.to_json()

    def renew_tunnel(self, tunnel_id: str) -> dict[str, Any]:
        """Renew a tunnel's lease from now (``ResourceNotFound`` once it is closed)."""
        return self._tunnels.renew(tunnel_id).to_json()

    def close_tunnel(self, tunnel_id: str) -> dict[str, Any]:
        """Close a tunnel (its listener and its connections); its JSON."""
        return self._tunnels.close(tunnel_id).to_json()

    def tunnels(self) -> list[dict[str, Any]]:
        """The open tunnels, in the order opened."""
        return [tunnel.to_json() for tunnel in self._tunnels.all()]

    @asynccontextmanager
    async def bastion_tunnel(
        self, target: str, resource_port: int, port: int = 0, bastion: str | None = None
    ) -> AsyncIterator[tuple[str, int]]:
        """``async with lb.bastion_tunnel("web/1", 22) as (host, port):`` a tunnel open
        inside the block (no lease), closed on the way out."""
        made = await self.open_tunnel(target, resource_port, port, bastion)
        try:
            yield made["listenAddress"], made["listenPort"]
        finally:
            if any(t["id"] == made["id"] for t in self.tunnels()):
                self.close_tunnel(made["id"])


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


def check_lease(lease_seconds: float | None) -> None:
    """A lease is more than 0 s and at most an hour."""
    if lease_seconds is not None and not 0 < lease_seconds <= MAX_LEASE_S:
        raise _invalid("leaseSeconds", f"{lease_seconds:g} is not more than 0 and at most 3600")


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
