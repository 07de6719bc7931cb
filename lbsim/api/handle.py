"""What a running lbsim offers: the interface of the Python API's handle.

The HTTP control API and the CLI's verbs are thin layers over this interface; the one
implementation is :class:`lbsim.api.session.Session`. Every change answers with a
:class:`ChangeReport` (an empty one when nothing changed: starting a running instance or
stopping a stopped one succeeds, as in Azure); every refusal is an
:class:`~lbsim.errors.LbsimError` whose ``code`` is Azure's where Azure has one
(``ResourceNotFound``, ``InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts``,
``InvalidTemplate`` with every problem of a reload in ``TemplateInvalid.problems``; and
``OperationNotAllowed`` only when lbsim is not serving: it is stopping or has stopped) and
whose state is then unchanged.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Protocol, runtime_checkable

import attrs

from lbsim.dataplane.faults import Fault


class Status(Enum):
    """HTTP statuses of the refusals a handle raises, by error code (400 for the others)."""

    NOT_FOUND = 404
    CONFLICT = 409


# Error code -> HTTP status for the control API (the codes the handle raises on purpose).
ERROR_STATUS: dict[str, Status] = {
    "ResourceNotFound": Status.NOT_FOUND,
    "OperationNotAllowed": Status.CONFLICT,
    "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts": Status.CONFLICT,
    "InboundNatRuleFrontendPortRangeSmallerThanRequestedPorts": Status.CONFLICT,
    "FrontendBindFailed": Status.CONFLICT,
    "FaultAlreadyExists": Status.CONFLICT,
    "BastionHostNotFound": Status.NOT_FOUND,
    "TunnelBindFailed": Status.CONFLICT,
}


@attrs.frozen
class ChangeReport:
    """What one change did: NAT entries and load-balancing rules added and removed (each as
    ``lbsim ports -o json`` shows it), and instances added, removed and changed (``web/3``)."""

    added: tuple[dict[str, Any], ...] = ()
    removed: tuple[dict[str, Any], ...] = ()
    instances_added: tuple[str, ...] = ()
    instances_removed: tuple[str, ...] = ()
    instances_changed: tuple[str, ...] = ()
    nsgs_changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not any(attrs.astuple(self, recurse=False))

    def to_json(self) -> dict[str, Any]:
        return {
            "added": list(self.added),
            "removed": list(self.removed),
            "instances": {
                "added": list(self.instances_added),
                "removed": list(self.instances_removed),
                "changed": list(self.instances_changed),
            },
            "networkSecurityGroups": {"changed": list(self.nsgs_changed)},
        }


class LiveLoadBalancer(Protocol):
    """A running load balancer. Reads are synchronous and cheap; changes are async (they
    bind listeners and start servers) and either happen whole or not at all."""

    @property
    def api_url(self) -> str | None:
        """The control API's base URL (``http://127.0.0.1:9150``), None when it is off."""

    def readiness(self) -> str | None:
        """None once every listener is bound and serving; else why not yet."""

    def ports(self) -> list[dict[str, Any]]:
        """The live NAT table and rules: the JSON of ``lbsim ports -o json``."""

    def instances(self) -> list[dict[str, Any]]:
        """Per instance: ``scaleSet``, ``instanceId``, ``name``, ``privateIPAddress``,
        ``state``, ``protectFromScaleIn``, ``ports`` (each with ``ruleName``,
        ``frontendIPAddress``, ``frontendPort``, ``protocol``, ``backendPort`` and
        ``servedBy``)."""

    def endpoint(
        self, scale_set: str, instance_id: int, backend_port: int, protocol: str = "Tcp"
    ) -> tuple[str, int]:
        """Where to connect to reach ``backend_port`` of an instance through its NAT entry."""

    def check(
        self,
        *,
        source: str,
        frontend_port: int | None = None,
        destination: str | None = None,
        protocol: str = "Tcp",
        frontend: str | None = None,
    ) -> dict[str, Any]:
        """The NSG verdict on a flow against the live plan: the JSON of ``lbsim check -o
        json``."""

    def rules(self, instance: str, direction: str = "Inbound") -> dict[str, Any]:
        """An instance's effective security rules: the JSON of ``lbsim rules -o json``."""

    def metrics(self) -> bytes:
        """The Prometheus exposition of the live counters."""

    async def scale(self, scale_set: str, capacity: int) -> ChangeReport: ...

    async def start(self, scale_set: str, instance_id: int) -> ChangeReport: ...

    async def stop(self, scale_set: str, instance_id: int) -> ChangeReport: ...

    async def restart(self, scale_set: str, instance_id: int) -> ChangeReport: ...

    async def delete(self, scale_set: str, instance_id: int) -> ChangeReport: ...

    async def reimage(self, scale_set: str, instance_id: int) -> ChangeReport:
        """Reimage an instance: a new OS disk, so a new SSH host key; it keeps its id,
        address, ports and power state, and its open flows are reset."""

    async def protect(self, scale_set: str, instance_id: int, on: bool = True) -> ChangeReport:
        """Protect an instance from scale-in (``protectFromScaleIn``), or lift it (``on``
        false); the report names the instance when its protection changed."""

    async def reload(self) -> ChangeReport:
        """Load the template, parameters and config again and apply the difference; an
        invalid one raises ``TemplateInvalid`` (every problem) and the old plan runs on."""

    def faults(self) -> list[dict[str, Any]]:
        """The faults set, in the order added, each as Toxiproxy's JSON of a toxic (with
        ``target`` and ``seed``)."""

    def add_fault(self, fault: Fault) -> dict[str, Any]:
        """Set a fault (it acts on new flows and new UDP datagrams); ``FaultAlreadyExists``
        if its name is set, ``ResourceNotFound`` if its target names nothing running."""

    def remove_fault(self, name: str) -> dict[str, Any]:
        """Remove a fault by name (``ResourceNotFound`` if none is set by that name)."""


@runtime_checkable
class BastionTunnels(Protocol):
    """The bastion tunnels of a running load balancer (``lbsim bastion tunnel``, the
    ``/v1/bastion/tunnels`` endpoints); a handle may offer them beside
    :class:`LiveLoadBalancer`. A tunnel's JSON: ``id``, ``bastion``, ``target``,
    ``targetIp``, ``resourcePort``, ``listenAddress``, ``listenPort``."""

    async def open_tunnel(
        self,
        target: str,
        resource_port: int,
        port: int = 0,
        bastion: str | None = None,
        lease_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Open a tunnel on 127.0.0.1:``port`` (0: a free one) to ``resource_port`` of
        ``target``; ``BastionHostNotFound`` without a bastion host, ``ResourceNotFound``
        for an unknown target, ``TunnelBindFailed`` when the port is taken. With
        ``lease_seconds``, it closes once that long passes without :meth:`renew_tunnel`."""

    def renew_tunnel(self, tunnel_id: str) -> dict[str, Any]:
        """Renew a tunnel's lease (``ResourceNotFound`` if none has that id)."""

    def close_tunnel(self, tunnel_id: str) -> dict[str, Any]:
        """Close a tunnel (``ResourceNotFound`` if none has that id)."""

    def tunnels(self) -> list[dict[str, Any]]:
        """The open tunnels, in the order opened."""
