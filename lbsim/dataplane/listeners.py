"""Listeners: one per (frontend address, transport, frontend port) of a Plan, each with the
route(s) its flows take and the counters they bump."""

from __future__ import annotations

import ipaddress
import socket

import attrs

from lbsim.control.distribution import pick
from lbsim.control.types import Backend, BalancingEntry, NatEntry
from lbsim.dataplane.portmap import AZURE_PORTS, PortMap, check_port
from lbsim.dataplane.probes import ProbeState
from lbsim.dataplane.stats import RuleStats
from lbsim.dataplane.udp import open_udp_socket
from lbsim.model import LoadDistribution, TransportProtocol


@attrs.frozen
class Route:
    """Where a flow goes: a backend, its backend port, and the local address standing in
    (None while the instance is stopped: its flows are reset)."""

    backend: Backend
    backend_port: int
    target: tuple[str, int] | None

    @property
    def served_by(self) -> str | None:
        """``host:port`` of what stands behind the route (None while stopped)."""
        if self.target is None:
            return None
        host, port = self.target
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def key(self) -> tuple[str, int, tuple[str, int] | None]:
        """The route's identity: a flow on it is left alone by a change that keeps it."""
        return (self.backend.key, self.backend_port, self.target)


@attrs.define(eq=False)
class Listener:
    """The runtime side of one NAT entry or load-balancing rule (for one transport)."""

    entry: NatEntry | BalancingEntry
    routes: tuple[Route, ...]
    idle_timeout_s: float
    health: tuple[ProbeState | None, ...] = ()  # per route, for a rule with a probe
    stats: RuleStats = attrs.Factory(RuleStats)
    bound: tuple[str, int] | None = None
    port_map: PortMap = AZURE_PORTS  # where it binds, as against Azure's address and port

    @property
    def protocol(self) -> TransportProtocol:
        return self.entry.protocol

    @property
    def key(self) -> tuple[str, TransportProtocol, int]:
        """The listener's identity: (frontend address, transport, frontend port)."""
        return self.entry.listen_key

    @property
    def address(self) -> tuple[str, int]:
        return (self.entry.frontend.address, self.entry.frontend_port)

    @property
    def listen_address(self) -> tuple[str, int]:
        """Where to connect: the bound address once bound, else where the port map puts
        the frontend (``address`` stays Azure's, for the NAT table and the NSGs)."""
        return self.bound or self.port_map.listen(*self.address)

    @property
    def listen_label(self) -> str:
        """``host:port`` where it listens (``[v6]:port`` for IPv6)."""
        host, port = self.listen_address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def label(self) -> str:
        return f"{self.entry.frontend.address}:{self.entry.frontend_port}"

    def pick(self, client: tuple[str, int]) -> Route | None:
        """The route of a new flow: a NAT entry has one; a load-balancing rule chooses among
        its healthy backends as its distribution mode says, exactly as ``lbsim check`` does.
        None when every backend is probed down (Azure then admits no new flow)."""
        routes = self.routes
        if len(routes) == 1 and (not self.health or self.health[0] is None):  # a NAT entry
            return routes[0]
        if self.health:
            routes = tuple(
                r for r, h in zip(self.routes, self.health, strict=True) if h is None or h.healthy
            )
            if not routes:
                return None
        mode = getattr(self.entry, "load_distribution", LoadDistribution.DEFAULT)
        return pick(routes, mode, self.protocol, client, self.address)

    def open_socket(self) -> socket.socket:
        """This listener's bound socket: listening and non-blocking for TCP (accepted
        connections inherit its TCP_NODELAY), a datagram socket for UDP; OSError if the
        address cannot be had. It binds where the port map says."""
        host, port = self.port_map.listen(*self.address)
        check_port(port, self.port_map)
        if self.protocol is TransportProtocol.UDP:
            return open_udp_socket(host, port)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.bind((host, port))
            sock.listen(1024)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock


def same_family(source: str, route: Route | None) -> str:
    """A loopback client presented in the backend's IP version: an IPv6 loopback client of
    an IPv4 backend is judged as 127.0.0.1, an IPv4-mapped one as its IPv4 address (and an
    IPv4 loopback client of an IPv6 backend as ::1). Other addresses stay as they are."""
    if route is None or (":" in source) == (":" in route.backend.private_ip_address):
        return source
    address = ipaddress.ip_address(source)
    wanted = ipaddress.ip_address(route.backend.private_ip_address).version
    if address.version == wanted:
        return source
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    if address.is_loopback:
        return "127.0.0.1" if wanted == 4 else "::1"
    return source


def address_in_use_hint(ports: list[int]) -> str:
    """What to say when frontend ``ports`` are in use: a listener elsewhere, or, since NAT
    ports such as 50000-50119 lie in Linux's ephemeral range, a recent connection of some
    program that used one as its source port and waits in TIME_WAIT (for up to a minute)."""
    if not ports:
        return ""
    return (
        f" (another program listens there, or a recent connection from that port waits in"
        f" TIME_WAIT for up to a minute: `ss -tanp 'sport = :{ports[0]}'` shows which;"
        f" --frontend NAME=127.0.0.2 puts the frontend on another address)"
    )
