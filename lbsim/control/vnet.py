"""Flows inside the virtual network: from one private address (a jump box, a SOCKS endpoint
standing for a VM, a bastion host) straight to an instance's private address and port, with
no load balancer between them.

Such a flow meets only the destination's inbound NSGs (its subnet's, then its NIC's), with
the sender's private address as source, so ``AllowVnetInBound`` lets it in where a rule that
allows only ``Internet`` would not
(https://learn.microsoft.com/en-us/azure/virtual-network/network-security-groups-overview).
Outbound rules of the sender's own NSGs are not judged: the default ones allow the virtual
network, and lbsim judges inbound flows only.
"""

from __future__ import annotations

import ipaddress
from enum import Enum

import attrs

from lbsim.control.check import Guard
from lbsim.control.nsg import Decision
from lbsim.control.types import Backend, Plan
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol

__all__ = ["Outcome", "Reach", "default_source", "reach"]


class Outcome(Enum):
    """What becomes of a connection to a private address and port."""

    ALLOWED = "allowed"  # the destination's NSGs let it in
    DENIED = "denied"  # a rule of the destination's NSGs refused it
    STOPPED = "stopped"  # the address is a stopped instance's: nothing answers
    UNREACHABLE = "unreachable"  # no NIC of the deployment has the address


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

    @property
    def rule(self) -> str:
        """The deciding rule's flow-log name ("" when none decided)."""
        if self.decision is None or self.decision.rule is None:
            return ""
        return self.decision.rule.flow_log_name

    def describe(self) -> str:
        """One line for a log, a SOCKS client or an SSH client."""
        where = f"{self.destination}:{self.port}"
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
    protocol: TransportProtocol = TransportProtocol.TCP,
    source_port: int = 49152,
    guard: Guard | None = None,
) -> Reach:
    """Judge a flow from ``source`` to ``destination``:``port`` inside the virtual network.
    ``guard`` (the plan's) saves building NSG contexts again."""
    backend = backend_at(plan, destination)
    if backend is None:
        return Reach(Outcome.UNREACHABLE, source, destination, port)
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


def backend_at(plan: Plan, address: str) -> Backend | None:
    """The backend whose private address is ``address`` (spelt any way), or None."""
    try:
        wanted = ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        return None
    for backend in plan.backends:
        try:
            if ipaddress.ip_address(backend.private_ip_address) == wanted:
                return backend
        except ValueError:
            continue
    return None


def default_source(plan: Plan) -> str | None:
    """An address inside the deployment's first virtual network that no backend holds,
    for a VM lbsim stands for (the SOCKS endpoint): the highest usable address of the
    first backend's virtual network prefix. None when no backend is in a virtual network."""
    held = {b.private_ip_address for b in plan.backends}
    for backend in plan.backends:
        for prefix in backend.virtual_network_prefixes:
            network = ipaddress.ip_network(prefix, strict=False)
            if network.num_addresses < 8:
                continue
            # Azure reserves a subnet's first four addresses and its last one
            first, last = int(network.network_address) + 4, int(network.broadcast_address) - 1
            candidate = last
            while candidate > first and str(ipaddress.ip_address(candidate)) in held:
                candidate -= 1
            return str(ipaddress.ip_address(candidate))
    return None
