"""How lbsim reads the address prefixes and port ranges of a security rule.

Both the explaining evaluator, the compiled one and the validator read rules through these
functions, so that they agree on what a string means.
"""

from __future__ import annotations

import re
from enum import Enum
from functools import lru_cache
from ipaddress import ip_network

import attrs

from lbsim.control.nsg.context import IPNetwork

VIRTUAL_NETWORK = "VirtualNetwork"
AZURE_LOAD_BALANCER = "AzureLoadBalancer"
INTERNET = "Internet"

#: The tags lbsim emulates, by lower-cased spelling (current and classic) to canonical name.
EMULATED_TAGS = {
    "virtualnetwork": VIRTUAL_NETWORK,
    "virtual_network": VIRTUAL_NETWORK,
    "azureloadbalancer": AZURE_LOAD_BALANCER,
    "azure_loadbalancer": AZURE_LOAD_BALANCER,
    "internet": INTERNET,
}

# A service tag name: words joined by dots (regions), dashes or underscores; no digits first.
_TAG_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*\Z")
_PORT = re.compile(r"(\d{1,5})(?:\s*-\s*(\d{1,5}))?\Z")
MAX_PORT = 65535


class PrefixKind(Enum):
    ANY = "any"  # "*"
    NETWORK = "network"  # a CIDR or a single address
    TAG = "tag"  # a service tag lbsim emulates
    OTHER_TAG = "otherTag"  # a service tag lbsim does not emulate: matches nothing
    INVALID = "invalid"


@attrs.frozen
class Prefix:
    """One address prefix of a rule, read."""

    text: str
    kind: PrefixKind
    network: IPNetwork | None = None
    tag: str | None = None  # the canonical name of an emulated tag
    host_bits: bool = False  # a CIDR with bits set past its length (``10.0.0.5/24``)

    @property
    def is_tag(self) -> bool:
        return self.kind in (PrefixKind.TAG, PrefixKind.OTHER_TAG)


@lru_cache(maxsize=8192)
def parse_prefix(text: str) -> Prefix:
    """Read an address prefix: ``*``, a CIDR, a single address or a service tag."""
    word = text.strip()
    if word == "*":
        return Prefix(text, PrefixKind.ANY)
    if word.lower() in EMULATED_TAGS:
        return Prefix(text, PrefixKind.TAG, tag=EMULATED_TAGS[word.lower()])
    network = _network(word)
    if network is not None:
        exact = _network(word, strict=True) is not None
        return Prefix(text, PrefixKind.NETWORK, network=network, host_bits=not exact)
    if _TAG_SHAPE.match(word):
        return Prefix(text, PrefixKind.OTHER_TAG)
    return Prefix(text, PrefixKind.INVALID)


def _network(text: str, *, strict: bool = False) -> IPNetwork | None:
    try:
        return ip_network(text, strict=strict)
    except ValueError:
        return None


PortRanges = tuple[tuple[int, int], ...]


@lru_cache(maxsize=8192)
def parse_port_range(text: str) -> PortRanges | None:
    """Read a port range: ``*``, ``N``, ``N-M``, or a comma-separated list of those.

    Returns inclusive (low, high) pairs, or None if the text is malformed.
    """
    ranges: list[tuple[int, int]] = []
    for part in (piece.strip() for piece in text.split(",")):
        if part == "*":
            ranges.append((0, MAX_PORT))
            continue
        match = _PORT.match(part)
        if match is None:
            return None
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if not low <= high <= MAX_PORT:
            return None
        ranges.append((low, high))
    return tuple(ranges)
