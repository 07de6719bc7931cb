"""Questions asked of a plan, shared by the CLI's one-shot commands and a running lbsim:
the NSG verdict on a flow, an instance by name, and the NAT table's JSON."""

from __future__ import annotations

from typing import Any

from lbsim.api import views
from lbsim.control.check import FlowCheck, check_balancing, check_direct, check_nat, find_entry
from lbsim.control.types import Backend, BalancingEntry, Plan
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol

DEFAULT_SOURCE_PORT = 49152


def parse_endpoint(text: str, what: str, default_port: int | None) -> tuple[str, int]:
    """``IP[:PORT]`` (``[v6]:PORT`` for IPv6) as an address and a port."""
    host, sep, port = text.rpartition(":")
    if not sep or (host.count(":") and not host.startswith("[")):
        host, port = text, ""
    host = host.strip("[]")
    if not port:
        if default_port is None:
            raise LbsimError("InvalidArgument", f"{what} needs IP:PORT, got {text!r}.")
        return host, default_port
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise LbsimError("InvalidArgument", f"{what}: {port!r} is not a port number.")
    return host, int(port)


def check_flow(
    plan: Plan,
    *,
    source: str,
    frontend_port: int | None = None,
    destination: str | None = None,
    protocol: str = "Tcp",
    frontend: str | None = None,
    flags: tuple[str, str] = ("source", "destination"),
) -> FlowCheck:
    """The NSG verdict on a flow from ``source`` (``IP[:PORT]``) to a frontend port (through
    its NAT entry or load-balancing rule) or straight to a private ``destination``; errors
    name the two as ``flags`` says (the CLI's ``--source``, the API's ``source``)."""
    transport = _transport(protocol)
    address, port = parse_endpoint(source, flags[0], DEFAULT_SOURCE_PORT)
    if frontend_port is not None:
        entry = find_entry(plan, transport, frontend_port, frontend)
        if isinstance(entry, BalancingEntry):
            return check_balancing(plan, entry, address, port)
        return check_nat(plan, entry, address, port)
    if destination is None:
        raise LbsimError("InvalidArgument", "a flow needs a frontend port or a destination.")
    to, to_port = parse_endpoint(destination, flags[1], None)
    return check_direct(plan, transport, address, port, address=to, port=to_port)


def find_instance(
    plan: Plan, text: str, *, code: str = "ResourceNotFound", flag: str = ""
) -> Backend:
    """The backend ``text`` names: ``SCALESET/N`` as lbsim spells it everywhere, Azure's own
    instance name ``SCALESET_N`` (what the portal shows), or a VM's name; else ``code``,
    naming the instances there are (``flag``, such as ``--instance``, leads the message)."""
    backend = plan.backend(text)
    if backend is None:
        wanted = text.lower()
        backend = next((b for b in plan.backends if b.name.lower() == wanted), None)
    if backend is None:
        known = ", ".join(b.label for b in plan.backends[:20]) or "none"
        more = f" (and {len(plan.backends) - 20} more)" if len(plan.backends) > 20 else ""
        lead = f"{flag} {text}" if flag else text
        raise LbsimError(
            code,
            f"{lead}: no such instance; give SCALESET/N or a VM's name: {known}{more}.",
        )
    return backend


def ports_json(plan: Plan) -> list[dict[str, Any]]:
    """The JSON of ``lbsim ports -o json``: NAT entries, then load-balancing rules."""
    rows = [views.nat_json(e) for e in plan.nat]
    return rows + [views.balancing_json(e) for e in plan.balancing]


def _transport(protocol: str) -> TransportProtocol:
    try:
        return TransportProtocol(protocol.capitalize())
    except ValueError:
        raise LbsimError("InvalidArgument", f"protocol {protocol!r}: choose Tcp or Udp.") from None
