"""Would Azure let this flow through? The NAT table and the NSGs together.

Inbound NSG processing happens after the load balancer translated the destination: the flow
the NSGs judge has the original client's address and port as source and the backend's
private address and backend port as destination
(https://learn.microsoft.com/en-us/azure/virtual-network/network-security-group-how-it-works).
With floating IP on the rule (``enableFloatingIP``) the load balancer leaves the frontend's
address in place: the packet reaches the backend, and so its NSGs, with the frontend's address
and the backend port as destination
(https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-floating-ip).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Sequence

import attrs

from lbsim.control.distribution import pick
from lbsim.control.nsg import (
    ALLOWED_WITHOUT_NSG,
    CLOSED_WITHOUT_NSG,
    Decision,
    Flow,
    IPAddress,
    NetworkContext,
    Verdict,
    decide,
    evaluate,
)
from lbsim.control.types import Backend, BalancingEntry, Frontend, NatEntry, Plan
from lbsim.errors import LbsimError
from lbsim.model import SecurityRuleDirection, SecurityRuleProtocol, TransportProtocol

_MAX_CACHED = 65536
_NSG_PROTOCOL = {
    TransportProtocol.TCP: SecurityRuleProtocol.TCP,
    TransportProtocol.UDP: SecurityRuleProtocol.UDP,
}


@attrs.frozen
class FlowCheck:
    """A flow's verdict, with the NAT entry or load-balancing rule it came through."""

    flow: Flow
    backend: Backend
    verdict: Verdict
    nat: NatEntry | None = None
    balancing: BalancingEntry | None = None

    @property
    def floating_ip(self) -> bool:
        """Whether the flow's rule enables floating IP: the NSGs judged the frontend's
        address as destination, not the backend's."""
        entry = self.nat or self.balancing
        return entry is not None and entry.enable_floating_ip


class Guard:
    """NSG decisions for the backends of one plan; network contexts are built once."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._asg = plan.application_security_group_members()
        self._addresses: dict[str, IPAddress] = {}

    @functools.lru_cache(maxsize=1024)  # noqa: B019  (one Guard per plan, bounded)
    def context(self, prefixes: tuple[str, ...]) -> NetworkContext:
        return NetworkContext(virtual_network_prefixes=prefixes, asg_members=self._asg)

    def flow(
        self,
        protocol: TransportProtocol,
        source: str,
        source_port: int,
        backend: Backend,
        backend_port: int,
        *,
        destination: str | None = None,
    ) -> Flow:
        """The flow as the NSGs of ``backend`` see it: to ``destination`` (by default the
        backend's private address; see :func:`nsg_destination`) and ``backend_port``."""
        return Flow(
            protocol=_NSG_PROTOCOL[protocol],
            direction=SecurityRuleDirection.INBOUND,
            source_address=self._address(source),
            source_port=source_port,
            destination_address=self._address(destination or backend.private_ip_address),
            destination_port=backend_port,
        )

    def _address(self, text: str) -> IPAddress | str:
        """An address parsed once (bounded cache): flows are judged on every new connection."""
        found = self._addresses.get(text)
        if found is None:
            if len(self._addresses) >= _MAX_CACHED:
                self._addresses.clear()
            try:
                found = self._addresses[text] = ipaddress.ip_address(text)
            except ValueError:  # left to Flow, which reports it
                return text
        return found

    def decide(self, flow: Flow, backend: Backend, frontend: Frontend | None = None) -> Decision:
        """The fast decision, for the data plane's every new flow (through ``frontend``)."""
        if _unguarded(backend) and frontend is not None:
            return self.without_nsg(flow, backend, frontend)
        ctx = self.context(backend.virtual_network_prefixes)
        return decide(flow, backend.subnet_nsg, backend.nic_nsg, ctx)

    def explain(self, flow: Flow, backend: Backend, frontend: Frontend | None = None) -> Verdict:
        if _unguarded(backend) and frontend is not None:
            return Verdict(self.without_nsg(flow, backend, frontend).access)
        ctx = self.context(backend.virtual_network_prefixes)
        return evaluate(flow, backend.subnet_nsg, backend.nic_nsg, ctx)

    def without_nsg(self, flow: Flow, backend: Backend, frontend: Frontend) -> Decision:
        """A flow through ``frontend`` to a backend that no NSG guards: a Basic load balancer
        lets it in; a Standard one only from the virtual network to an internal frontend."""
        if not frontend.closed_by_default:
            return ALLOWED_WITHOUT_NSG
        if frontend.internal and _in_network(flow.source_address, backend):
            return ALLOWED_WITHOUT_NSG
        return CLOSED_WITHOUT_NSG


def nsg_destination(entry: NatEntry | BalancingEntry, backend: Backend) -> str:
    """The destination address the backend's NSGs judge for a flow through ``entry``: the
    backend's private address, or with floating IP the frontend's (its private address for
    an internal frontend, else the address that stands for its public IP)."""
    if not entry.enable_floating_ip:
        return backend.private_ip_address
    return entry.frontend.private_ip_address or entry.frontend.address


def _unguarded(backend: Backend) -> bool:
    return backend.subnet_nsg is None and backend.nic_nsg is None


def _in_network(address: object, backend: Backend) -> bool:
    """Whether ``address`` is in the backend's virtual network."""
    for prefix in backend.virtual_network_prefixes:
        network = ipaddress.ip_network(prefix, strict=False)
        if isinstance(address, type(network.network_address)) and address in network:
            return True
    return False


def find_entry(
    plan: Plan, protocol: TransportProtocol, port: int, frontend: str | None = None
) -> NatEntry | BalancingEntry:
    """What listens on ``port``: a NAT entry or a load-balancing rule; ``frontend``
    (``LB/NAME``, ``NAME`` or an address) picks among several frontends. A clear error if
    nothing does, if several frontends do, or if the rule there has no backend."""
    if frontend is not None and not any(_named(f, frontend) for f in plan.frontends):
        known = ", ".join(sorted(f.label for f in plan.frontends)) or "none"
        raise LbsimError(
            "UnknownFrontend", f"--frontend {frontend} matches no frontend; frontends: {known}."
        )
    everything: tuple[NatEntry | BalancingEntry, ...] = (*plan.nat, *plan.balancing)
    entry = _find(protocol, port, frontend, everything)
    if entry is None:
        other = [
            e.protocol.value
            for e in everything
            if e.frontend_port == port and e.protocol is not protocol
        ]
        hint = f" (it is a {other[0]} port)" if other else ""
        raise LbsimError(
            "NoSuchFrontendPort",
            f"No inbound NAT entry or load-balancing rule listens on {protocol.value} port "
            f"{port}{hint}.",
        )
    if isinstance(entry, BalancingEntry) and not entry.backends:
        raise LbsimError(
            "LoadBalancingRuleHasNoBackend",
            f"The load-balancing rule '{entry.rule_name}' on {protocol.value} port {port} has "
            "an empty backend pool; Azure has nowhere to send its flows.",
        )
    return entry


def _named(frontend: Frontend, name: str) -> bool:
    """Whether ``name`` (``LB/NAME``, ``NAME`` or an address) names ``frontend``."""
    wanted = name.lower()
    return wanted in (frontend.label.lower(), frontend.name.lower(), frontend.address)


def _find(
    protocol: TransportProtocol,
    port: int,
    frontend: str | None,
    entries: Sequence[NatEntry | BalancingEntry],
) -> NatEntry | BalancingEntry | None:
    found = [e for e in entries if e.protocol is protocol and e.frontend_port == port]
    if frontend is not None:
        found = [e for e in found if _named(e.frontend, frontend)]
    if len({e.frontend.key for e in found}) > 1:
        names = ", ".join(sorted({e.frontend.label for e in found}))
        raise LbsimError(
            "AmbiguousFrontendPort",
            f"{protocol.value} port {port} is on several frontends ({names}); pick one with "
            "--frontend LB/NAME.",
        )
    return found[0] if found else None


def check_balancing(plan: Plan, entry: BalancingEntry, source: str, source_port: int) -> FlowCheck:
    """The verdict for a flow through a load-balancing rule, on the backend it would reach."""
    client = (source, source_port)
    frontend = (entry.frontend.address, entry.frontend_port)
    backend = pick(entry.backends, entry.load_distribution, entry.protocol, client, frontend)
    guard = Guard(plan)
    destination = nsg_destination(entry, backend)
    flow = guard.flow(
        entry.protocol, source, source_port, backend, entry.backend_port, destination=destination
    )
    verdict = guard.explain(flow, backend, entry.frontend)
    return FlowCheck(flow, backend, verdict, balancing=entry)


def find_nat_entry(
    plan: Plan, protocol: TransportProtocol, port: int, frontend: str | None = None
) -> NatEntry:
    """The NAT entry on ``port``; ``frontend`` (``LB/NAME`` or an address) picks among several."""
    entry = _find(protocol, port, frontend, plan.nat)
    if not isinstance(entry, NatEntry):
        raise LbsimError(
            "NoSuchFrontendPort", f"No inbound NAT entry listens on {protocol.value} port {port}."
        )
    return entry


def check_nat(plan: Plan, entry: NatEntry, source: str, source_port: int) -> FlowCheck:
    if entry.backend is None:
        raise LbsimError(
            "NatRuleHasNoBackend",
            f"The inbound NAT rule '{entry.rule_name}' is not bound to any NIC; Azure drops its "
            "traffic.",
        )
    guard = Guard(plan)
    destination = nsg_destination(entry, entry.backend)
    flow = guard.flow(
        entry.protocol,
        source,
        source_port,
        entry.backend,
        entry.backend_port,
        destination=destination,
    )
    verdict = guard.explain(flow, entry.backend, entry.frontend)
    return FlowCheck(flow, entry.backend, verdict, nat=entry)


def check_direct(
    plan: Plan,
    protocol: TransportProtocol,
    source: str,
    source_port: int,
    *,
    address: str,
    port: int,
) -> FlowCheck:
    """A flow straight to a backend's private address (no NAT), or to a frontend address."""
    for entry in plan.nat:
        if (
            entry.frontend.address == address
            and entry.protocol is protocol
            and entry.frontend_port == port
        ):
            return check_nat(plan, entry, source, source_port)
    backend = next((b for b in plan.backends if b.private_ip_address == address), None)
    if backend is None:
        raise LbsimError(
            "NoSuchDestination",
            f"{address} is neither a frontend address nor the private address of a backend.",
        )
    guard = Guard(plan)
    flow = guard.flow(protocol, source, source_port, backend, port)
    return FlowCheck(flow, backend, guard.explain(flow, backend))
