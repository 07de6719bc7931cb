"""What an NSG verdict is about: a flow, and the network around it that service tags and
application security groups refer to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from types import MappingProxyType

import attrs

from lbsim.errors import LbsimError
from lbsim.model.common import SecurityRuleDirection, SecurityRuleProtocol

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

#: The host virtual IP that health probes come from: what the ``AzureLoadBalancer`` tag means.
AZURE_LOAD_BALANCER_PREFIX = IPv4Network("168.63.129.16/32")

#: Where an NSG is attached; inbound flows meet the subnet's NSG first, outbound the NIC's.
SUBNET = "subnet"
NETWORK_INTERFACE = "networkInterface"

INVALID_FLOW = "LbsimInvalidFlow"


def _networks(values: Iterable[str | IPNetwork]) -> tuple[IPNetwork, ...]:
    return tuple(ip_network(value, strict=False) for value in values)


def _members(
    groups: Mapping[str, Iterable[str | IPAddress]],
) -> Mapping[str, frozenset[IPAddress]]:
    return MappingProxyType(
        {key.lower(): frozenset(_address(a) for a in members) for key, members in groups.items()}
    )


@attrs.frozen
class NetworkContext:
    """The network that service tags and application security groups resolve against.

    ``virtual_network_prefixes`` is everything the ``VirtualNetwork`` tag stands for (the
    address spaces of the deployment's virtual networks and anything peered or connected).
    Azure also counts the load balancer's host address as ``VirtualNetwork``, so a user rule
    that denies ``VirtualNetwork`` also stops health probes; lbsim does the same.
    ``Internet`` is every address of the flow's IP version outside ``VirtualNetwork``.
    ``asg_members`` maps an application security group id (any case) to the private addresses
    of the NIC ipconfigs that are members of it.
    """

    virtual_network_prefixes: tuple[IPNetwork, ...] = attrs.field(default=(), converter=_networks)
    asg_members: Mapping[str, frozenset[IPAddress]] = attrs.field(
        factory=dict, converter=_members, hash=False
    )
    load_balancer_prefixes: tuple[IPNetwork, ...] = attrs.field(
        default=(AZURE_LOAD_BALANCER_PREFIX,), converter=_networks
    )

    @property
    def virtual_network_tag(self) -> tuple[IPNetwork, ...]:
        """The prefixes the ``VirtualNetwork`` tag covers."""
        return self.virtual_network_prefixes + self.load_balancer_prefixes

    def members(self, group_id: str) -> frozenset[IPAddress]:
        """The addresses in an application security group (none if lbsim does not know it)."""
        return self.asg_members.get(group_id.lower(), frozenset())


def _address(value: str | IPAddress) -> IPAddress:
    """An address from text or an address object; IPv4-mapped IPv6 becomes IPv4."""
    try:
        address = value if isinstance(value, IPv4Address | IPv6Address) else ip_address(value)
    except ValueError:
        raise LbsimError(INVALID_FLOW, f"{value!r} is not an IP address") from None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _check_protocol(_flow: Flow, _attribute: object, value: SecurityRuleProtocol) -> None:
    if value is SecurityRuleProtocol.ANY:
        raise LbsimError(INVALID_FLOW, "a flow has one concrete protocol, not '*'")


def _check_port(_flow: Flow, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= 65535:
        raise LbsimError(INVALID_FLOW, f"{attribute.name} {value} is outside 0-65535")


@attrs.frozen
class Flow:
    """The 5-tuple and direction of a new connection, as the NSG sees it (after NAT: inbound
    flows carry the backend's address and port as destination).

    Ports are ignored for ICMP, ESP and AH flows; pass 0.
    """

    protocol: SecurityRuleProtocol = attrs.field(validator=_check_protocol)
    direction: SecurityRuleDirection
    source_address: IPAddress = attrs.field(converter=_address)
    source_port: int = attrs.field(validator=_check_port)
    destination_address: IPAddress = attrs.field(converter=_address)
    destination_port: int = attrs.field(validator=_check_port)

    def __attrs_post_init__(self) -> None:
        if self.source_address.version != self.destination_address.version:
            raise LbsimError(
                INVALID_FLOW,
                f"source {self.source_address} and destination {self.destination_address} "
                "are of different IP versions",
            )

    @property
    def has_ports(self) -> bool:
        """Whether port ranges apply to this flow (TCP and UDP only)."""
        return self.protocol in _PORTED


_PORTED = frozenset({SecurityRuleProtocol.TCP, SecurityRuleProtocol.UDP})
