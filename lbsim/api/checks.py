"""Settings that ``lbsim up`` accepts on their own but that cannot do what they say with the
template loaded: checked once both are known, at start. A setting that would serve nothing
(a ``--backend`` for a scale set the template lacks) or that exposes more than the loopback
interface is a warning; a template whose frontends outnumber the loopback addresses that can
stand for its public IPs is an error, before anything is bound."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

from lbsim.api.config import UpConfig
from lbsim.api.files import Loaded
from lbsim.control.types import Frontend, Plan
from lbsim.errors import Problem, Severity, TemplateInvalid
from lbsim.model import Deployment


def at_start(loaded: Loaded, config: UpConfig, template: str) -> tuple[Problem, ...]:
    """The load's warnings and these, to print before ``ready``; raises ``TemplateInvalid``
    for an error."""
    _check_public_addresses(loaded, template)
    return (
        *loaded.warnings,
        *_unknown_backends(loaded.deployment, loaded.plan, config),
        *_exposed_frontends(loaded.plan),
        *_exposed_api(config),
        *_exposed_socks(config),
    )


def _warning(code: str, message: str) -> Problem:
    return Problem(code, message, severity=Severity.WARNING)


def _unknown_backends(deployment: Deployment, plan: Plan, config: UpConfig) -> Iterator[Problem]:
    """A ``--backend`` (or ``[backends]``) entry is looked up by scale set, virtual machine or
    instance name; one that names none of them serves nothing, silently, so say so."""
    scale_sets = sorted(v.name for v in deployment.virtual_machine_scale_sets)
    machines = sorted(v.name for v in deployment.virtual_machines)
    known = {name.lower() for name in scale_sets + machines}
    known |= {b.name.lower() for b in plan.backends}
    for name in sorted(config.runtime.backends):
        if name not in known:
            yield _warning(
                "BackendNotInTemplate",
                f"backends.{name} names no scale set or virtual machine of the template, so it "
                f"serves nothing (scale sets: {', '.join(scale_sets) or 'none'}; virtual "
                f"machines: {', '.join(machines) or 'none'}).",
            )


def _loopback(address: str) -> bool:
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _exposed_frontends(plan: Plan) -> Iterator[Problem]:
    """A frontend moved off loopback (``--frontend NAME=0.0.0.0``) takes connections from
    other hosts, which the NSGs then judge by their real addresses."""
    ports: dict[str, list[int]] = {}
    for entry in plan.nat:
        ports.setdefault(entry.frontend.key, []).append(entry.frontend_port)
    for rule in plan.balancing:
        ports.setdefault(rule.frontend.key, []).append(rule.frontend_port)
    for frontend in plan.frontends:
        if not _loopback(frontend.address):
            yield _warning(
                "FrontendNotLoopback",
                f"the frontend {frontend.label} listens on {frontend.address}, not loopback: its "
                f"{_ports(ports.get(frontend.key, []))} are reachable from other hosts, and "
                "the NSGs judge them by their own addresses (unless --source maps them).",
            )


def _ports(ports: list[int]) -> str:
    if not ports:
        return "ports (none yet)"
    low, high = min(ports), max(ports)
    return f"port {low}" if low == high else f"{len(ports)} ports ({low}-{high})"


def _exposed_api(config: UpConfig) -> Iterator[Problem]:
    """Off loopback the control API already requires a token; what it still exposes is
    that anyone who has the token (or none, for /healthz) can reach it."""
    values = config.values
    address = values["api_address"]
    if values["api_port"] is not None and not _loopback(address):
        yield _warning(
            "ApiNotLoopback",
            f"the control API on {address} is reachable from other hosts: whoever holds "
            "api_token can read the NAT table and the metrics and scale, stop or reload this "
            "load balancer; /healthz answers anyone.",
        )


def _exposed_socks(config: UpConfig) -> Iterator[Problem]:
    """The SOCKS endpoint asks no one for credentials: off loopback, any host that reaches
    it connects to every instance's ports as a VM of the virtual network would."""
    socks = config.runtime.socks
    if socks is not None and not _loopback(socks[0]):
        yield _warning(
            "SocksNotLoopback",
            f"the SOCKS endpoint on {socks[0]}:{socks[1]} is reachable from other hosts and "
            "asks for no credentials: it is an unauthenticated way into every instance, as a "
            "VM of the virtual network (AllowVnetInBound lets it in).",
        )


def _check_public_addresses(loaded: Loaded, template: str) -> None:
    """Each public IP stands for itself as a loopback address of its own, numbered in order
    of use; past the last one that can be numbered, a frontend has no address to listen on."""
    unbound = [f for f in loaded.plan.frontends if _unnumbered(f)]
    if not unbound:
        return
    public = loaded.deployment.public_ip_addresses
    first = unbound[0]
    at = next((p.at for p in public if p.name == first.public_ip_address), None)
    raise TemplateInvalid(
        [
            Problem(
                "TooManyPublicIPAddresses",
                f"the template has {len(public)} public IP addresses and lbsim stands for each "
                "with a loopback address of its own, but the loopback range it numbers them in "
                f"has no address for '{first.public_ip_address}' (of frontend {first.label}; "
                f"{len(unbound)} frontend(s) in all). Move them with --frontend NAME=ADDRESS "
                "or use fewer public IPs.",
                at,
                template,
            )
        ]
    )


def _unnumbered(frontend: Frontend) -> bool:
    """A public frontend the loader numbered past the range: 127.0.0.N with N over 255 is
    no address at all (a user's own --frontend address is the user's to choose)."""
    if frontend.public_ip_address is None or not frontend.address.startswith("127."):
        return False
    try:
        ipaddress.ip_address(frontend.address)
    except ValueError:
        return True
    return False
