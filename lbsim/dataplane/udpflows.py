"""A UDP listener of the runtime: each new flow (a client address and port) gets its route
(a load-balancing rule spreads them) and the NSGs' verdict, as a TCP connection does; its
datagrams are relayed by the engine's :class:`~lbsim.dataplane.udp.UdpRelay`, through the
faults that act on them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lbsim.dataplane.events import NsgHit
from lbsim.dataplane.faults import Stream, rules_of
from lbsim.dataplane.listeners import Route, same_family
from lbsim.dataplane.serving import Serving
from lbsim.dataplane.stats import FlowStats

if TYPE_CHECKING:
    from lbsim.dataplane.runtime import Runtime

__all__ = ["serve_udp"]

Client = tuple[str, int]


async def serve_udp(runtime: Runtime, serving: Serving) -> None:
    """Relay ``serving``'s datagrams until its scope is cancelled."""
    listener, sock = serving.listener, serving.sock
    entry = listener.entry
    rules = rules_of(entry)
    opened: dict[Client, tuple[Route, str, tuple[NsgHit, ...]]] = {}

    def choose(client: Client) -> Client | None:
        """Each new UDP flow: its backend (a rule spreads them), if the NSGs allow it."""
        route = listener.pick(client)
        if route is None or route.target is None:  # all probed down, or stopped
            return None
        settings = runtime.settings
        source = settings.sources.present(same_family(client[0], route))
        allowed, hits = runtime.admit(listener, route, source, client)
        if not allowed:
            return None
        if len(opened) > 2 * settings.max_udp_flows:  # flows that failed to open
            del opened[next(iter(opened))]
        opened[client] = (route, source, hits)
        return route.target

    def closed(client: Client, stats: FlowStats) -> None:
        found = opened.pop(client, None)
        if found is None:
            return
        route, source, hits = found
        runtime.reports.close(listener, (route, source, client, hits), stats)

    def fate(client: Client, upstream: bool) -> int:
        """How many copies of a datagram of ``client``'s flow faults let through."""
        found = opened.get(client)
        if found is None:
            return 1
        stream = Stream.UPSTREAM if upstream else Stream.DOWNSTREAM
        return runtime.faults.copies(entry.frontend_port, rules, found[0].backend.label, stream)

    serving.udp = relay = runtime.engine.udp(
        sock,
        backend=("127.0.0.1", 9),  # never used: ``choose`` picks each flow's backend
        idle_timeout_s=listener.idle_timeout_s,
        max_flows=runtime.settings.max_udp_flows,
        choose=choose,
        rule=listener.stats,
        on_close=closed,
        faults=runtime.faults,
        fate=fate,
    )
    with serving.scope:
        await relay.serve()
