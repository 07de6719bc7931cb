"""What the data plane reports about each flow: one event per decision and per close."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import attrs


@attrs.frozen
class NsgHit:
    """The rule of one NSG that matched a flow (only with ``explain_nsg``): what that NSG's
    flow log records."""

    network_security_group: str  # the NSG's id
    rule: str  # flow-log name: UserRule_x / DefaultRule_y
    access: str  # Allow / Deny


@attrs.frozen(cache_hash=True)  # a key of the log writers' per-batch tables
class FlowNames:
    """What every event of one listener and one of its backends says of them: worked out
    once per pair, not per event."""

    protocol: str  # Tcp / Udp
    frontend: str  # address:port
    rule: str  # the NAT entry or load-balancing rule
    backend: str = "-"  # instance label ("-": no backend was chosen)
    target: str = "-"  # address:port lbsim connects to
    interface: str = ""  # the backend's ipConfiguration id
    destination: str = ""  # the backend's private address:port, as the NSGs see a flow
    head: str = attrs.field(init=False)  # "protocol frontend rule", as log lines start

    @head.default
    def _head(self) -> str:
        return f"{self.protocol} {self.frontend} {self.rule}"


class FlowEvent(NamedTuple):
    """``kind`` is "decision" (an NSG verdict on a new flow), "close" (a relayed flow ended)
    or "unreachable" (the backend refused or did not answer).

    It holds what differs per flow and refers to the rest (``names``). The runtime makes
    these twice per connection, as plain tuples of the same fields (:data:`FlowRecord`, a
    third of the cost); a sink that wants the names reads one with :func:`as_events`."""

    kind: str
    time: float  # wall clock, seconds since the epoch
    names: FlowNames
    peer: tuple[str, int]  # the client's address and port as seen on loopback
    source: str  # the client's address as the NSGs saw it
    access: str = ""  # Allow / Deny, for decisions
    nsg_rule: str = ""  # the deciding rule's flow-log name (UserRule_x, DefaultRule_y)
    nsg_hits: tuple[NsgHit, ...] = ()  # per NSG level evaluated, with ``explain_nsg``
    bytes_in: int = 0  # client to backend
    bytes_out: int = 0  # backend to client
    packets_in: int = 0
    packets_out: int = 0
    duration_s: float = 0.0
    reason: str = ""

    @property
    def protocol(self) -> str:
        return self.names.protocol

    @property
    def frontend(self) -> str:
        return self.names.frontend

    @property
    def rule(self) -> str:
        return self.names.rule

    @property
    def backend(self) -> str:
        return self.names.backend

    @property
    def target(self) -> str:
        return self.names.target

    @property
    def interface(self) -> str:
        return self.names.interface

    @property
    def destination(self) -> str:
        return self.names.destination

    @property
    def client(self) -> str:
        """address:port as seen on loopback."""
        return f"{self.peer[0]}:{self.peer[1]}"


# A flow event as the runtime makes it: FlowEvent's fields, all of them, in order, in a
# plain tuple. A FlowEvent is one too.
FlowRecord = tuple[
    str, float, FlowNames, tuple[str, int], str, str, str, tuple[NsgHit, ...],
    int, int, int, int, float, str,
]  # fmt: skip
RecordSink = Callable[[FlowRecord], None]
EventSink = Callable[[FlowEvent], None]


def as_events(sink: EventSink) -> RecordSink:
    """A record sink that hands ``sink`` each record as a FlowEvent."""
    make = FlowEvent._make

    def to_event(record: FlowRecord) -> None:
        sink(make(record))

    return to_event


def discard(_record: FlowRecord) -> None:
    """The sink that keeps nothing."""


def fanout(*sinks: RecordSink) -> RecordSink:
    """One sink that hands each event to every one of ``sinks`` (``discard`` for none)."""
    if not sinks:
        return discard
    if len(sinks) == 1:
        return sinks[0]

    def every(record: FlowRecord) -> None:
        for sink in sinks:
            sink(record)

    return every
