"""The values the control plane produces: what the data plane executes."""

from __future__ import annotations

from enum import Enum

import attrs

from lbsim.errors import Problem
from lbsim.model import (
    LoadDistribution,
    NetworkSecurityGroup,
    ProbeProtocol,
    TransportProtocol,
)
from lbsim.model.common import at_field
from lbsim.pointer import Pointer


@attrs.frozen
class Backend:
    """One backend IP configuration: a scale-set instance's NIC, or a standalone NIC."""

    ip_configuration_id: str
    name: str  # "vmss_3" for a scale-set instance (Azure's instance name), else the VM/NIC name
    private_ip_address: str
    scale_set: str | None = None
    instance_id: int | None = None
    network_interface: str = ""
    subnet_id: str | None = None
    subnet_nsg: NetworkSecurityGroup | None = None
    nic_nsg: NetworkSecurityGroup | None = None
    application_security_groups: tuple[str, ...] = ()  # lower-cased ASG ids
    virtual_network_prefixes: tuple[str, ...] = ()
    subnet_prefixes: tuple[str, ...] = ()
    os_type: str | None = None
    running: bool = True  # False for a stopped or deallocated scale-set instance
    computer_name: str = ""  # its hostname as Azure forms it ("nsgvmss00002D"), "" if unknown
    generation: int = 0  # how many times it was reimaged (a new OS disk: a new SSH host key)

    @property
    def key(self) -> str:
        return self.ip_configuration_id.lower()

    @property
    def label(self) -> str:
        if self.scale_set is not None:
            return f"{self.scale_set}/{self.instance_id}"
        return self.name


@attrs.frozen
class Frontend:
    """A load balancer frontend IP configuration, and the local address it is bound to."""

    id: str
    load_balancer: str
    name: str
    address: str  # where lbsim listens (a loopback address by default)
    public_ip_address: str | None = None  # name of the public IP resource, if public
    private_ip_address: str | None = None  # for internal frontends
    sku: str = "Basic"  # the load balancer's

    @property
    def key(self) -> str:
        return self.id.lower()

    @property
    def closed_by_default(self) -> bool:
        """A Standard load balancer admits no inbound flow that no NSG allows (a Basic one is
        open when no NSG applies)."""
        return self.sku.lower() == "standard"

    @property
    def internal(self) -> bool:
        return self.public_ip_address is None

    @property
    def label(self) -> str:
        return f"{self.load_balancer}/{self.name}"


class NatKind(Enum):
    POOL = "InboundNatPool"
    RULE_V1 = "InboundNatRule"
    RULE_V2 = "InboundNatRuleV2"
    # an instance's own public IP (a VM's NIC, or a scale set's per-instance public IP): no
    # load balancer, frontend port == backend port, judged by the instance's NSGs
    INSTANCE_PUBLIC_IP = "InstancePublicIP"


@attrs.frozen
class NatEntry:
    """One frontend port forwarded to one backend port of one backend (one transport)."""

    load_balancer: str
    rule_name: str  # "<pool>.<instanceId>" for pools (Azure's name), the rule's name otherwise
    kind: NatKind
    frontend: Frontend
    protocol: TransportProtocol  # Tcp or Udp: "All" is expanded into two entries
    frontend_port: int
    backend_port: int
    backend: Backend | None  # None: a V1 rule that no NIC references
    idle_timeout_s: float = 240.0
    enable_tcp_reset: bool = False
    enable_floating_ip: bool = False
    source_rule: str = ""  # the pool or rule this entry comes from
    source_id: str = ""  # that pool's or rule's resource id (held ports are keyed by it)
    at: Pointer | None = at_field()

    @property
    def listen_key(self) -> tuple[str, TransportProtocol, int]:
        return (self.frontend.address, self.protocol, self.frontend_port)


@attrs.frozen
class PlannedProbe:
    load_balancer: str
    name: str
    protocol: ProbeProtocol
    port: int
    interval_s: float
    threshold: int
    request_path: str | None = None
    at: Pointer | None = at_field()


@attrs.frozen
class BalancingEntry:
    """One load-balancing rule, for one transport, with its backends."""

    load_balancer: str
    rule_name: str
    frontend: Frontend
    protocol: TransportProtocol
    frontend_port: int
    backend_port: int
    backends: tuple[Backend, ...]
    probe: PlannedProbe | None = None
    load_distribution: LoadDistribution = LoadDistribution.DEFAULT
    idle_timeout_s: float = 240.0
    enable_tcp_reset: bool = False
    enable_floating_ip: bool = False
    at: Pointer | None = at_field()

    @property
    def listen_key(self) -> tuple[str, TransportProtocol, int]:
        return (self.frontend.address, self.protocol, self.frontend_port)


@attrs.frozen
class BastionHost:
    """An Azure Bastion host (``Microsoft.Network/bastionHosts``) in its virtual network's
    ``AzureBastionSubnet``: its tunnels reach instances with ``private_ip_address`` as the
    source their NSGs see."""

    name: str
    id: str
    subnet_id: str
    private_ip_address: str  # an address of AzureBastionSubnet (the host's own)
    virtual_network_prefixes: tuple[str, ...] = ()
    sku: str = "Basic"  # Developer, Basic, Standard or Premium
    enable_tunneling: bool = False  # the native client (az network bastion tunnel) may connect
    at: Pointer | None = at_field()


@attrs.frozen
class Plan:
    """Everything the data plane needs, computed purely from a Deployment."""

    frontends: tuple[Frontend, ...] = ()
    backends: tuple[Backend, ...] = ()
    nat: tuple[NatEntry, ...] = ()
    balancing: tuple[BalancingEntry, ...] = ()
    warnings: tuple[Problem, ...] = ()
    bastions: tuple[BastionHost, ...] = ()

    def application_security_group_members(self) -> dict[str, list[str]]:
        """Lower-cased ASG id -> private addresses of the backends in it."""
        members: dict[str, list[str]] = {}
        for backend in self.backends:
            for group in backend.application_security_groups:
                members.setdefault(group, []).append(backend.private_ip_address)
        return members

    def backend(self, label: str) -> Backend | None:
        """A backend by ``SCALESET/N`` or by name, case-insensitively."""
        wanted = label.lower()
        return next((b for b in self.backends if b.label.lower() == wanted), None)
