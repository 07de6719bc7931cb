"""Flows inside the virtual network: from one private address (a jump box, a SOCKS endpoint
standing for a VM, a bastion host) straight to an instance's private address and port, with
no load balancer between them.

Such a flow meets only the destination's inbound NSGs (its subnet's, then its NIC's), with
the sender's private address as source, so ``AllowVnetInBound`` lets it in where a rule that
allows only ``Internet`` would not
(https://learn.microsoft.com/en-us/azure/virtual-network/network-security-groups-overview).
Outbound rules of the sender's own NSGs are not judged: the default ones allow the virtual
network, and lbsim judges inbound flows only.

A flow stays inside the sender's virtual network: lbsim emulates no peering, so an instance
of another virtual network is unreachable even when its address is written, and where two
virtual networks share an address space the sender's own instance is the one reached.
"""

from __future__ import annotations

import functools
import ipaddress
from enum import Enum

import attrs

from lbsim.control.check import Guard
from lbsim.control.nsg import Decision
from lbsim.control.types import Backend, BastionHost, Plan
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol

__all__ = ["Outcome", "Reach", "default_source", "network_id", "network_of", "reach"]


class Outcome(Enum):
    """What becomes of a connection to a private address and port."""

    ALLOWED = "allowed"  # the destination's NSGs let it in
    DENIED = "denied"  # a rule of the destination's NSGs refused it
    STOPPED = "stopped"  # the address is a stopped instance's: nothing answers
    UNREACHABLE = "unreachable"  # no NIC of the sender's virtual network has the address


@attrs.frozen
class Reach:
    """A flow inside the virtual network, judged: the backend it reaches (None when no NIC has
    the address) and the NSG decision (None unless judged)."""

    outcome: Outcome
    source: str
    destination: str
    port: int
    backend: Backend | None = None
    decision: Decision | None = None
    elsewhere: str = ""  # unreachable: the other virtual network that has the address

    @property
    def rule(self) -> str:
        """The deciding rule's flow-log name ("" when none decided)."""
        if self.decision is None or self.decision.rule is None:
            return ""
        return self.decision.rule.flow_log_name

    def describe(self) -> str:
        """One line for a log, a SOCKS client or an SSH client."""
        where = f"{self.destination}:{self.port}"
        if self.outcome is Outcome.UNREACHABLE and self.elsewhere:
            return (
                f"{where}: the address is in virtual network {self.elsewhere}, not the "
                f"sender's (lbsim emulates no peering)"
            )
        if self.outcome is Outcome.UNREACHABLE:
            return f"{where}: no instance of the deployment has this address"
        assert self.backend is not None
        name = f"{self.backend.label} ({where})"
        if self.outcome is Outcome.STOPPED:
            return f"{name} is stopped"
        verb = "allowed" if self.outcome is Outcome.ALLOWED else "denied"
        by = f" by NSG rule {self.rule}" if self.rule else ""
        return f"{name} from {self.source}: {verb}{by}"


def reach(
    plan: Plan,
    source: str,
    destination: str,
    port: int,
    *,
    network: str | None = None,
    protocol: TransportProtocol = TransportProtocol.TCP,
    source_port: int = 49152,
    guard: Guard | None = None,
) -> Reach:
    """Judge a flow from ``source`` to ``destination``:``port`` inside the virtual network
    ``network`` (a virtual network's id; None: the one :func:`network_of` finds for
    ``source``, and any when it finds none). ``guard`` (the plan's) saves building NSG
    contexts again."""
    network = network_of(plan, source) if network is None else network.lower()
    found = backends_at(plan, destination)
    inside = [b for b in found if network is None or network_id(b.subnet_id) == network]
    if not inside:
        other = _name(found[0].subnet_id) if found else ""
        return Reach(Outcome.UNREACHABLE, source, destination, port, elsewhere=other)
    backend = inside[0]
    if not backend.running:
        return Reach(Outcome.STOPPED, source, destination, port, backend)
    guard = guard or Guard(plan)
    try:
        flow = guard.flow(protocol, source, source_port, backend, port)
        decision = guard.decide(flow, backend)
    except LbsimError:  # mixed address families: no rule can let it in
        return Reach(Outcome.DENIED, source, destination, port, backend)
    outcome = Outcome.ALLOWED if decision.allowed else Outcome.DENIED
    return Reach(outcome, source, destination, port, backend, decision)


def network_id(subnet_id: str | None) -> str | None:
    """The (lower-cased) id of the virtual network a subnet id is in; None without one."""
    if not subnet_id or "/subnets/" not in subnet_id.lower():
        return None
    return subnet_id.lower().rsplit("/subnets/", 1)[0]


def network_of(plan: Plan, address: str) -> str | None:
    """The virtual network a sender at ``address`` is in: that of the NIC or bastion host
    holding it, else the first (in plan order) whose address space has it; None if none."""
    ip = _ip(address)
    if ip is None:
        return None
    holders: list[Backend | BastionHost] = [*plan.backends, *plan.bastions]
    for holder in holders:
        if _ip(holder.private_ip_address) == ip and network_id(holder.subnet_id):
            return network_id(holder.subnet_id)
    for holder in holders:
        if _within(ip, holder.virtual_network_prefixes) and network_id(holder.subnet_id):
            return network_id(holder.subnet_id)
    return None


def backends_at(plan: Plan, address: str) -> list[Backend]:
    """The backends whose private address is ``address`` (spelt any way): more than one
    only where virtual networks share an address space."""
    wanted = _ip(address)
    if wanted is None:
        return []
    return [b for b in plan.backends if _ip(b.private_ip_address) == wanted]


def default_source(plan: Plan) -> str | None:
    """An address that no NIC holds in the first backend's subnet, for a VM lbsim stands for
    (the SOCKS endpoint): the subnet's highest usable one (Azure reserves a subnet's first
    four addresses and its last), so rules naming the subnet's prefix match it. Without a
    known subnet prefix, the same in its virtual network's. None when no backend is in one."""
    held = {_ip(b.private_ip_address) for b in plan.backends}
    for backend in plan.backends:
        for prefix in backend.subnet_prefixes or backend.virtual_network_prefixes:
            network = ipaddress.ip_network(prefix, strict=False)
            if network.num_addresses < 8:
                continue
            first, last = int(network.network_address) + 4, int(network.broadcast_address) - 1
            candidate = last
            while candidate > first and ipaddress.ip_address(candidate) in held:
                candidate -= 1
            return str(ipaddress.ip_address(candidate))
    return None


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@functools.lru_cache(maxsize=65536)
def _ip(address: str) -> Address | None:
    """An address parsed once: every connection inside the network compares the plan's
    private addresses (bounded cache, as the NSG guard's)."""
    try:
        return ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None


def _within(ip: Address, prefixes: tuple[str, ...]) -> bool:
    for prefix in prefixes:
        network = ipaddress.ip_network(prefix, strict=False)
        if network.version == ip.version and ip in network:
            return True
    return False


def _name(subnet_id: str | None) -> str:
    """A virtual network's name, as its subnet's id spells it."""
    if not subnet_id or "/subnets/" not in subnet_id.lower():
        return "(none)"
    return subnet_id[: subnet_id.lower().rindex("/subnets/")].rsplit("/", 1)[-1]
