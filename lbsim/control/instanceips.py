"""Instance public IPs: ways into one instance that bypass every load balancer, as a jump box
has. A VM's NIC may have a public IP of its own (``publicIPAddress`` of an ipConfiguration),
and a scale set may give each instance one (``publicIPAddressConfiguration``).

Each becomes a ``Frontend`` of its own and one ``NatEntry`` (``NatKind.INSTANCE_PUBLIC_IP``)
per TCP port its NSGs could let in (``lbsim.control.openports``): frontend port == backend
port, no load balancer in between, every connection judged by the instance's NSGs with the
client's presented address, as any NAT entry's.

Names. A frontend's label is ``<public IP>/<instance>``: ``jumpbox-pip/jumpbox`` for the public
IP ``jumpbox-pip`` of VM ``jumpbox``'s NIC, ``pub/web_1`` for instance 1 of scale set ``web``
whose ipConfiguration's ``publicIPAddressConfiguration`` is named ``pub`` (Azure names every
instance's public IP after the configuration). An entry is named ``<public IP>.<port>``
(``jumpbox-pip.22``); its ``load_balancer`` column holds the public IP's name.

Addresses. A NIC's public IP is a resource of the template, which the loader numbered with the
others (127.0.0.N in order of use). A scale set's per-instance public IPs are not: each takes
the lowest loopback address that no public IP and no other frontend uses, and keeps it for the
instance's life (``held``: the addresses of the plan running before), as Azure keeps an
instance's public IP until the instance is deleted. The SKU (Standard: closed to what no NSG
allows; Basic: open) is the public IP's, or the configuration's ``sku``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import attrs

from lbsim.control.backends import Member
from lbsim.control.frontends import Spare
from lbsim.control.index import Index
from lbsim.control.nsg import NetworkContext
from lbsim.control.openports import open_ports, same_ports_key
from lbsim.control.types import Backend, Frontend, NatEntry, NatKind, Plan
from lbsim.errors import Problem, Severity
from lbsim.model import Deployment, PublicIPAddress, TransportProtocol
from lbsim.pointer import Pointer


@attrs.frozen
class InstancePublicIP:
    """An instance's own public IP: its frontend, its backend and the ports to listen on."""

    frontend: Frontend
    backend: Backend
    ports: tuple[int, ...]
    idle_timeout_s: float = 240.0
    at: Pointer | None = None


def held_addresses(plan: Plan) -> dict[str, str]:
    """Frontend key -> address of every instance public IP of ``plan``."""
    return {
        entry.frontend.key: entry.frontend.address
        for entry in plan.nat
        if entry.kind is NatKind.INSTANCE_PUBLIC_IP
    }


def instance_public_ips(
    deployment: Deployment,
    index: Index,
    members: Sequence[Member],
    frontends: Mapping[str, Frontend],
    held: Mapping[str, str] | None = None,
) -> tuple[list[InstancePublicIP], list[Problem]]:
    """Every instance public IP of the deployment, with the problems found (a public IP used
    twice, ports cut off, a public IP that admits nothing)."""
    planner = _Planner(deployment, index, members, frontends, held or {})
    found = [*planner.nic_public_ips(), *planner.scale_set_public_ips()]
    return [planner.with_ports(f) for f in found], planner.problems


def instance_entries(
    public_ips: Sequence[InstancePublicIP], frontends: Mapping[str, Frontend]
) -> list[NatEntry]:
    """One TCP entry per port of each instance public IP, on its frontend as ``frontends``
    has it (after ``--frontend`` overrides)."""
    entries: list[NatEntry] = []
    for found in public_ips:
        frontend = frontends.get(found.frontend.key, found.frontend)
        entries += [_entry(found, frontend, port) for port in found.ports]
    return entries


def _entry(found: InstancePublicIP, frontend: Frontend, port: int) -> NatEntry:
    pip = frontend.public_ip_address or frontend.load_balancer
    return NatEntry(
        load_balancer=frontend.load_balancer,
        rule_name=f"{pip}.{port}",
        kind=NatKind.INSTANCE_PUBLIC_IP,
        frontend=frontend,
        protocol=TransportProtocol.TCP,
        frontend_port=port,
        backend_port=port,
        backend=found.backend,
        idle_timeout_s=found.idle_timeout_s,
        source_rule=pip,
        source_id=frontend.id,
        at=found.at,
    )


class _Planner:
    def __init__(
        self,
        deployment: Deployment,
        index: Index,
        members: Sequence[Member],
        frontends: Mapping[str, Frontend],
        held: Mapping[str, str],
    ) -> None:
        self.deployment, self.index, self.members = deployment, index, members
        self.problems: list[Problem] = []
        self.taken = {f.address for f in frontends.values()}
        self.taken |= {p.ip_address for p in deployment.public_ip_addresses if p.ip_address}
        self.held = held
        asg: dict[str, list[str]] = {}
        for member in members:
            for group in member.backend.application_security_groups:
                asg.setdefault(group, []).append(member.backend.private_ip_address)
        self.asg = asg
        self.contexts: dict[tuple[str, ...], NetworkContext] = {}
        self.known: dict[tuple[object, ...], tuple[list[int], bool]] = {}

    # --- a VM NIC's public IP -------------------------------------------------------------------
    def nic_public_ips(self) -> Iterator[InstancePublicIP]:
        owners = self._load_balancer_public_ips()
        for member in self.members:
            ipc, backend = member.ip_configuration, member.backend
            if backend.scale_set is not None or ipc.public_ip_address is None:
                continue
            pip = self.index.resolve(ipc.public_ip_address, PublicIPAddress, backend.key)
            if pip is None or not pip.ip_address:
                continue
            if pip.id.lower() in owners:
                self._in_use(backend, pip, owners[pip.id.lower()], ipc.public_ip_address.at)
                continue
            owners[pip.id.lower()] = backend.ip_configuration_id
            frontend = Frontend(
                pip.id, pip.name, backend.name, pip.ip_address, pip.name, sku=pip.sku
            )
            yield InstancePublicIP(
                frontend, backend, (), pip.idle_timeout_in_minutes * 60.0, at=ipc.at
            )

    def _load_balancer_public_ips(self) -> dict[str, str]:
        """Public IP id (lowered) -> the frontend that uses it."""
        return {
            fe.public_ip_address.key: fe.id
            for lb in self.deployment.load_balancers
            for fe in lb.frontend_ip_configurations
            if fe.public_ip_address is not None
        }

    def _in_use(
        self, backend: Backend, pip: PublicIPAddress, owner: str, at: Pointer | None
    ) -> None:
        self.problems.append(
            Problem(
                "PublicIPAddressInUse",
                f"IP configuration {backend.ip_configuration_id} is referencing public IP "
                f"address {pip.id} that is already allocated to resource {owner}.",
                at,
            )
        )

    # --- a scale set's per-instance public IPs -------------------------------------------------
    def scale_set_public_ips(self) -> Iterator[InstancePublicIP]:
        wanted = [
            (m, self._instance_frontend(m))
            for m in self.members
            if m.backend.scale_set is not None
            and m.ip_configuration.public_ip_address_configuration
        ]
        kept = self._keep_held([frontend for _, frontend in wanted])
        spare = Spare(self.taken)
        for member, frontend in wanted:
            address = kept.get(frontend.key) or spare.take()
            config = member.ip_configuration.public_ip_address_configuration
            idle = (config.idle_timeout_in_minutes if config else 4) * 60.0
            yield InstancePublicIP(
                attrs.evolve(frontend, address=address),
                member.backend,
                (),
                idle,
                at=member.ip_configuration.at,
            )

    def _instance_frontend(self, member: Member) -> Frontend:
        config = member.ip_configuration.public_ip_address_configuration
        name = config.name if config else ""
        backend = member.backend
        return Frontend(
            f"{backend.ip_configuration_id}/publicIPAddresses/{name}",
            name,
            backend.name,
            "",
            public_ip_address=name,
            sku=config.sku if config else "Basic",
        )

    def _keep_held(self, frontends: Sequence[Frontend]) -> dict[str, str]:
        """The held addresses that existing instances keep: those no other frontend took."""
        kept: dict[str, str] = {}
        for frontend in frontends:
            address = self.held.get(frontend.key)
            if address and address not in self.taken:
                kept[frontend.key] = address
                self.taken.add(address)
        return kept

    # --- ports ------------------------------------------------------------------------------------
    def with_ports(self, found: InstancePublicIP) -> InstancePublicIP:
        backend, frontend = found.backend, found.frontend
        ports, capped = self._ports(backend, frontend.closed_by_default)
        if capped:
            self._warn(
                "InstancePublicIPPortsCapped",
                f"The public IP {frontend.label} could admit more than {len(ports)} TCP ports "
                f"under its NSGs; lbsim listens on the first {len(ports)}.",
                found.at,
            )
        if not ports:
            self._warn(
                "InstancePublicIPAdmitsNothing",
                f"The public IP {frontend.label} ({frontend.sku}) admits no TCP connection: "
                f"{_why_closed(backend)}; lbsim listens on nothing for it.",
                found.at,
            )
        return attrs.evolve(found, ports=tuple(ports))

    def _ports(self, backend: Backend, closed: bool) -> tuple[list[int], bool]:
        """``open_ports``, once per group of backends that agree on everything it reads."""
        key = same_ports_key(backend, closed)
        if key not in self.known:
            ctx = self._context(backend.virtual_network_prefixes)
            self.known[key] = open_ports(backend, ctx, closed=closed)
        return self.known[key]

    def _context(self, prefixes: tuple[str, ...]) -> NetworkContext:
        if prefixes not in self.contexts:
            self.contexts[prefixes] = NetworkContext(
                virtual_network_prefixes=prefixes, asg_members=self.asg
            )
        return self.contexts[prefixes]

    def _warn(self, code: str, message: str, at: Pointer | None) -> None:
        self.problems.append(Problem(code, message, at, severity=Severity.WARNING))


def _why_closed(backend: Backend) -> str:
    if backend.subnet_nsg is None and backend.nic_nsg is None:
        return "a Standard public IP admits only what an NSG allows, and no NSG guards it"
    return "its NSGs allow no TCP port from outside the virtual network"
