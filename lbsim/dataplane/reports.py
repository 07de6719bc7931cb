"""What the runtime says of its flows: a decision event when the NSGs judge a new flow, a
close event with its counters when it ends, an unreachable event when no backend takes it.
Each goes to the run's sink as a FlowRecord (FlowEvent's fields in order, a plain tuple: the
log writers format a batch at a time), with the names of its listener and route formatted
once per route."""

from __future__ import annotations

import time
from collections.abc import Callable

import trio

from lbsim.dataplane.events import FlowNames, NsgHit, RecordSink, discard
from lbsim.dataplane.listeners import Listener, Route
from lbsim.dataplane.stats import FlowStats
from lbsim.dataplane.verdicts import Verdict

__all__ = ["About", "FlowReporter"]

# What a relayed flow carries for its close event: route, source as judged, client, NSG hits.
About = tuple[Route, str, tuple[str, int], tuple[NsgHit, ...]]


class FlowReporter:
    """The events of a run's flows, to ``sink`` (nothing at all when it is ``discard``)."""

    __slots__ = ("_names", "now", "on", "sink")

    def __init__(self, sink: RecordSink) -> None:
        self.sink = sink
        self.on = sink is not discard
        self.now: Callable[[], float] = trio.current_time  # the run's clock, once it runs
        self._names: dict[int, FlowNames] = {}  # by the id of a route (or a listener)

    def forget(self) -> None:
        """Forget the names formatted so far (the plan changed: routes are new objects)."""
        self._names.clear()

    def decision(
        self, listener: Listener, route: Route, peer: tuple[str, int], source: str, verdict: Verdict
    ) -> None:
        names = self._names.get(id(route)) or self._made(listener, route)
        self.sink((
            "decision", time.time(), names, peer, source,
            verdict.access, verdict.rule, verdict.hits, 0, 0, 0, 0, 0.0, "",
        ))  # fmt: skip

    def close(self, listener: Listener, about: About, stats: FlowStats) -> None:
        """The close event of a flow (TCP or UDP), with its counters."""
        if not self.on:
            return
        route, source, peer, hits = about
        names = self._names.get(id(route)) or self._made(listener, route)
        inbound, outbound = stats.inbound, stats.outbound
        self.sink((
            "close", time.time(), names, peer, source, "", "", hits,
            inbound.bytes, outbound.bytes, inbound.packets, outbound.packets,
            self.now() - stats.started_at, stats.close_reason or "cancelled",
        ))  # fmt: skip

    def unreachable(
        self,
        listener: Listener,
        route: Route | None,
        source: str,
        peer: tuple[str, int],
        reason: str,
    ) -> None:
        if self.on:
            self.sink((
                "unreachable", time.time(), self._made(listener, route), peer, source,
                "", "", (), 0, 0, 0, 0, 0.0, reason,
            ))  # fmt: skip

    def _made(self, listener: Listener, route: Route | None) -> FlowNames:
        """The names of ``listener`` and ``route``, made on first use (a route serves one
        listener; an event with no route is the listener's)."""
        key = id(listener if route is None else route)
        names = self._names.get(key)
        if names is None:
            names = self._names[key] = _flow_names(listener, route)
        return names


def _flow_names(listener: Listener, route: Route | None) -> FlowNames:
    entry = listener.entry
    frontend = f"{entry.frontend.address}:{entry.frontend_port}"
    if route is None:  # no backend was chosen
        return FlowNames(listener.protocol.value, frontend, entry.rule_name)
    backend = route.backend
    return FlowNames(
        listener.protocol.value,
        frontend,
        entry.rule_name,
        backend.label,
        route.served_by or "-",
        backend.ip_configuration_id,
        _endpoint(backend.private_ip_address, route.backend_port),
    )


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
