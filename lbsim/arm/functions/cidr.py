"""CIDR functions: parseCidr, cidrSubnet, cidrHost (IPv4 and IPv6)."""

from __future__ import annotations

import ipaddress
from typing import Any

from lbsim.arm.functions.base import ArgumentError, Registry, expect_int, expect_str

register = Registry()

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _network(value: Any) -> Network:
    text = expect_str(value, 1)
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ArgumentError(f"'{text}' is not a valid IP address range in CIDR notation.") from None


def _usable(network: Network) -> tuple[int, int]:
    """First and last usable address as integers (IPv4 skips network and broadcast)."""
    first, last = int(network.network_address), int(network.broadcast_address)
    if network.version == 4 and network.prefixlen < 31:
        return first + 1, last - 1
    return first, last


@register("parseCidr")
def _parse_cidr(value: Any) -> dict[str, Any]:
    network = _network(value)
    first, last = _usable(network)
    result: dict[str, Any] = {
        "network": str(network.network_address),
        "netmask": str(network.netmask),
    }
    if network.version == 4:
        result["broadcast"] = str(network.broadcast_address)
    address = type(network.network_address)
    result["firstUsable"] = str(address(first))
    result["lastUsable"] = str(address(last))
    result["cidr"] = network.prefixlen
    return result


@register("cidrSubnet")
def _cidr_subnet(value: Any, new_prefix: Any, index: Any) -> str:
    network, prefix, position = _network(value), expect_int(new_prefix, 2), expect_int(index, 3)
    if not network.prefixlen <= prefix <= network.max_prefixlen:
        raise ArgumentError(
            f"the new CIDR ({prefix}) must be between {network.prefixlen} and "
            f"{network.max_prefixlen}."
        )
    count = 1 << (prefix - network.prefixlen)
    if not 0 <= position < count:
        raise ArgumentError(f"the subnet index must be between 0 and {count - 1}, not {position}.")
    start = int(network.network_address) + (position << (network.max_prefixlen - prefix))
    return f"{type(network.network_address)(start)}/{prefix}"


@register("cidrHost")
def _cidr_host(value: Any, index: Any) -> str:
    network, position = _network(value), expect_int(index, 2)
    first, last = int(network.network_address) + 1, _usable(network)[1]
    if position < 0 or first + position > last:
        raise ArgumentError(
            f"the host index {position} is outside the usable addresses of {network}."
        )
    return str(type(network.network_address)(first + position))


FUNCTIONS = register.table
