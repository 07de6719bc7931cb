"""What the data plane reports about each flow: one event per decision and per close."""

from __future__ import annotations

from collections.abc import Callable

import attrs


@attrs.frozen
class NsgHit:
    """The rule of one NSG that matched a flow (only with ``explain_nsg``): what that NSG's
    flow log records."""

    network_security_group: str  # the NSG's id
    rule: str  # flow-log name: UserRule_x / DefaultRule_y
    access: str  # Allow / Deny


@attrs.define(slots=True, eq=False)
class FlowEvent:
    """``kind`` is "decision" (an NSG verdict on a new flow), "close" (a relayed flow ended)
    or "unreachable" (the backend refused or did not answer).

    Made on the hot path (twice per connection), so it is a plain slotted class rather than
    a frozen one, whose every field costs an ``object.__setattr__``: sinks must not change it."""

    kind: str
    time: float  # wall clock, seconds since the epoch
    protocol: str
    frontend: str  # address:port
    rule: str  # the NAT entry or load-balancing rule
    client: str  # address:port as seen on loopback
    source: str  # the client's address as the NSGs saw it
    backend: str  # instance label
    target: str  # address:port lbsim connected to
    access: str = ""  # Allow / Deny, for decisions
    nsg_rule: str = ""  # the deciding rule's flow-log name (UserRule_x, DefaultRule_y)
    bytes_in: int = 0  # client to backend
    bytes_out: int = 0  # backend to client
    duration_s: float = 0.0
    reason: str = ""
    destination: str = ""  # the backend's private address:port, as the NSGs saw the flow
    interface: str = ""  # the backend's ipConfiguration id
    packets_in: int = 0
    packets_out: int = 0
    nsg_hits: tuple[NsgHit, ...] = ()  # per NSG level evaluated, with ``explain_nsg``


EventSink = Callable[[FlowEvent], None]


def discard(_event: FlowEvent) -> None:
    """The sink that keeps nothing."""


def fanout(*sinks: EventSink) -> EventSink:
    """One sink that hands each event to every one of ``sinks`` (``discard`` for none)."""
    if not sinks:
        return discard
    if len(sinks) == 1:
        return sinks[0]

    def every(event: FlowEvent) -> None:
        for sink in sinks:
            sink(event)

    return every
