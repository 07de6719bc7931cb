"""``lbsim validate | ports | check | rules``: the control plane from the command line."""

from __future__ import annotations

import argparse
import json
from collections import Counter

from lbsim.api import queries, views
from lbsim.api.files import Loaded, load
from lbsim.arm.secrets import SecureValue
from lbsim.cli import render
from lbsim.control.nsg import effective_rules
from lbsim.model import SecurityRuleDirection

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
        (len(d.bastion_hosts), "bastion host"),
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
        print(f"  output {name}: {_output_text(value)}")
    plan = loaded.plan
    print(
        f"  plan: {len(plan.nat)} NAT entries, {len(plan.balancing)} load-balancing entries, "
        f"{len(plan.backends)} backends, {len(loaded.warnings)} warning(s)"
    )
    return EXIT_OK


def _output_text(value: object) -> str:
    """An output as validate prints it; a secure output has no value to print (Azure
    returns none for it either)."""
    if isinstance(value, SecureValue):
        return str(value)
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _plural(noun: str, count: int) -> str:
    if count == 1:
        return noun
    return noun + ("es" if noun.endswith("s") else "s")


def cmd_ports(args: argparse.Namespace) -> int:
    loaded = load(args)
    render.problems(loaded.warnings, prefix="warning: ")
    plan = loaded.plan
    if args.output == "json":
        render.dump(queries.ports_json(plan))
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


def cmd_check(args: argparse.Namespace) -> int:
    loaded = load(args)
    result = queries.check_flow(
        loaded.plan,
        source=args.source,
        frontend_port=args.frontend_port,
        destination=args.destination,
        protocol=args.protocol,
        frontend=args.frontend,
        flags=("--source", "--destination"),
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


def cmd_rules(args: argparse.Namespace) -> int:
    loaded: Loaded = load(args)
    backend = queries.find_instance(
        loaded.plan, args.instance, code="UnknownInstance", flag="--instance"
    )
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
