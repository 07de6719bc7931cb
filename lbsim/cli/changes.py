"""Text for the control API's answers: what a change did, in a few lines, and ``lbsim list``'s
table (one row per instance, one column per NAT pool or rule, like a virtual server host's
``list``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def change_lines(what: str, report: dict[str, Any]) -> list[str]:
    """``what`` and a summary, then one line per instance and per entry added or removed."""
    instances = report.get("instances", {})
    nsgs = report.get("networkSecurityGroups", {}).get("changed", [])
    lines = [
        *(f"  + instance {name}" for name in instances.get("added", [])),
        *(f"  - instance {name}" for name in instances.get("removed", [])),
        *(f"  ~ instance {name}" for name in instances.get("changed", [])),
        *(f"  + {entry_text(e)}" for e in report.get("added", [])),
        *(f"  - {entry_text(e)}" for e in report.get("removed", [])),
        *(f"  ~ network security group {name}" for name in nsgs),
    ]
    counts = [
        _count(len(instances.get("added", [])), "instance", "added"),
        _count(len(instances.get("removed", [])), "instance", "removed"),
        _count(len(instances.get("changed", [])), "instance", "changed"),
        _count(len(report.get("added", [])), "entry", "added"),
        _count(len(report.get("removed", [])), "entry", "removed"),
        _count(len(nsgs), "NSG", "changed"),
    ]
    summary = ", ".join(c for c in counts if c) or "no change"
    return [f"lbsim: {what}: {summary}", *lines]


def _count(n: int, noun: str, verb: str) -> str:
    if not n:
        return ""
    plural = {"entry": "entries"}.get(noun, noun + "s") if n != 1 else noun
    return f"{n} {plural} {verb}"


def entry_text(entry: dict[str, Any]) -> str:
    """``ssh.3 Tcp 127.0.0.1:50003 -> web/3 port 22`` (a rule: ``-> 3 backends port 80``)."""
    frontend = _endpoint(str(entry.get("frontendIPAddress")), entry.get("frontendPort"))
    if "backends" in entry:
        count = len(entry["backends"])
        target = f"{count} backend{'s' if count != 1 else ''}"
    else:
        target = str(entry.get("backend") or "no backend")
    return (
        f"{entry.get('ruleName')} {entry.get('protocol')} {frontend} -> {target} "
        f"port {entry.get('backendPort')}"
    )


def _endpoint(address: str, port: Any) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def list_rows(instances: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Headers and rows: scale set, id, private IP, state, protected from scale-in, then each
    rule's frontend port, then the SSH host key's fingerprint."""
    columns: list[str] = []
    cells: list[dict[str, list[str]]] = []
    for item in instances:
        mine: dict[str, list[str]] = {}
        for port in item.get("ports", []):
            column = rule_column(str(port.get("ruleName")), item.get("instanceId"))
            if column not in columns:
                columns.append(column)
            text = str(port.get("frontendPort"))
            if text not in mine.setdefault(column, []):
                mine[column].append(text)
        cells.append(mine)
    headers = ["SCALE SET", "ID", "PRIVATE IP", "STATE", "PROTECTED", *columns, "HOST KEY"]
    rows = [
        [
            item.get("scaleSet") or item.get("name"),
            "-" if item.get("instanceId") is None else item["instanceId"],
            item.get("privateIPAddress") or "-",
            item.get("state"),
            "yes" if item.get("protectFromScaleIn") else "no",
            *(",".join(mine.get(c, [])) or "-" for c in columns),
            item.get("hostKey") or "-",
        ]
        for item, mine in zip(instances, cells, strict=True)
    ]
    return headers, rows


def rule_column(rule_name: str, instance_id: Any) -> str:
    """A NAT pool's entries are named ``<pool>.<instanceId>`` (as Azure names them): their
    column is the pool's; a NAT rule's or load-balancing rule's is its own name."""
    suffix = f".{instance_id}"
    if instance_id is not None and rule_name.endswith(suffix):
        return rule_name[: -len(suffix)]
    return rule_name
