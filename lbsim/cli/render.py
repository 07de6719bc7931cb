"""Text and JSON renderings of lbsim's values, for the CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from tabulate import tabulate

from lbsim.api.views import check_json
from lbsim.control.check import FlowCheck
from lbsim.control.nsg import EffectiveRule
from lbsim.control.types import BalancingEntry, NatEntry
from lbsim.errors import Problem
from lbsim.model import SubResource


# The streams are looked up at each call (not bound as defaults at import), so that output
# follows a redirected sys.stdout / sys.stderr.
def problems(items: Iterable[Problem], out: TextIO | None = None, prefix: str = "") -> None:
    for item in items:
        print(f"{prefix}{item}", file=out or sys.stderr)


def dump(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(value, out, indent=2)
    out.write("\n")


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    return tabulate(rows, headers=list(headers), tablefmt="simple", disable_numparse=True)


_RULE_HEADERS = ("LOAD BALANCER", "RULE", "PROTOCOL", "FRONTEND", "BACKEND PORT")
NAT_HEADERS = (*_RULE_HEADERS, "INSTANCE", "BACKEND IP")
BALANCING_HEADERS = (*_RULE_HEADERS, "BACKENDS", "PROBE")


def _rule_cells(entry: NatEntry | BalancingEntry) -> list[Any]:
    """The columns NAT entries and load-balancing rules share."""
    frontend = f"{entry.frontend.address}:{entry.frontend_port}"
    return [
        entry.load_balancer,
        entry.rule_name,
        entry.protocol.value,
        frontend,
        entry.backend_port,
    ]


def nat_row(entry: NatEntry) -> list[Any]:
    backend = entry.backend
    if backend is None:  # a V1 rule no NIC references
        return [*_rule_cells(entry), "(none)", "-"]
    return [*_rule_cells(entry), backend.label, backend.private_ip_address]


def balancing_row(entry: BalancingEntry) -> list[Any]:
    probe = entry.probe
    shown = f"{probe.name} ({probe.protocol.value}:{probe.port})" if probe else "-"
    return [*_rule_cells(entry), len(entry.backends), shown]


def mark(flag: bool) -> str:
    return "yes" if flag else "no"


_FLAGS = ("protocol", "source", "sourcePort", "destination", "destinationPort")
EVALUATED_HEADERS = (
    "NSG",
    "LEVEL",
    "PRIORITY",
    "RULE",
    "ACCESS",
    "PROTO",
    "SRC",
    "SPORT",
    "DST",
    "DPORT",
    "",
)


def _evaluated_row(item: dict[str, Any]) -> list[Any]:
    head = [item[k] for k in ("networkSecurityGroup", "level", "priority", "rule", "access")]
    return [*head, *(mark(item[k]) for k in _FLAGS), "MATCH" if item["matched"] else ""]


def _verdict_lines(data: dict[str, Any], backend: str) -> list[str]:
    flow = data["flow"]
    via = f" via NAT rule {data['natRule']}" if data["natRule"] else ""
    if data.get("natKind") == "InstancePublicIP":
        via = f" via its own public IP ({data['natRule']})"
    if data["loadBalancingRule"]:
        via = f" via load-balancing rule {data['loadBalancingRule']}"
    source = _endpoint(flow["sourceAddress"], flow["sourcePort"])
    destination = _endpoint(flow["destinationAddress"], flow["destinationPort"])
    first = f"{data['access']}: {flow['protocol']} {source} -> {backend} {destination}{via}"
    judged = _judged(data, backend, destination)
    if not data["ruleName"]:
        return [first, _without_nsg(data), judged]
    where = f"at {data['at']}" if data["at"] else "(a default rule)"
    nsg, level = data["networkSecurityGroup"], data["level"]
    return [first, f"decided by rule {data['ruleName']} of NSG {nsg} ({level}) {where}", judged]


def _judged(data: dict[str, Any], backend: str, destination: str) -> str:
    """Which destination the NSGs judged, and why that one: the address a rule's
    destination prefixes must match."""
    if data["floatingIP"]:
        return (
            f"destination judged: {destination}, the frontend's address: the rule enables "
            f"floating IP, so the packet reaches {backend} with the frontend's address as its "
            "destination"
        )
    if data.get("natKind") == "InstancePublicIP":
        return (
            f"destination judged: {destination}, {backend}'s private address: Azure "
            "translated its public IP to it"
        )
    if data["natRule"] or data["loadBalancingRule"]:
        return (
            f"destination judged: {destination}, {backend}'s private address: the load "
            "balancer translated the frontend's address to it (no floating IP)"
        )
    return f"destination judged: {destination}, {backend}'s private address"


def _endpoint(address: str, port: int) -> str:
    """``address:port``, with an IPv6 address in brackets."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _without_nsg(data: dict[str, Any]) -> str:
    """Why a flow that no NSG judged is allowed or denied."""
    standard = (data["loadBalancerSku"] or "").lower() == "standard"
    if data["access"] == "Deny":
        return (
            "no network security group applies, and a Standard load balancer admits only "
            "flows that an NSG allows: denied"
        )
    if standard:
        return (
            "no network security group applies: allowed (a Standard load balancer admits flows "
            "from its virtual network to an internal frontend)"
        )
    return "no network security group applies: allowed"


def check_text(result: FlowCheck) -> str:
    """The verdict, the deciding rule, and every rule evaluated with its five match flags."""
    data = check_json(result)
    lines = _verdict_lines(data, result.backend.label)
    rows = [_evaluated_row(e) for e in data["evaluated"]]
    if rows:
        lines += ["", table(rows, EVALUATED_HEADERS)]
    return "\n".join(lines)


def effective_rows(rules: Sequence[EffectiveRule]) -> list[list[Any]]:
    rows = []
    for item in rules:
        r = item.rule
        rows.append(
            [
                item.network_security_group_name,
                item.level,
                r.priority,
                r.name,
                r.access.value,
                r.protocol.value,
                _side(r.sources(), r.source_application_security_groups),
                ",".join(r.source_ports()) or "*",
                _side(r.destinations(), r.destination_application_security_groups),
                ",".join(r.destination_ports()) or "*",
            ]
        )
    return rows


def _side(prefixes: tuple[str, ...], groups: tuple[SubResource, ...]) -> str:
    names = [*prefixes, *(f"asg:{g.name}" for g in groups)]
    return ",".join(names) or "*"
