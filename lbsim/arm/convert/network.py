"""Evaluated Microsoft.Network resources to model objects."""

from __future__ import annotations

from typing import TypeVar

import attrs

from lbsim.arm.convert.reader import Node
from lbsim.model import (
    ApplicationSecurityGroup,
    BackendAddressPool,
    BastionHost,
    BastionHostIPConfiguration,
    FrontendIPConfiguration,
    InboundNatPool,
    InboundNatRule,
    IPConfiguration,
    LoadBalancer,
    LoadBalancerBackendAddress,
    LoadBalancingRule,
    LoadDistribution,
    NetworkInterface,
    NetworkSecurityGroup,
    OutboundRule,
    Probe,
    ProbeProtocol,
    PublicIPAddress,
    PublicIPAddressConfiguration,
    SecurityRule,
    SecurityRuleAccess,
    SecurityRuleDirection,
    SecurityRuleProtocol,
    Subnet,
    SubResource,
    TransportProtocol,
    VirtualNetwork,
)
from lbsim.model.common import CaseInsensitiveEnum
from lbsim.model.nsg_defaults import default_security_rules

E = TypeVar("E", bound=CaseInsensitiveEnum)


def enum(kind: type[E], node: Node, default: E) -> E:
    """An Azure enum value; a value outside the enum is reported and replaced by ``default``."""
    if node.value is None:
        return default
    try:
        return kind(node.value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        node.sink.error(
            "InvalidRequestFormat", f"The value {node.value!r} is not one of: {allowed}.", node.at
        )
        return default


def _frontend(lb_id: str, node: Node) -> FrontendIPConfiguration:
    props = node.get("properties")
    name = node.name()
    return FrontendIPConfiguration(
        id=f"{lb_id}/frontendIPConfigurations/{name}",
        name=name,
        public_ip_address=props.get("publicIPAddress").ref(),
        subnet=props.get("subnet").ref(),
        private_ip_address=props.get("privateIPAddress").text(),
        private_ip_allocation_method=props.get("privateIPAllocationMethod").text("Dynamic"),
        zones=node.get("zones").strings(),
        gateway_load_balancer=props.get("gatewayLoadBalancer").ref(),
        at=node.at,
    )


def backend_pool(lb_id: str, node: Node) -> BackendAddressPool:
    name = node.name().rsplit("/", 1)[-1]
    addresses = tuple(
        LoadBalancerBackendAddress(
            name=a.name(),
            ip_address=a.path("properties", "ipAddress").text(),
            network_interface_ip_configuration=a.path(
                "properties", "networkInterfaceIPConfiguration"
            ).ref(),
            at=a.at,
        )
        for a in node.path("properties", "loadBalancerBackendAddresses").items()
    )
    return BackendAddressPool(f"{lb_id}/backendAddressPools/{name}", name, addresses, at=node.at)


def _nat_pool(lb_id: str, node: Node) -> InboundNatPool:
    props = node.get("properties")
    name = node.name()
    return InboundNatPool(
        id=f"{lb_id}/inboundNatPools/{name}",
        name=name,
        frontend_ip_configuration=_required_ref(props, "frontendIPConfiguration"),
        protocol=enum(TransportProtocol, props.get("protocol"), TransportProtocol.TCP),
        frontend_port_range_start=props.get("frontendPortRangeStart").integer(0) or 0,
        frontend_port_range_end=props.get("frontendPortRangeEnd").integer(0) or 0,
        backend_port=props.get("backendPort").integer(0) or 0,
        idle_timeout_in_minutes=props.get("idleTimeoutInMinutes").integer(4) or 4,
        enable_floating_ip=props.get("enableFloatingIP").boolean(),
        enable_tcp_reset=props.get("enableTcpReset").boolean(),
        at=node.at,
    )


def nat_rule(lb_id: str, node: Node) -> InboundNatRule:
    props = node.get("properties")
    name = node.name().rsplit("/", 1)[-1]
    return InboundNatRule(
        id=f"{lb_id}/inboundNatRules/{name}",
        name=name,
        frontend_ip_configuration=_required_ref(props, "frontendIPConfiguration"),
        protocol=enum(TransportProtocol, props.get("protocol"), TransportProtocol.TCP),
        backend_port=props.get("backendPort").integer(0) or 0,
        frontend_port=props.get("frontendPort").integer(),
        frontend_port_range_start=props.get("frontendPortRangeStart").integer(),
        frontend_port_range_end=props.get("frontendPortRangeEnd").integer(),
        backend_address_pool=props.get("backendAddressPool").ref(),
        idle_timeout_in_minutes=props.get("idleTimeoutInMinutes").integer(4) or 4,
        enable_floating_ip=props.get("enableFloatingIP").boolean(),
        enable_tcp_reset=props.get("enableTcpReset").boolean(),
        at=node.at,
    )


def _outbound_rule(lb_id: str, node: Node) -> OutboundRule:
    props = node.get("properties")
    name = node.name()
    return OutboundRule(
        id=f"{lb_id}/outboundRules/{name}",
        name=name,
        frontend_ip_configurations=props.get("frontendIPConfigurations").refs(),
        protocol=enum(TransportProtocol, props.get("protocol"), TransportProtocol.ALL),
        at=node.at,
    )


def _rule(lb_id: str, node: Node) -> LoadBalancingRule:
    props = node.get("properties")
    name = node.name()
    pools = props.get("backendAddressPools").refs()
    single = props.get("backendAddressPool").ref()
    if single is not None and single.key not in {p.key for p in pools}:
        pools = (single, *pools)
    return LoadBalancingRule(
        id=f"{lb_id}/loadBalancingRules/{name}",
        name=name,
        frontend_ip_configuration=_required_ref(props, "frontendIPConfiguration"),
        protocol=enum(TransportProtocol, props.get("protocol"), TransportProtocol.TCP),
        frontend_port=props.get("frontendPort").integer(0) or 0,
        backend_port=props.get("backendPort").integer(0) or 0,
        backend_address_pools=pools,
        probe=props.get("probe").ref(),
        load_distribution=enum(
            LoadDistribution, props.get("loadDistribution"), LoadDistribution.DEFAULT
        ),
        idle_timeout_in_minutes=props.get("idleTimeoutInMinutes").integer(4) or 4,
        enable_floating_ip=props.get("enableFloatingIP").boolean(),
        enable_tcp_reset=props.get("enableTcpReset").boolean(),
        disable_outbound_snat=props.get("disableOutboundSnat").boolean(),
        at=node.at,
    )


def _probe(lb_id: str, node: Node) -> Probe:
    props = node.get("properties")
    name = node.name()
    return Probe(
        id=f"{lb_id}/probes/{name}",
        name=name,
        protocol=enum(ProbeProtocol, props.get("protocol"), ProbeProtocol.TCP),
        port=props.get("port").integer(0) or 0,
        interval_in_seconds=props.get("intervalInSeconds").integer(15) or 15,
        number_of_probes=props.get("numberOfProbes").integer(2) or 2,
        probe_threshold=props.get("probeThreshold").integer(),
        request_path=props.get("requestPath").text(),
        at=node.at,
    )


def _required_ref(props: Node, key: str) -> SubResource:
    ref = props.get(key).ref()
    if ref is None:
        props.sink.error("InvalidRequestFormat", f"The property '{key}' needs an 'id'.", props.at)
        return SubResource("", at=props.at)
    return ref


def load_balancer(rid: str, name: str, node: Node) -> LoadBalancer:
    props = node.get("properties")
    return LoadBalancer(
        id=rid,
        name=name,
        sku=node.path("sku", "name").text("Basic"),
        tier=node.path("sku", "tier").text("Regional"),
        frontend_ip_configurations=tuple(
            _frontend(rid, n) for n in props.get("frontendIPConfigurations").items()
        ),
        backend_address_pools=tuple(
            backend_pool(rid, n) for n in props.get("backendAddressPools").items()
        ),
        inbound_nat_pools=tuple(_nat_pool(rid, n) for n in props.get("inboundNatPools").items()),
        inbound_nat_rules=tuple(nat_rule(rid, n) for n in props.get("inboundNatRules").items()),
        load_balancing_rules=tuple(_rule(rid, n) for n in props.get("loadBalancingRules").items()),
        outbound_rules=tuple(_outbound_rule(rid, n) for n in props.get("outboundRules").items()),
        probes=tuple(_probe(rid, n) for n in props.get("probes").items()),
        at=node.at,
    )


def security_rule(node: Node) -> SecurityRule:
    props = node.get("properties")
    return SecurityRule(
        name=node.name().rsplit("/", 1)[-1],
        protocol=enum(SecurityRuleProtocol, props.get("protocol"), SecurityRuleProtocol.ANY),
        access=enum(SecurityRuleAccess, props.get("access"), SecurityRuleAccess.DENY),
        priority=props.get("priority").integer(0) or 0,
        direction=enum(
            SecurityRuleDirection, props.get("direction"), SecurityRuleDirection.INBOUND
        ),
        source_address_prefix=props.get("sourceAddressPrefix").text(),
        source_address_prefixes=props.get("sourceAddressPrefixes").strings(),
        source_port_range=props.get("sourcePortRange").text(),
        source_port_ranges=props.get("sourcePortRanges").strings(),
        destination_address_prefix=props.get("destinationAddressPrefix").text(),
        destination_address_prefixes=props.get("destinationAddressPrefixes").strings(),
        destination_port_range=props.get("destinationPortRange").text(),
        destination_port_ranges=props.get("destinationPortRanges").strings(),
        source_application_security_groups=props.get("sourceApplicationSecurityGroups").refs(),
        destination_application_security_groups=props.get(
            "destinationApplicationSecurityGroups"
        ).refs(),
        description=props.get("description").text(""),
        at=node.at,
    )


def network_security_group(rid: str, name: str, node: Node) -> NetworkSecurityGroup:
    rules = tuple(security_rule(n) for n in node.path("properties", "securityRules").items())
    return NetworkSecurityGroup(rid, name, rules, default_security_rules(), at=node.at)


def subnet(vnet_id: str, node: Node) -> Subnet:
    props = node.get("properties")
    name = node.name().rsplit("/", 1)[-1]
    prefixes = props.get("addressPrefixes").strings()
    single = props.get("addressPrefix").text()
    return Subnet(
        id=f"{vnet_id}/subnets/{name}",
        name=name,
        address_prefixes=((single,) if single else ()) + prefixes,
        network_security_group=props.get("networkSecurityGroup").ref(),
        at=node.at,
    )


def virtual_network(rid: str, name: str, node: Node) -> VirtualNetwork:
    props = node.get("properties")
    return VirtualNetwork(
        id=rid,
        name=name,
        address_prefixes=props.path("addressSpace", "addressPrefixes").strings(),
        subnets=tuple(subnet(rid, n) for n in props.get("subnets").items()),
        at=node.at,
    )


def public_ip_address(rid: str, name: str, node: Node, address: str) -> PublicIPAddress:
    props = node.get("properties")
    return PublicIPAddress(
        id=rid,
        name=name,
        sku=node.path("sku", "name").text("Basic"),
        public_ip_allocation_method=props.get("publicIPAllocationMethod").text("Dynamic"),
        public_ip_address_version=props.get("publicIPAddressVersion").text("IPv4"),
        ip_address=address,
        domain_name_label=props.path("dnsSettings", "domainNameLabel").text(),
        idle_timeout_in_minutes=props.get("idleTimeoutInMinutes").integer(4) or 4,
        at=node.at,
    )


def ip_configuration(owner_id: str, node: Node) -> IPConfiguration:
    """A NIC's (or a scale set NIC configuration's) ipConfiguration."""
    props = node.get("properties")
    name = node.name()
    return IPConfiguration(
        id=f"{owner_id}/ipConfigurations/{name}",
        name=name,
        subnet=props.get("subnet").ref(),
        primary=props.get("primary").boolean(),
        private_ip_address=props.get("privateIPAddress").text(),
        private_ip_allocation_method=props.get("privateIPAllocationMethod").text("Dynamic"),
        private_ip_address_version=props.get("privateIPAddressVersion").text("IPv4"),
        public_ip_address=props.get("publicIPAddress").ref(),
        public_ip_address_configuration=_public_ip_configuration(
            props.get("publicIPAddressConfiguration")
        ),
        load_balancer_backend_address_pools=props.get("loadBalancerBackendAddressPools").refs(),
        load_balancer_inbound_nat_pools=props.get("loadBalancerInboundNatPools").refs(),
        load_balancer_inbound_nat_rules=props.get("loadBalancerInboundNatRules").refs(),
        application_security_groups=props.get("applicationSecurityGroups").refs(),
        at=node.at,
    )


def _public_ip_configuration(node: Node) -> PublicIPAddressConfiguration | None:
    """A scale set ipConfiguration's per-instance public IP, if it has one."""
    if not node.present:
        return None
    return PublicIPAddressConfiguration(
        name=node.name(),
        sku=node.path("sku", "name").text("Basic"),
        idle_timeout_in_minutes=node.path("properties", "idleTimeoutInMinutes").integer(4) or 4,
        at=node.at,
    )


def ip_configurations(owner_id: str, node: Node) -> tuple[IPConfiguration, ...]:
    """A NIC's ipConfigurations; one that names no subnet (as an IPv6 secondary configuration
    may) shares the subnet of the primary configuration, or else of the first that has one."""
    configs = tuple(ip_configuration(owner_id, n) for n in node.items())
    with_subnet = [c for c in configs if c.subnet is not None]
    shared = next((c for c in with_subnet if c.primary), with_subnet[0] if with_subnet else None)
    if shared is None:
        return configs
    return tuple(c if c.subnet else attrs.evolve(c, subnet=shared.subnet) for c in configs)


def network_interface(rid: str, name: str, node: Node) -> NetworkInterface:
    props = node.get("properties")
    return NetworkInterface(
        id=rid,
        name=name,
        ip_configurations=ip_configurations(rid, props.get("ipConfigurations")),
        network_security_group=props.get("networkSecurityGroup").ref(),
        at=node.at,
    )


def application_security_group(rid: str, name: str, node: Node) -> ApplicationSecurityGroup:
    return ApplicationSecurityGroup(rid, name, at=node.at)


def bastion_host(rid: str, name: str, node: Node) -> BastionHost:
    configs = tuple(
        BastionHostIPConfiguration(
            name=n.name(),
            subnet=n.path("properties", "subnet").ref(),
            public_ip_address=n.path("properties", "publicIPAddress").ref(),
            at=n.at,
        )
        for n in node.path("properties", "ipConfigurations").items()
    )
    sku = node.path("sku", "name").text("Basic")
    tunneling = node.path("properties", "enableTunneling").boolean()
    return BastionHost(
        rid, name, sku=sku, ip_configurations=configs, enable_tunneling=tunneling, at=node.at
    )
