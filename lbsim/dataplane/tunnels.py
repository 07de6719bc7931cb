"""Bastion-style tunnels: a local port that reaches one instance's port through the
deployment's bastion host, as ``az network bastion tunnel`` opens one.

A tunnel is a TCP listener on 127.0.0.1 (port 0: a free one). Each connection it accepts is
a flow inside the virtual network from the bastion host's private address (an address of
its ``AzureBastionSubnet``) to the target instance's private address and port, judged by
the target's NSGs (:meth:`VirtualNetwork.open`), then relayed both ways with half-close.

The bastion host and the target are looked up by name in the running plan for every
connection, so a tunnel follows the live deployment: an instance that is stopped, deleted,
or denied by a changed NSG, or a bastion host a reload removed, refuses the connection (the
client's connection closes, and a notice names why: the deciding NSG rule, say). The tunnel
itself stays open until it is closed or the runtime stops, or, when it was opened with a
lease, until the lease runs out without a renewal: ``az network bastion tunnel``'s tunnel
dies with its process, and a ``lbsim bastion tunnel`` killed with SIGKILL (or its terminal
lost) cannot close its own, so the verb holds it by renewing its lease every second.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import partial
from typing import Any

import attrs
import trio

from lbsim.control.types import BastionHost, Plan
from lbsim.control.vnet import network_id
from lbsim.dataplane.relay import relay_streams
from lbsim.dataplane.vnet import VirtualNetwork, VnetError, listen
from lbsim.errors import LbsimError

__all__ = ["LOOPBACK", "Tunnel", "Tunnels"]

LOOPBACK = "127.0.0.1"


@attrs.define(eq=False)
class Tunnel:
    """One open tunnel: through ``bastion`` to port ``resource_port`` of ``target`` (an
    instance's label, ``web/1``), listening at ``listen``."""

    id: str
    bastion: str
    target: str
    target_ip: str
    resource_port: int
    listen: tuple[str, int]
    listener: trio.SocketListener = attrs.field(repr=False)
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope, repr=False)
    counts: dict[str, int] = attrs.field(factory=dict)
    lease_s: float | None = None  # None: held until closed
    lease: trio.CancelScope = attrs.field(factory=trio.CancelScope, repr=False)  # its deadline

    def to_json(self) -> dict[str, Any]:
        made = {
            "id": self.id,
            "bastion": self.bastion,
            "target": self.target,
            "targetIp": self.target_ip,
            "resourcePort": self.resource_port,
            "listenAddress": self.listen[0],
            "listenPort": self.listen[1],
        }
        return made | ({"leaseSeconds": self.lease_s} if self.lease_s is not None else {})

    def renew(self) -> None:
        """Hold the tunnel for another lease from now (nothing without a lease)."""
        if self.lease_s is not None:
            self.lease.deadline = trio.current_time() + self.lease_s

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


class Tunnels:
    """The open tunnels of one runtime's virtual network; :meth:`run` holds them (their
    listeners and flows end when it does)."""

    def __init__(self, vnet: VirtualNetwork, notice: Callable[[str], None] | None = None) -> None:
        self.vnet = vnet
        self._notice = notice
        self._open: dict[str, Tunnel] = {}
        self._ids = itertools.count(1)
        self._nursery: trio.Nursery | None = None

    def notice(self, line: str) -> None:
        (self._notice or self.vnet.notice)(f"bastion: {line}")

    def all(self) -> list[Tunnel]:
        """The open tunnels, in the order opened."""
        return list(self._open.values())

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hold the tunnels until cancelled; every tunnel closes then."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            self._open.clear()

    async def open(
        self,
        bastion: BastionHost,
        target: str,
        target_ip: str,
        resource_port: int,
        port: int = 0,
        *,
        lease_s: float | None = None,
    ) -> Tunnel:
        """Listen on (127.0.0.1, ``port``) for connections to ``target``'s port; with
        ``lease_s``, until that long passes without :meth:`renew`."""
        (listener,) = await listen((LOOPBACK, port), "TunnelBindFailed", "the tunnel")
        if self._nursery is None:  # (not yet running, or ended while the port was bound)
            listener.socket.close()
            raise LbsimError("OperationNotAllowed", "lbsim is not serving: no tunnel can open")
        bound: tuple[str, int] = listener.socket.getsockname()[:2]
        ident = str(next(self._ids))
        tunnel = Tunnel(ident, bastion.name, target, target_ip, resource_port, bound, listener)
        tunnel.lease_s = lease_s
        tunnel.renew()
        self._open[ident] = tunnel
        self._nursery.start_soon(self._serve, tunnel, name=f"lbsim tunnel {ident}")
        return tunnel

    def renew(self, ident: str) -> Tunnel:
        """Renew a tunnel's lease (``ResourceNotFound`` once it is closed)."""
        tunnel = self._open.get(ident)
        if tunnel is None:
            raise self._not_open(ident)
        tunnel.renew()
        return tunnel

    def close(self, ident: str) -> Tunnel:
        """Close a tunnel: its listener and its flows."""
        tunnel = self._open.pop(ident, None)
        if tunnel is None:
            raise self._not_open(ident)
        tunnel.scope.cancel()  # (first: its accept is cancelled, not failed by the close)
        tunnel.listener.socket.close()  # now: the port refuses from this moment
        return tunnel

    def _not_open(self, ident: str) -> LbsimError:
        known = ", ".join(self._open) or "none"
        return LbsimError("ResourceNotFound", f"no tunnel {ident!r} is open (open: {known}).")

    async def _serve(self, tunnel: Tunnel) -> None:
        listener = tunnel.listener
        with tunnel.scope:
            async with listener, trio.open_nursery() as nursery:
                nursery.start_soon(self._lease, tunnel)
                handle = partial(self._connection, tunnel)
                await trio.serve_listeners(handle, [listener], handler_nursery=nursery)

    async def _lease(self, tunnel: Tunnel) -> None:
        """Close the tunnel once its lease runs out unrenewed (never, without a lease)."""
        with tunnel.lease:  # (its deadline moves on with each renewal)
            await trio.sleep_forever()
        self.notice(f"tunnel {tunnel.id} closed: its {tunnel.lease_s:g} s lease ran out")
        self.close(tunnel.id)

    async def _connection(self, tunnel: Tunnel, client: trio.SocketStream) -> None:
        """One client of a tunnel: reach the target from the bastion host, or close."""
        async with client:
            ends = self._ends(tunnel)
            if ends is None:
                tunnel.count("refused")
                return
            source, network, destination = ends
            try:
                backend, _ = await self.vnet.open(
                    source, destination, tunnel.resource_port, network=network
                )
            except VnetError as error:
                tunnel.count("refused")
                self.notice(f"tunnel {tunnel.id} to {tunnel.target}: {error.message}")
                return
            tunnel.count("connected")
            await relay_streams(client, backend)

    def _ends(self, tunnel: Tunnel) -> tuple[str, str | None, str] | None:
        """The bastion host's private address and virtual network, and the target's private
        address, in the running plan; None (and a notice) when either is gone."""
        plan: Plan = self.vnet.plan
        wanted = tunnel.bastion.lower()
        host = next((b for b in plan.bastions if b.name.lower() == wanted), None)
        backend = plan.backend(tunnel.target)
        gone = f"bastion host {tunnel.bastion}" if host is None else f"instance {tunnel.target}"
        if host is None or backend is None:
            self.notice(f"tunnel {tunnel.id}: {gone} is gone from the deployment")
            return None
        network = network_id(host.subnet_id)
        return host.private_ip_address, network, backend.private_ip_address
