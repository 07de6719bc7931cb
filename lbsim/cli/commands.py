"""``lbsim validate | ports | check | rules``: the control plane from the command line."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from lbsim.api import views
from lbsim.api.files import Loaded, load
from lbsim.cli import render
from lbsim.control.check import (
    FlowCheck,
    check_balancing,
    check_direct,
    check_nat,
    find_entry,
)
from lbsim.control.nsg import effective_rules
from lbsim.control.types import Backend, BalancingEntry, Plan
from lbsim.errors import LbsimError
from lbsim.model import SecurityRuleDirection, TransportProtocol

EXIT_OK, EXIT_DENY, EXIT_INVALID = 0, 1, 2


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = load(args)
    render.problems(loaded.warnings, prefix="warning: ")
    d = loaded.deployment
    print(f"{args.template}: valid")
    counts = [
        (len(d.load_balancers), "load balancer"),
        (len(d.network_security_groups), "network security group"),
        (len(d.virtual_networks), "virtual network"),
        (len(d.public_ip_addresses), "public IP address"),
        (len(d.network_interfaces), "network interface"),
        (len(d.virtual_machines), "virtual machine"),
        (len(d.virtual_machine_scale_sets), "scale set"),
    ]
    emulated = ", ".join(f"{n} {_plural(what, n)}" for n, what in counts if n)
    print(f"  emulated: {emulated or 'nothing'}")
    for vmss in d.virtual_machine_scale_sets:
        print(
            f"    scale set {vmss.name}: {vmss.capacity} instance(s), "
            f"{vmss.os_type or 'unknown OS'}"
        )
    types = Counter(r.type for r in d.not_emulated)
    if types:
        print("  not emulated: " + ", ".join(f"{t} ({n})" for t, n in sorted(types.items())))
    for name, value in d.outputs:
        print(f"  output {name}: {json.dumps(value) if not isinstance(value, str) else value}")
    plan = loaded.plan
    print(
        f"  plan: {len(plan.nat)} NAT entries, {len(plan.balancing)} load-balancing entries, "
        f"{len(plan.backends)} backends, {len(loaded.warnings)} warning(s)"
    )
    return EXIT_OK


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun
    return noun + ("es" if noun.endswith("s") else "s")


def cmd_ports(args: argparse.Namespace) -> int:
    loaded = load(args)
    render.problems(loaded.warnings, prefix="warning: ")
    plan = loaded.plan
    if args.output == "json":
        rows = [views.nat_json(e) for e in plan.nat]
        render.dump(rows + [views.balancing_json(e) for e in plan.balancing])
        return EXIT_OK
    if plan.nat:
        print(render.table([render.nat_row(e) for e in plan.nat], render.NAT_HEADERS))
    else:
        print("No inbound NAT entries.")
    if plan.balancing:
        print()
        print(
            render.table(
                [render.balancing_row(e) for e in plan.balancing], render.BALANCING_HEADERS
            )
        )
    return EXIT_OK


def parse_endpoint(text: str, what: str, default_port: int | None) -> tuple[str, int]:
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


def cmd_check(args: argparse.Namespace) -> int:
    loaded = load(args)
    protocol = TransportProtocol(args.protocol)
    source, source_port = parse_endpoint(args.source, "--source", args.source_port_default)
    if args.frontend_port is not None:
        entry = find_entry(loaded.plan, protocol, args.frontend_port, args.frontend)
        if isinstance(entry, BalancingEntry):
            result: FlowCheck = check_balancing(loaded.plan, entry, source, source_port)
        else:
            result = check_nat(loaded.plan, entry, source, source_port)
    else:
        address, port = parse_endpoint(args.destination, "--destination", None)
        result = check_direct(
            loaded.plan, protocol, source, source_port, address=address, port=port
        )
    if args.output == "json":
        render.dump(views.check_json(result))
    else:
        print(render.check_text(result))
    return EXIT_OK if result.verdict.allowed else EXIT_DENY


RULES_HEADERS = (
    "NSG",
    "LEVEL",
    "PRIORITY",
    "RULE",
    "ACCESS",
    "PROTOCOL",
    "SOURCE",
    "SPORT",
    "DESTINATION",
    "DPORT",
)


def find_instance(plan: Plan, text: str) -> Backend:
    """The backend ``--instance`` names: ``SCALESET/N`` as lbsim spells it everywhere, Azure's
    own instance name ``SCALESET_N`` (what the portal shows), or a VM's name."""
    backend = plan.backend(text)
    if backend is None:
        wanted = text.lower()
        backend = next((b for b in plan.backends if b.name.lower() == wanted), None)
    if backend is None:
        known = ", ".join(b.label for b in plan.backends[:20]) or "none"
        more = f" (and {len(plan.backends) - 20} more)" if len(plan.backends) > 20 else ""
        raise LbsimError(
            "UnknownInstance",
            f"--instance {text}: no such instance; give SCALESET/N or a VM's name: {known}{more}.",
        )
    return backend


def cmd_rules(args: argparse.Namespace) -> int:
    loaded: Loaded = load(args)
    backend = find_instance(loaded.plan, args.instance)
    direction = SecurityRuleDirection(args.direction)
    rules = effective_rules(backend.subnet_nsg, backend.nic_nsg, direction)
    if args.output == "json":
        render.dump(views.rules_json(backend, direction, rules))
        return EXIT_OK
    print(f"{backend.label} ({backend.private_ip_address}), {direction.value}:")
    if rules:
        print(render.table(render.effective_rows(rules), RULES_HEADERS))
    else:
        print(
            "no network security group applies: a Basic load balancer lets every flow in; a "
            "Standard one only flows from the virtual network to an internal frontend"
        )
    return EXIT_OK
