"""Reachability, tried for real, and explained when it is not what a test expected.

A TCP connection that gets a first byte, or that stays open for a moment, reached its
instance; one that is reset (a denied flow under ``deny_mode = "reset"``, a stopped instance)
or refused did not, and neither did one held silently by a ``down`` fault on its instance (a
crashed VM answers nothing: the connection stays open, but nothing is reached). A UDP
datagram reached its instance when an answer comes back (the built-in UDP servers echo).
When an assertion fails its message says what lbsim decided and why: the NAT entry used, the
deciding NSG rule and which of its parts matched the flow, as ``lbsim check`` shows them.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable
from typing import Any

import attrs

from lbsim.control.types import NatEntry, Plan
from lbsim.dataplane.faults import Fault, FaultType, rules_of

HOLD_S = 0.3  # how long a silent TCP connection must stay open to count as reachable
_PARTS = ("protocol", "source", "sourcePort", "destination", "destinationPort")


@attrs.frozen
class Attempt:
    """One real connection through a NAT entry, and what came of it."""

    target: tuple[str, int]  # where lbsim listens for the entry
    client: str  # the local address connected from
    reached: bool
    outcome: str  # "first byte", "open", "echo", "reset", "refused", "no answer", ...


def attempt(client: str, target: tuple[str, int], protocol: str, hold_s: float) -> Attempt:
    """Connect from ``client`` to ``target`` and tell whether the flow got through."""
    if protocol.lower() == "udp":
        reached, outcome = _udp(client, target, hold_s)
    else:
        reached, outcome = _tcp(client, target, hold_s)
    return Attempt(target, client, reached, outcome)


def _tcp(client: str, target: tuple[str, int], hold_s: float) -> tuple[bool, str]:
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(max(hold_s, 5.0))
        if family == socket.AF_INET:
            sock.bind((client, 0))
        try:
            sock.connect(target)
        except ConnectionRefusedError:
            return False, "refused (nothing listens there)"
        except ConnectionResetError:
            return False, "reset"
        except OSError as error:
            return False, f"connect failed: {error.strerror or error}"
        sock.settimeout(hold_s)
        try:
            data = sock.recv(1)
        except TimeoutError:
            return True, f"open for {hold_s:g} s without a reset"
        except ConnectionResetError:
            return False, "reset"
        except OSError as error:
            return False, f"failed: {error.strerror or error}"
        return (True, "first byte") if data else (False, "closed before a first byte")


def silent(tried: Attempt) -> bool:
    """Whether a TCP attempt counted as reached only for staying open (no first byte)."""
    return tried.reached and tried.outcome.startswith("open for")


def nat_entry(
    plan: Plan, scale_set: str, instance_id: int, backend_port: int, protocol: str
) -> NatEntry | None:
    """The NAT entry that reaches ``backend_port`` of the instance, as ``endpoint`` finds it."""
    label = f"{scale_set}/{instance_id}".lower()
    for entry in plan.nat:
        backend = entry.backend
        if (
            backend is not None
            and backend.label.lower() == label
            and entry.backend_port == backend_port
            and entry.protocol.value.lower() == protocol.lower()
        ):
            return entry
    return None


def holding_fault(faults: Iterable[Fault], entry: NatEntry | None) -> Fault | None:
    """The ``down`` fault that may hold a new TCP flow through ``entry`` silently (its
    target matches the entry's frontend port, rule and instance), if one is set."""
    if entry is None or entry.backend is None:
        return None
    rules, label = rules_of(entry), entry.backend.label
    for fault in faults:
        if (
            fault.type is FaultType.DOWN
            and fault.toxicity > 0
            and fault.target.matches(entry.frontend_port, rules, label)
        ):
            return fault
    return None


def held(tried: Attempt, fault: Fault) -> Attempt:
    """A silent attempt, as the ``down`` fault that held it: not reached."""
    why = f"held silently by the down fault {fault.name!r} (a crashed instance answers nothing)"
    return attrs.evolve(tried, reached=False, outcome=why)


def _udp(client: str, target: tuple[str, int], hold_s: float) -> tuple[bool, str]:
    family = socket.AF_INET6 if ":" in target[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if family == socket.AF_INET:
            sock.bind((client, 0))
        sock.settimeout(max(hold_s, 1.0))
        sock.sendto(b"lbsim reachability", target)
        try:
            sock.recvfrom(65535)
        except TimeoutError:
            return False, "no answer"
        except OSError as error:
            if error.errno == errno.ECONNREFUSED:
                return False, "refused (nothing listens there)"
            raise
        return True, "answered"


def explain(
    expected: str, what: str, tried: Attempt, entry: dict[str, Any], verdict: dict[str, Any]
) -> str:
    """The message of a failed assertion: what was tried, what happened, and lbsim's own
    account (the NAT entry, the deciding NSG rule and its match flags)."""
    host, port = tried.target
    lines = [
        f"{what}: expected {expected}; from {tried.client} to {host}:{port}: {tried.outcome}.",
        f"  NAT entry: {entry['ruleName']} {entry['frontendIPAddress']}:"
        f"{entry['frontendPort']} -> {entry['backend']} ({entry['backendIPAddress']}):"
        f"{entry['backendPort']} {entry['protocol']}",
        f"  NSG verdict for source {verdict['flow']['sourceAddress']}: {verdict['access']}"
        f" by {_deciding(verdict)}",
    ]
    lines += [f"    {_evaluated(item)}" for item in verdict.get("evaluated", [])]
    return "\n".join(lines)


def _deciding(verdict: dict[str, Any]) -> str:
    rule = verdict.get("ruleName")
    if rule is None:
        return "no NSG (nothing filters the flow)"
    where = f"{verdict.get('networkSecurityGroup')}/{rule} ({verdict.get('level')})"
    return where + (f" at {verdict['at']}" if verdict.get("at") else "")


def _evaluated(item: dict[str, Any]) -> str:
    flags = " ".join(f"{part}={'yes' if item[part] else 'no'}" for part in _PARTS)
    mark = "matched" if item["matched"] else "no match"
    return (
        f"{item['networkSecurityGroup']}/{item['rule']} priority {item['priority']} "
        f"{item['access']}: {mark} ({flags})"
    )
