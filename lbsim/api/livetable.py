"""What a running lbsim shows of itself: the NAT table and rules with where each listens (the
port map's doing), and its instances with their power state, protection and ports."""

from __future__ import annotations

from typing import Any

from lbsim.api import queries
from lbsim.control.fleet import Fleet
from lbsim.control.types import Backend, BalancingEntry, NatEntry, Plan
from lbsim.dataplane.runtime import Runtime

ListenKey = tuple[str, str, int]  # (Azure's frontend address, transport, Azure's port)


def listen_key(entry: NatEntry | BalancingEntry) -> ListenKey:
    return (entry.frontend.address, entry.protocol.value, entry.frontend_port)


def listening(runtime: Runtime) -> dict[ListenKey, tuple[str, int]]:
    """Where each listener is bound, by Azure's (address, transport, port)."""
    return {listen_key(listener.entry): listener.listen_address for listener in runtime.listeners}


def ports_json(plan: Plan, runtime: Runtime) -> list[dict[str, Any]]:
    """The NAT table and rules as Azure has them, each with ``listenAddress`` and
    ``listenPort``: where lbsim listens for it (None without a listener)."""
    bound = listening(runtime)
    rows = queries.ports_json(plan)
    for row in rows:
        key = (row["frontendIPAddress"], row["protocol"], row["frontendPort"])
        row["listenAddress"], row["listenPort"] = bound.get(key, (None, None))
    return rows


def instances_json(plan: Plan, fleet: Fleet, runtime: Runtime) -> list[dict[str, Any]]:
    """Per instance: its name, private address, state, protection, its SSH host key's
    fingerprint (``hostKey``: None until its SSH server first started), and each NAT entry
    that reaches it with where it is served and where lbsim listens for it."""
    served = {
        (listener.key, route.backend.key): route.served_by
        for listener in runtime.listeners
        for route in listener.routes
    }
    bound = listening(runtime)
    entries: dict[str, list[NatEntry]] = {}
    for entry in plan.nat:
        if entry.backend is not None:
            entries.setdefault(entry.backend.key, []).append(entry)
    rows: dict[str, dict[str, Any]] = {}
    for backend in plan.backends:
        row = rows.setdefault(backend.label, _instance_row(backend, fleet))
        row["hostKey"] = row["hostKey"] or runtime.ssh.fingerprint(backend)
        row["ports"] += [
            _port_json(
                entry,
                served.get((entry.listen_key, backend.key)),
                bound.get(listen_key(entry), (None, None)),
            )
            for entry in entries.get(backend.key, ())
        ]
    return list(rows.values())


def _instance_row(backend: Backend, fleet: Fleet) -> dict[str, Any]:
    state, protected = "running", False
    if backend.scale_set is not None and backend.instance_id is not None:
        scale_set = fleet.of(backend.scale_set)
        found = scale_set.find(backend.instance_id) if scale_set else None
        if found is not None:
            state, protected = found.state.value, found.protected
    return {
        "scaleSet": backend.scale_set,
        "instanceId": backend.instance_id,
        "name": backend.label,
        "privateIPAddress": backend.private_ip_address,
        "state": state,
        "protectFromScaleIn": protected,
        "hostKey": None,
        "ports": [],
    }


def _port_json(
    entry: NatEntry, served_by: str | None, listen: tuple[str | None, int | None]
) -> dict[str, Any]:
    return {
        "ruleName": entry.rule_name,
        "frontendIPAddress": entry.frontend.address,
        "frontendPort": entry.frontend_port,
        "protocol": entry.protocol.value,
        "backendPort": entry.backend_port,
        "servedBy": served_by,
        "listenAddress": listen[0],
        "listenPort": listen[1],
    }
