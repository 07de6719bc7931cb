"""Private IP addresses as Azure hands them out: in each subnet the first four addresses and
the last are reserved, static addresses are kept, dynamic ones go lowest-first from ``.4``."""

from __future__ import annotations

import ipaddress

from lbsim.errors import Problem, Severity
from lbsim.pointer import Pointer

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# A subnet that the template does not deploy: lbsim places its members here.
UNKNOWN_SUBNET = "10.255.0.0/16"
# IPv6 members of a subnet without an IPv6 prefix (a unique local range).
UNKNOWN_SUBNET6 = "fd00:ffff::/64"


class SubnetAllocator:
    """Hands out the addresses of one subnet."""

    def __init__(self, prefix: str) -> None:
        self.network: IPNetwork = ipaddress.ip_network(prefix, strict=False)
        self._used: set[int] = set()
        self._next = int(self.network.network_address) + 4
        self._last = int(self.network.broadcast_address) - (0 if self.network.version == 6 else 1)

    def reserve(self, address: str) -> bool:
        """Mark a static address used; False if it is outside the subnet or taken."""
        try:
            value = int(ipaddress.ip_address(address))
        except ValueError:
            return False
        if ipaddress.ip_address(value) not in self.network or value in self._used:
            return False
        self._used.add(value)
        return True

    def allocate(self) -> str | None:
        """The lowest free dynamic address, or None when the subnet is full."""
        while self._next <= self._last and self._next in self._used:
            self._next += 1
        if self._next > self._last:
            return None
        self._used.add(self._next)
        return str(ipaddress.ip_address(self._next))


class Addresses:
    """Allocators for every subnet, by lower-cased subnet id and IP version: a dual-stack
    subnet hands out IPv4 and IPv6 addresses from its two prefixes."""

    def __init__(self) -> None:
        self._subnets: dict[tuple[str, int], SubnetAllocator] = {}
        self.problems: list[Problem] = []

    def add_subnet(self, subnet_id: str, prefixes: tuple[str, ...]) -> None:
        for prefix in reversed(prefixes):  # the first prefix of each version wins
            try:
                allocator = SubnetAllocator(prefix)
            except ValueError:
                continue
            self._subnets[subnet_id.lower(), allocator.network.version] = allocator
        if (subnet_id.lower(), 4) not in self._subnets:
            self._subnets[subnet_id.lower(), 4] = SubnetAllocator(UNKNOWN_SUBNET)

    def allocator(self, subnet_id: str | None, version: int = 4) -> SubnetAllocator:
        key = ((subnet_id or "").lower(), version)
        if key not in self._subnets:
            self._subnets[key] = SubnetAllocator(
                UNKNOWN_SUBNET6 if version == 6 else UNKNOWN_SUBNET
            )
        return self._subnets[key]

    def static(self, subnet_id: str | None, address: str, at: Pointer | None) -> None:
        if not self.allocator(subnet_id, _version_of(address)).reserve(address):
            self.problems.append(
                Problem(
                    "PrivateIPAddressNotInSubnet",
                    f"The static private IP {address} is not a free address of subnet {subnet_id}.",
                    at,
                )
            )

    def dynamic(self, subnet_id: str | None, at: Pointer | None, version: str = "IPv4") -> str:
        """The next dynamic address; ``version`` is privateIPAddressVersion (IPv4 or IPv6)."""
        address = self.allocator(subnet_id, 6 if version.lower() == "ipv6" else 4).allocate()
        if address is None:
            self.problems.append(
                Problem("SubnetIsFull", f"The subnet {subnet_id} has no free address.", at)
            )
            return "0.0.0.0"  # noqa: S104  (never bound: the plan fails with the error above)
        return address

    def warn_unknown(self, subnet_id: str | None, at: Pointer | None) -> None:
        if ((subnet_id or "").lower(), 4) not in self._subnets:
            self.problems.append(
                Problem(
                    "SubnetOutsideTemplate",
                    f"The subnet {subnet_id} is not deployed by the template; lbsim gives its "
                    f"members addresses from {UNKNOWN_SUBNET}.",
                    at,
                    severity=Severity.WARNING,
                )
            )


def _version_of(address: str) -> int:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return 4
