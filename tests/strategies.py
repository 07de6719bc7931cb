"""Hypothesis strategies shared by lbsim's tests, grouped by the part of lbsim they feed.

Strategies are built once at import and draw from small catalogues where they can: values
that meet each other often find more bugs than wide random ones, and draws stay cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from ipaddress import IPv4Address, IPv6Address, ip_network

import attrs
from hypothesis import strategies as st

from lbsim.arm.parameters import TYPES, ParameterDecl
from lbsim.control.nsg import Flow, NetworkContext
from lbsim.control.nsg.syntax import parse_port_range, parse_prefix
from lbsim.model import (
    Deployment,
    FrontendIPConfiguration,
    InboundNatPool,
    IPConfiguration,
    LoadBalancer,
    NetworkSecurityGroup,
    PublicIPAddress,
    SecurityRule,
    SecurityRuleAccess,
    SecurityRuleDirection,
    SecurityRuleProtocol,
    Subnet,
    SubResource,
    TransportProtocol,
    VirtualMachineScaleSet,
    VirtualMachineScaleSetNetworkConfiguration,
    VirtualNetwork,
)
from lbsim.model.nsg_defaults import default_security_rules
from lbsim.pointer import Pointer

RESOURCE_GROUP_ID = "/subscriptions/s/resourceGroups/rg"

# --- NSGs: addresses, prefixes and ports -------------------------------------------------------
# Addresses come from a few small networks so that rules, tags and flows often meet.
VNET_PREFIXES = ("10.0.0.0/16", "fd00:10::/64")
IPV4_NETWORKS = ("10.0.0.0/30", "10.1.0.0/31", "203.0.113.0/31", "168.63.129.16/32")
IPV6_NETWORKS = ("fd00:10::/127", "2001:db8::/127")
ASG_IDS = tuple(
    f"{RESOURCE_GROUP_ID}/providers/Microsoft.Network/applicationSecurityGroups/{name}"
    for name in ("web", "db")
)
TAG_SPELLINGS = (
    "VirtualNetwork",
    "virtualnetwork",
    "VIRTUAL_NETWORK",
    "AzureLoadBalancer",
    "AZURE_LOADBALANCER",
    "Internet",
    "INTERNET",
)
OTHER_TAGS = ("Storage", "AzureCloud.WestEurope")
PORTS = (0, 1, 22, 53, 80, 443, 1023, 1024, 3389, 5986, 50000, 50100, 50101, 65534, 65535)
PORT_RANGES = (
    "*",
    "22",
    "80",
    "443",
    "0",
    "65535",
    "0-1023",
    "1024-65535",
    "0-65535",
    "50000-50100",
    "80, 443",
    "3389, 5985-5986",
    "22,80-443",
    "53, *",
    "70000",  # malformed: matches nothing
)


def _pool(networks: Iterable[str]) -> tuple[str, ...]:
    return tuple(str(address) for net in networks for address in ip_network(net))


def _cidr(address: str, spare: int) -> str:
    width = 128 if ":" in address else 32
    return str(ip_network(f"{address}/{width - spare}", strict=False))


_ADDRESSES = {4: st.sampled_from(_pool(IPV4_NETWORKS)), 6: st.sampled_from(_pool(IPV6_NETWORKS))}
_ANY_ADDRESS = st.sampled_from(_pool(IPV4_NETWORKS) + _pool(IPV6_NETWORKS))
_CIDRS = st.builds(_cidr, _ANY_ADDRESS, st.sampled_from((0, 1, 2, 3, 4, 8, 16, 24)))
_CATALOGUE_PREFIXES = st.sampled_from(("*", "0.0.0.0/0", "::/0", *TAG_SPELLINGS, *OTHER_TAGS))
# "*" is drawn often so that whole rules match often enough to decide.
_PREFIXES = st.one_of(st.just("*"), st.just("*"), _CATALOGUE_PREFIXES, _CIDRS, _ANY_ADDRESS)
_PORT_NUMBERS = st.sampled_from(PORTS)
_PORT_RANGES = st.one_of(st.just("*"), st.just("*"), st.sampled_from(PORT_RANGES))


def ip_addresses(version: int | None = None) -> st.SearchStrategy[str]:
    """Addresses (as text) from the small pools above."""
    return _ADDRESSES[version] if version else _ANY_ADDRESS


def cidrs() -> st.SearchStrategy[str]:
    """A CIDR around a pool address, from a single host to a /8 (or /104)."""
    return _CIDRS


def address_prefixes() -> st.SearchStrategy[str]:
    """Anything a rule accepts as one address prefix, tags and untranslatable ones included."""
    return _PREFIXES


def port_numbers() -> st.SearchStrategy[int]:
    return _PORT_NUMBERS


def port_ranges() -> st.SearchStrategy[str]:
    """One port range as a rule writes it: ``*``, ``N``, ``N-M`` or a comma list."""
    return _PORT_RANGES


# --- NSGs: rules, groups, contexts and flows ---------------------------------------------------
DIRECTIONS = tuple(SecurityRuleDirection)
FLOW_PROTOCOLS = tuple(p for p in SecurityRuleProtocol if p is not SecurityRuleProtocol.ANY)
_DIRECTIONS = st.sampled_from(DIRECTIONS)
_RULE_PROTOCOLS = st.one_of(st.just(SecurityRuleProtocol.ANY), st.sampled_from(FLOW_PROTOCOLS))
_FLOW_PROTOCOLS = st.sampled_from(FLOW_PROTOCOLS)
_ACCESSES = st.sampled_from(tuple(SecurityRuleAccess))
_PRIORITIES = st.integers(min_value=100, max_value=4096)


def _side(values: st.SearchStrategy[str]) -> st.SearchStrategy[tuple[str | None, tuple[str, ...]]]:
    """A singular value, a plural list, or both (lbsim takes their union)."""
    plural = st.lists(values, min_size=1, max_size=2).map(tuple)
    return st.one_of(
        st.tuples(values, st.just(())),
        st.tuples(st.none(), plural),
        st.tuples(values, plural),
    )


_PREFIX_SIDE = _side(_PREFIXES)
_PORT_SIDE = _side(_PORT_RANGES)
_GROUPS = st.sampled_from(((), (ASG_IDS[0],), (ASG_IDS[1],), ASG_IDS)).map(
    lambda ids: tuple(SubResource(i) for i in ids)
)


@st.composite
def security_rules(
    draw: st.DrawFn,
    *,
    direction: SecurityRuleDirection | None = None,
    priorities: st.SearchStrategy[int] | None = None,
) -> SecurityRule:
    """A user rule; its name is a placeholder that ``network_security_groups`` makes unique."""
    source, sources = draw(_PREFIX_SIDE)
    destination, destinations = draw(_PREFIX_SIDE)
    source_port, source_ports = draw(_PORT_SIDE)
    destination_port, destination_ports = draw(_PORT_SIDE)
    return SecurityRule(
        name="rule",
        protocol=draw(_RULE_PROTOCOLS),
        access=draw(_ACCESSES),
        priority=draw(priorities or _PRIORITIES),
        direction=direction or draw(_DIRECTIONS),
        source_address_prefix=source,
        source_address_prefixes=sources,
        source_port_range=source_port,
        source_port_ranges=source_ports,
        destination_address_prefix=destination,
        destination_address_prefixes=destinations,
        destination_port_range=destination_port,
        destination_port_ranges=destination_ports,
        source_application_security_groups=draw(_GROUPS),
        destination_application_security_groups=draw(_GROUPS),
    )


@st.composite
def network_security_groups(
    draw: st.DrawFn,
    *,
    name: str = "nsg",
    min_rules: int = 0,
    max_rules: int = 4,
    priorities: st.SearchStrategy[int] | None = None,
) -> NetworkSecurityGroup:
    """An NSG with Azure's default rules and user rules of unique names and of unique
    priority within each direction (as Azure requires)."""
    rules = draw(
        st.lists(
            security_rules(priorities=priorities),
            min_size=min_rules,
            max_size=max_rules,
            unique_by=lambda r: (r.direction, r.priority),
        )
    )
    return NetworkSecurityGroup(
        id=f"{RESOURCE_GROUP_ID}/providers/Microsoft.Network/networkSecurityGroups/{name}",
        name=name,
        security_rules=tuple(attrs.evolve(r, name=f"rule-{i}") for i, r in enumerate(rules)),
        default_security_rules=default_security_rules(),
    )


_VNETS = st.sampled_from(((), VNET_PREFIXES[:1], VNET_PREFIXES))
_MEMBERS = st.lists(_ANY_ADDRESS, max_size=3)


@st.composite
def network_contexts(draw: st.DrawFn) -> NetworkContext:
    """VNet prefixes (sometimes none) and members for the pool's application security groups
    (sometimes unknown to the context)."""
    groups = draw(_GROUPS)
    return NetworkContext(
        virtual_network_prefixes=draw(_VNETS),
        asg_members={group.id: draw(_MEMBERS) for group in groups},
    )


@st.composite
def flows(draw: st.DrawFn, *, direction: SecurityRuleDirection | None = None) -> Flow:
    """A new flow between pool addresses of one IP version."""
    version = draw(st.sampled_from((4, 6)))
    return Flow(
        protocol=draw(_FLOW_PROTOCOLS),
        direction=direction or draw(_DIRECTIONS),
        source_address=draw(_ADDRESSES[version]),
        source_port=draw(_PORT_NUMBERS),
        destination_address=draw(_ADDRESSES[version]),
        destination_port=draw(_PORT_NUMBERS),
    )


def _near_addresses(prefixes: Iterable[str], version: int) -> list[str]:
    """Pool addresses of one version, and the addresses at and just past each edge of the
    CIDRs among ``prefixes``."""
    make = IPv4Address if version == 4 else IPv6Address
    found = list(_pool(IPV4_NETWORKS if version == 4 else IPV6_NETWORKS))
    for text in prefixes:
        network = parse_prefix(text).network
        if network is None or network.version != version:
            continue
        first, last = int(network.network_address), int(network.broadcast_address)
        top = 2**network.max_prefixlen - 1
        found += [str(make(a)) for a in (first - 1, first, last, last + 1) if 0 <= a <= top]
    return found


def _near_ports(ranges: Iterable[str]) -> list[int]:
    """The ports at and just past each edge of ``ranges`` (the catalogue's if all are ``*``)."""
    found = [0, 65535]
    for text in ranges:
        for low, high in parse_port_range(text) or ():
            if (low, high) != (0, 65535):
                found += [p for p in (low - 1, low, high, high + 1) if 0 <= p <= 65535]
    return found if len(found) > 2 else list(PORTS)


@st.composite
def flows_near(draw: st.DrawFn, groups: Sequence[NetworkSecurityGroup | None]) -> Flow:
    """A flow aimed at one user rule of the NSGs: its direction, often its protocol, and
    addresses and ports on the edges of its prefixes and ranges, where matching goes wrong."""
    rules = [rule for group in groups if group is not None for rule in group.security_rules]
    if not rules:
        return draw(flows())
    rule = draw(st.sampled_from(rules))
    protocol = draw(_FLOW_PROTOCOLS)
    if rule.protocol is not SecurityRuleProtocol.ANY and draw(st.booleans()):
        protocol = rule.protocol
    version = draw(st.sampled_from((4, 6)))
    # Both sides draw from the edges of both sides, so that a mix-up between them shows.
    addresses = st.sampled_from(_near_addresses(rule.sources() + rule.destinations(), version))
    ports = st.sampled_from(_near_ports(rule.source_ports() + rule.destination_ports()))
    return Flow(
        protocol=protocol,
        direction=rule.direction,
        source_address=draw(addresses),
        source_port=draw(ports),
        destination_address=draw(addresses),
        destination_port=draw(ports),
    )


# --- plans: NAT pools over scale sets ----------------------------------------------------------
NETWORK_ID = f"{RESOURCE_GROUP_ID}/providers/Microsoft.Network"
NAT_LB_ID = f"{NETWORK_ID}/loadBalancers/lb"
NAT_SUBNET_ID = f"{NETWORK_ID}/virtualNetworks/vnet/subnets/default"
_POOL_PROTOCOLS = st.sampled_from(
    (TransportProtocol.TCP, TransportProtocol.UDP, TransportProtocol.ALL)
)
_BACKEND_PORTS = st.sampled_from((22, 80, 3389, 8080))
# Each pool's range lies in its own block of this many ports, so pools never overlap.
POOL_BLOCK = 1000


def _nat_frontend(index: int) -> tuple[FrontendIPConfiguration, PublicIPAddress]:
    pip = PublicIPAddress(
        id=f"{NETWORK_ID}/publicIPAddresses/pip{index}",
        name=f"pip{index}",
        ip_address=f"127.0.0.{index + 1}",
    )
    frontend = FrontendIPConfiguration(
        id=f"{NAT_LB_ID}/frontendIPConfigurations/fe{index}",
        name=f"fe{index}",
        public_ip_address=SubResource(pip.id),
    )
    return frontend, pip


def _nat_scale_set(
    index: int, capacity: int, pools: Sequence[InboundNatPool]
) -> VirtualMachineScaleSet:
    vmss_id = f"{RESOURCE_GROUP_ID}/providers/Microsoft.Compute/virtualMachineScaleSets/set{index}"
    ipc = IPConfiguration(
        id=f"{vmss_id}/networkInterfaceConfigurations/nic/ipConfigurations/ipconfig",
        name="ipconfig",
        subnet=SubResource(NAT_SUBNET_ID),
        primary=True,
        load_balancer_inbound_nat_pools=tuple(SubResource(p.id) for p in pools),
    )
    nic = VirtualMachineScaleSetNetworkConfiguration(
        name="nic", primary=True, ip_configurations=(ipc,)
    )
    return VirtualMachineScaleSet(
        id=vmss_id, name=f"set{index}", capacity=capacity, network_interface_configurations=(nic,)
    )


@st.composite
def nat_pool_deployments(
    draw: st.DrawFn, *, max_pools: int = 3, max_scale_sets: int = 2, max_capacity: int = 6
) -> Deployment:
    """One public load balancer (one or two frontends) with NAT pools, and scale sets whose
    instances use some of them; every range is wide enough, so Azure would accept it."""
    frontends = [_nat_frontend(i) for i in range(draw(st.integers(1, 2)))]
    pool_count = draw(st.integers(1, max_pools))
    uses = draw(
        st.lists(
            st.tuples(
                st.integers(0, max_capacity),
                st.sets(st.integers(0, pool_count - 1), min_size=1),
            ),
            min_size=1,
            max_size=max_scale_sets,
        )
    )
    pools = []
    for i in range(pool_count):
        needed = sum(capacity for capacity, used in uses if i in used)
        start = 50000 + POOL_BLOCK * i + draw(st.integers(0, 10))
        frontend = draw(st.sampled_from(frontends))[0]
        pools.append(
            InboundNatPool(
                id=f"{NAT_LB_ID}/inboundNatPools/pool{i}",
                name=f"pool{i}",
                frontend_ip_configuration=SubResource(frontend.id),
                protocol=draw(_POOL_PROTOCOLS),
                frontend_port_range_start=start,
                frontend_port_range_end=start + max(needed, 1) - 1 + draw(st.integers(0, 3)),
                backend_port=draw(_BACKEND_PORTS),
            )
        )
    lb = LoadBalancer(
        id=NAT_LB_ID,
        name="lb",
        frontend_ip_configurations=tuple(f for f, _ in frontends),
        inbound_nat_pools=tuple(pools),
    )
    subnet = Subnet(NAT_SUBNET_ID, "default", ("10.0.0.0/16",))
    return Deployment(
        load_balancers=(lb,),
        virtual_networks=(
            VirtualNetwork(
                f"{NETWORK_ID}/virtualNetworks/vnet", "vnet", ("10.0.0.0/16",), (subnet,)
            ),
        ),
        public_ip_addresses=tuple(p for _, p in frontends),
        virtual_machine_scale_sets=tuple(
            _nat_scale_set(j, capacity, [pools[i] for i in sorted(used)])
            for j, (capacity, used) in enumerate(uses)
        ),
    )


# --- ARM parameters ----------------------------------------------------------------------------
_LENGTHS = st.integers(min_value=0, max_value=40)
_PARAMETER_NAMES = st.from_regex(r"[a-zA-Z][a-zA-Z0-9]{0,8}", fullmatch=True)


@st.composite
def parameter_declarations(draw: st.DrawFn) -> ParameterDecl:
    """A parameter declaration of any type whose constraints some value meets: a length or
    value range (min not above max), or allowed values."""
    kind = draw(st.sampled_from(sorted(TYPES.values())))
    raw: dict[str, object] = {"type": kind}
    if kind == "Int" and draw(st.booleans()):
        low = draw(st.integers(min_value=-1000, max_value=1000))
        raw["minValue"] = low
        if draw(st.booleans()):
            raw["maxValue"] = low + draw(st.integers(min_value=0, max_value=5))
    elif kind in ("String", "SecureString", "Array"):
        short = draw(_LENGTHS)
        raw["minLength"] = short
        if draw(st.booleans()):
            raw["maxLength"] = short + draw(st.integers(min_value=0, max_value=3))
    if kind in ("String", "Int") and draw(st.booleans()):
        values = st.text(max_size=5) if kind == "String" else st.integers()
        raw = {"type": kind, "allowedValues": draw(st.lists(values, min_size=1, max_size=3))}
    name = draw(_PARAMETER_NAMES)
    return ParameterDecl(name, kind, raw, Pointer(("parameters", name)))
