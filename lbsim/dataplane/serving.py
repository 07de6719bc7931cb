"""The listeners a runtime serves: each one's bound socket and task scope, and binding new
ones all at once or not at all (``FrontendBindFailed``, naming lbsim's own listener or
built-in server when one of them holds the address)."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

import attrs
import trio

from lbsim.control.types import BalancingEntry, NatEntry
from lbsim.dataplane.instances import InstanceServer
from lbsim.dataplane.listeners import Listener, address_in_use_hint
from lbsim.dataplane.portmap import PortMap
from lbsim.dataplane.udp import UdpRelay
from lbsim.errors import LbsimError

__all__ = ["Serving", "bind", "label"]


@attrs.define(eq=False)
class Serving:
    """A listener being served: its socket, and the scope of its task (UDP)."""

    listener: Listener
    sock: socket.socket
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    udp: UdpRelay | None = None


def bind(
    entries: list[NatEntry | BalancingEntry],
    port_map: PortMap,
    serving: Iterable[Serving],
    servers: Iterable[InstanceServer],
) -> list[tuple[Listener, socket.socket]]:
    """A bound socket for each new listener, or none at all and ``FrontendBindFailed``."""
    bound: list[tuple[Listener, socket.socket]] = []
    failures: list[str] = []
    in_use: list[int] = []
    for entry in entries:
        listener = Listener(entry, (), entry.idle_timeout_s, port_map=port_map)
        try:
            sock = listener.open_socket()
        except OSError as error:
            what = f"{listener.protocol.value} {label(listener)} ({entry.rule_name})"
            held = _held_by_us(listener, [*(s.listener for s in serving), *dict(bound)], servers)
            failures.append(f"{what}: {error.strerror}{held}")
            if error.errno == errno.EADDRINUSE:
                in_use.append(listener.listen_address[1])
            continue
        listener.bound = sock.getsockname()[:2]
        bound.append((listener, sock))
    if failures:
        for _, sock in bound:
            sock.close()
        message = "cannot listen on " + "; ".join(failures)
        raise LbsimError("FrontendBindFailed", message + address_in_use_hint(in_use))
    return bound


def _held_by_us(
    listener: Listener, listeners: Iterable[Listener], servers: Iterable[InstanceServer]
) -> str:
    """Which of lbsim's own listeners or built-in servers holds where ``listener`` binds.
    Under ``offset:N`` that may be another frontend's: every one listens on 127.0.0.1."""
    address = listener.listen_address
    for other in listeners:
        if other.listen_address == address and other.protocol is listener.protocol:
            held = f" (held by lbsim's own listener for {other.entry.rule_name}"
            if other.label != listener.label:
                held += f", frontend {other.label}: port map {listener.port_map} puts both there"
            return held + ")"
    for server in servers:
        if server.address == address and server.protocol is listener.protocol:
            return f" (held by lbsim's built-in server of {server.identity.name})"
    return ""


def label(listener: Listener) -> str:
    """A listener's frontend, and where the port map put it when that is elsewhere."""
    where = listener.listen_label
    return listener.label if where == listener.label else f"{listener.label} (at {where})"
