"""Where each load balancer frontend listens on this machine.

A public frontend listens on the loopback address that stands for its public IP (the loader
gives public IPs 127.0.0.1, 127.0.0.2, ... in order of use, load balancer frontends first).
An internal frontend gets its private address in its subnet, as Azure would, and listens on the
next loopback address that no public IP uses. ``overrides`` (``--frontend NAME=ADDRESS``) win;
a name is ``LB/FRONTEND`` or just ``FRONTEND`` when that is unambiguous.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

import attrs

from lbsim.control.addresses import Addresses
from lbsim.control.index import Index
from lbsim.control.types import Frontend
from lbsim.errors import Problem, Severity
from lbsim.model import Deployment, FrontendIPConfiguration, LoadBalancer, PublicIPAddress


def plan_frontends(
    deployment: Deployment, index: Index, addresses: Addresses, overrides: Mapping[str, str]
) -> tuple[dict[str, Frontend], list[Problem]]:
    taken = {p.ip_address for p in deployment.public_ip_addresses if p.ip_address}
    spare = Spare(taken)
    out: dict[str, Frontend] = {}
    chained: list[Problem] = []
    for lb in deployment.load_balancers:
        for fe in lb.frontend_ip_configurations:
            frontend = _frontend(lb, fe, index, addresses, spare)
            out[frontend.key] = frontend
            if fe.gateway_load_balancer is not None:
                chained.append(_gateway(frontend, fe))
    planned, problems = apply_overrides(out, overrides)
    return planned, chained + problems


def _gateway(frontend: Frontend, fe: FrontendIPConfiguration) -> Problem:
    gateway = fe.gateway_load_balancer.id if fe.gateway_load_balancer else ""
    return Problem(
        "GatewayLoadBalancerNotEmulated",
        f"The frontend {frontend.label} chains to a Gateway load balancer ({gateway}); lbsim "
        "sends its flows straight to the backends, without the appliances in between.",
        fe.at,
        severity=Severity.WARNING,
    )


def _frontend(
    lb: LoadBalancer,
    fe: FrontendIPConfiguration,
    index: Index,
    addresses: Addresses,
    spare: Spare,
) -> Frontend:
    pip = index.resolve(fe.public_ip_address, PublicIPAddress, fe.id)
    if pip is not None and pip.ip_address:
        return Frontend(
            fe.id, lb.name, fe.name, pip.ip_address, public_ip_address=pip.name, sku=lb.sku
        )
    subnet_id = fe.subnet.id if fe.subnet else None
    private = fe.private_ip_address
    dynamic = fe.private_ip_allocation_method.lower() != "static" or not private
    if fe.subnet is not None and dynamic:
        private = addresses.dynamic(subnet_id, fe.at)
    return Frontend(fe.id, lb.name, fe.name, spare.take(), private_ip_address=private, sku=lb.sku)


class Spare:
    """Loopback addresses for frontends that no public IP resource numbers: the lowest one
    that is not ``taken`` (the set is updated as addresses are handed out)."""

    def __init__(self, taken: set[str]) -> None:
        self._taken = taken
        self._next = int(ipaddress.ip_address("127.0.0.1"))

    def take(self) -> str:
        while str(ipaddress.ip_address(self._next)) in self._taken:
            self._next += 1
        address = str(ipaddress.ip_address(self._next))
        self._taken.add(address)
        return address


def apply_overrides(
    frontends: dict[str, Frontend], overrides: Mapping[str, str]
) -> tuple[dict[str, Frontend], list[Problem]]:
    """``--frontend NAME=ADDRESS``: each names one frontend (load balancer frontends and
    instance public IPs alike) by ``LB/NAME`` or ``NAME``; ``frontends`` is updated."""
    problems: list[Problem] = []
    for name, address in overrides.items():
        matches = [
            f for f in frontends.values() if name.lower() in (f.label.lower(), f.name.lower())
        ]
        if len(matches) != 1:
            known = ", ".join(sorted(f.label for f in frontends.values())) or "none"
            why = "matches no frontend" if not matches else "is ambiguous"
            problems.append(
                Problem("UnknownFrontend", f"--frontend {name} {why}; frontends: {known}.")
            )
            continue
        frontends[matches[0].key] = attrs.evolve(matches[0], address=address)
    return frontends, problems
