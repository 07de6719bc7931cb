"""Microsoft.Network resources: load balancers, NSGs, virtual networks, NICs, public IPs."""

from __future__ import annotations

import attrs

from lbsim.model.common import (
    LoadDistribution,
    ProbeProtocol,
    SecurityRuleAccess,
    SecurityRuleDirection,
    SecurityRuleProtocol,
    SubResource,
    TransportProtocol,
    at_field,
)
from lbsim.pointer import Pointer


# --- load balancers ---------------------------------------------------------------------------
@attrs.frozen
class FrontendIPConfiguration:
    id: str
    name: str
    public_ip_address: SubResource | None = None
    subnet: SubResource | None = None
    private_ip_address: str | None = None
    private_ip_allocation_method: str = "Dynamic"
    zones: tuple[str, ...] = ()
    gateway_load_balancer: SubResource | None = None  # a Gateway LB frontend it chains to
    at: Pointer | None = at_field()


@attrs.frozen
class LoadBalancerBackendAddress:
    """A member of a backend pool given by address rather than by NIC (Standard SKU)."""

    name: str
    ip_address: str | None = None
    network_interface_ip_configuration: SubResource | None = None
    at: Pointer | None = at_field()


@attrs.frozen
class BackendAddressPool:
    id: str
    name: str
    load_balancer_backend_addresses: tuple[LoadBalancerBackendAddress, ...] = ()
    at: Pointer | None = at_field()


@attrs.frozen
class InboundNatPool:
    id: str
    name: str
    frontend_ip_configuration: SubResource
    protocol: TransportProtocol
    frontend_port_range_start: int
    frontend_port_range_end: int
    backend_port: int
    idle_timeout_in_minutes: int = 4
    enable_floating_ip: bool = False
    enable_tcp_reset: bool = False
    at: Pointer | None = at_field()


@attrs.frozen
class InboundNatRule:
    """A NAT rule: V1 (``frontend_port``, bound to one NIC ipconfig) or V2 (a port range and a
    backend pool)."""

    id: str
    name: str
    frontend_ip_configuration: SubResource
    protocol: TransportProtocol
    backend_port: int
    frontend_port: int | None = None
    frontend_port_range_start: int | None = None
    frontend_port_range_end: int | None = None
    backend_address_pool: SubResource | None = None
    idle_timeout_in_minutes: int = 4
    enable_floating_ip: bool = False
    enable_tcp_reset: bool = False
    at: Pointer | None = at_field()

    @property
    def is_v2(self) -> bool:
        return self.backend_address_pool is not None


@attrs.frozen
class Probe:
    id: str
    name: str
    protocol: ProbeProtocol
    port: int
    interval_in_seconds: int = 15
    number_of_probes: int = 2
    probe_threshold: int | None = None
    request_path: str | None = None
    at: Pointer | None = at_field()


@attrs.frozen
class LoadBalancingRule:
    id: str
    name: str
    frontend_ip_configuration: SubResource
    protocol: TransportProtocol
    frontend_port: int
    backend_port: int
    backend_address_pools: tuple[SubResource, ...] = ()
    probe: SubResource | None = None
    load_distribution: LoadDistribution = LoadDistribution.DEFAULT
    idle_timeout_in_minutes: int = 4
    enable_floating_ip: bool = False
    enable_tcp_reset: bool = False
    disable_outbound_snat: bool = False
    at: Pointer | None = at_field()


@attrs.frozen
class OutboundRule:
    """An outbound rule: SNAT for a backend pool through frontends (not emulated; checked as
    Azure checks it)."""

    id: str
    name: str
    frontend_ip_configurations: tuple[SubResource, ...] = ()
    protocol: TransportProtocol = TransportProtocol.ALL
    at: Pointer | None = at_field()


@attrs.frozen
class LoadBalancer:
    id: str
    name: str
    sku: str = "Basic"
    tier: str = "Regional"  # Global: a cross-region load balancer
    frontend_ip_configurations: tuple[FrontendIPConfiguration, ...] = ()
    backend_address_pools: tuple[BackendAddressPool, ...] = ()
    inbound_nat_pools: tuple[InboundNatPool, ...] = ()
    inbound_nat_rules: tuple[InboundNatRule, ...] = ()
    load_balancing_rules: tuple[LoadBalancingRule, ...] = ()
    outbound_rules: tuple[OutboundRule, ...] = ()
    probes: tuple[Probe, ...] = ()
    at: Pointer | None = at_field()


# --- network security groups -----------------------------------------------------------------
@attrs.frozen
class SecurityRule:
    """One NSG rule. Singular and plural forms of prefixes and port ranges are kept as written;
    ``sources()`` and friends give their union."""

    name: str
    protocol: SecurityRuleProtocol
    access: SecurityRuleAccess
    priority: int
    direction: SecurityRuleDirection
    source_address_prefix: str | None = None
    source_address_prefixes: tuple[str, ...] = ()
    source_port_range: str | None = None
    source_port_ranges: tuple[str, ...] = ()
    destination_address_prefix: str | None = None
    destination_address_prefixes: tuple[str, ...] = ()
    destination_port_range: str | None = None
    destination_port_ranges: tuple[str, ...] = ()
    source_application_security_groups: tuple[SubResource, ...] = ()
    destination_application_security_groups: tuple[SubResource, ...] = ()
    description: str = ""
    is_default: bool = False
    at: Pointer | None = at_field()

    def sources(self) -> tuple[str, ...]:
        return _union(self.source_address_prefix, self.source_address_prefixes)

    def destinations(self) -> tuple[str, ...]:
        return _union(self.destination_address_prefix, self.destination_address_prefixes)

    def source_ports(self) -> tuple[str, ...]:
        return _union(self.source_port_range, self.source_port_ranges)

    def destination_ports(self) -> tuple[str, ...]:
        return _union(self.destination_port_range, self.destination_port_ranges)

    @property
    def flow_log_name(self) -> str:
        """The rule's name as NSG flow logs spell it."""
        return f"{'DefaultRule' if self.is_default else 'UserRule'}_{self.name}"


def _union(single: str | None, plural: tuple[str, ...]) -> tuple[str, ...]:
    return ((single,) if single is not None else ()) + plural


@attrs.frozen
class NetworkSecurityGroup:
    id: str
    name: str
    security_rules: tuple[SecurityRule, ...] = ()
    default_security_rules: tuple[SecurityRule, ...] = ()
    at: Pointer | None = at_field()


@attrs.frozen
class ApplicationSecurityGroup:
    id: str
    name: str
    at: Pointer | None = at_field()


# --- virtual networks, public IPs, NICs --------------------------------------------------------
@attrs.frozen
class Subnet:
    id: str
    name: str
    address_prefixes: tuple[str, ...] = ()
    network_security_group: SubResource | None = None
    at: Pointer | None = at_field()


@attrs.frozen
class VirtualNetwork:
    id: str
    name: str
    address_prefixes: tuple[str, ...] = ()
    subnets: tuple[Subnet, ...] = ()
    at: Pointer | None = at_field()


@attrs.frozen
class PublicIPAddress:
    id: str
    name: str
    sku: str = "Basic"
    public_ip_allocation_method: str = "Dynamic"
    public_ip_address_version: str = "IPv4"
    ip_address: str | None = None
    domain_name_label: str | None = None
    idle_timeout_in_minutes: int = 4
    at: Pointer | None = at_field()


@attrs.frozen
class PublicIPAddressConfiguration:
    """A scale set's per-instance public IP (``publicIPAddressConfiguration`` of an
    ipConfiguration): Azure makes one public IP of this name for every instance."""

    name: str
    sku: str = "Basic"
    idle_timeout_in_minutes: int = 4
    at: Pointer | None = at_field()


@attrs.frozen
class IPConfiguration:
    """An ipConfiguration of a NIC or of a scale set's NIC configuration."""

    id: str
    name: str
    subnet: SubResource | None = None
    primary: bool = False
    private_ip_address: str | None = None
    private_ip_allocation_method: str = "Dynamic"
    private_ip_address_version: str = "IPv4"
    public_ip_address: SubResource | None = None
    # a scale set's per-instance public IP (publicIPAddressConfiguration)
    public_ip_address_configuration: PublicIPAddressConfiguration | None = None
    load_balancer_backend_address_pools: tuple[SubResource, ...] = ()
    load_balancer_inbound_nat_pools: tuple[SubResource, ...] = ()
    load_balancer_inbound_nat_rules: tuple[SubResource, ...] = ()
    application_security_groups: tuple[SubResource, ...] = ()
    at: Pointer | None = at_field()


@attrs.frozen
class NetworkInterface:
    id: str
    name: str
    ip_configurations: tuple[IPConfiguration, ...] = ()
    network_security_group: SubResource | None = None
    at: Pointer | None = at_field()


# --- bastion hosts ------------------------------------------------------------------------------
@attrs.frozen
class BastionHostIPConfiguration:
    """The ipConfiguration of a bastion host: its subnet (which Azure requires to be named
    ``AzureBastionSubnet``) and its public IP."""

    name: str
    subnet: SubResource | None = None
    public_ip_address: SubResource | None = None
    at: Pointer | None = at_field()


@attrs.frozen
class BastionHost:
    """An Azure Bastion host (``Microsoft.Network/bastionHosts``)."""

    id: str
    name: str
    sku: str = "Basic"
    ip_configurations: tuple[BastionHostIPConfiguration, ...] = ()
    enable_tunneling: bool = False  # the native client's tunnels (Standard and Premium only)
    at: Pointer | None = at_field()
