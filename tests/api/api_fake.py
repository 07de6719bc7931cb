"""A LiveLoadBalancer of the tests' own: scale sets of instances behind one NAT pool
(``ssh``, 50000 + id -> 22) and one load-balancing rule (``http``, 80 -> 8080), that records
every call and refuses as the real one does (``ResourceNotFound``, ``OperationNotAllowed``,
the pool's range, an invalid template on reload)."""

from __future__ import annotations

from typing import Any

import attrs

from lbsim.api.handle import ChangeReport
from lbsim.errors import LbsimError, Problem, TemplateInvalid
from lbsim.pointer import Pointer

POOL_START, POOL_SIZE = 50000, 10


@attrs.define
class FakeInstance:
    state: str = "running"
    protected: bool = False


class FakeHandle:
    """Implements lbsim.api.handle.LiveLoadBalancer over plain dictionaries."""

    def __init__(self) -> None:
        self.scale_sets: dict[str, dict[int, FakeInstance]] = {
            "web": {0: FakeInstance(), 1: FakeInstance()},
            "db": {0: FakeInstance()},
        }
        self.calls: list[tuple[Any, ...]] = []
        self.not_ready: str | None = None
        self.reload_problems: list[Problem] = []
        self.broken = False  # every read raises a bug (not an LbsimError)

    # --- reads ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str | None:
        return None

    def readiness(self) -> str | None:
        return self.not_ready

    def ports(self) -> list[dict[str, Any]]:
        self._maybe_broken()
        entries = [self._nat(name, i) for name, ids in self.scale_sets.items() for i in ids]
        return [*entries, self._rule()]

    def instances(self) -> list[dict[str, Any]]:
        self._maybe_broken()
        return [
            {
                "scaleSet": name,
                "instanceId": i,
                "name": f"{name}_{i}",
                "privateIPAddress": f"10.0.{len(name)}.{4 + i}",
                "state": instance.state,
                "protectFromScaleIn": instance.protected,
                "ports": [self._port(name, i), self._rule_port()],
            }
            for name, ids in self.scale_sets.items()
            for i, instance in ids.items()
        ]

    def endpoint(
        self, scale_set: str, instance_id: int, backend_port: int, protocol: str = "Tcp"
    ) -> tuple[str, int]:
        self._instance(scale_set, instance_id)
        return "127.0.0.1", self._port_of(scale_set, instance_id)

    def check(
        self,
        *,
        source: str,
        frontend_port: int | None = None,
        destination: str | None = None,
        protocol: str = "Tcp",
        frontend: str | None = None,
    ) -> dict[str, Any]:
        self.calls.append(("check", source, frontend_port, destination, protocol, frontend))
        if frontend_port is not None and frontend_port not in self._frontend_ports():
            raise LbsimError("NoSuchFrontendPort", f"no rule listens on port {frontend_port}")
        access = "Deny" if source.startswith("198.51.100.") else "Allow"
        return {"access": access, "flow": {"source": source, "protocol": protocol}}

    def rules(self, instance: str, direction: str = "Inbound") -> dict[str, Any]:
        self.calls.append(("rules", instance, direction))
        name, _, number = instance.partition("/")
        if name not in self.scale_sets or not number.isdigit():
            raise LbsimError("UnknownInstance", f"no instance {instance}")
        return {"instance": instance, "direction": direction, "rules": []}

    def metrics(self) -> bytes:
        return b"# TYPE lbsim_flows_total counter\nlbsim_flows_total 3.0\n"

    # --- changes ----------------------------------------------------------------------------
    async def scale(self, scale_set: str, capacity: int) -> ChangeReport:
        self.calls.append(("scale", scale_set, capacity))
        ids = self._scale_set(scale_set)
        if capacity > POOL_SIZE:
            raise LbsimError(
                "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts",
                f"the range of pool ssh has {POOL_SIZE} ports, {capacity} are requested",
            )
        added = [i for i in range(capacity) if i not in ids]
        removed = sorted(ids)[capacity:] if capacity < len(ids) else []
        for i in added:
            ids[i] = FakeInstance()
        gone = [self._nat(scale_set, i) for i in removed]
        for i in removed:
            del ids[i]
        return ChangeReport(
            added=tuple(self._nat(scale_set, i) for i in added),
            removed=tuple(gone),
            instances_added=tuple(f"{scale_set}/{i}" for i in added),
            instances_removed=tuple(f"{scale_set}/{i}" for i in removed),
        )

    async def start(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._set_state("start", scale_set, instance_id, "running")

    async def stop(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._set_state("stop", scale_set, instance_id, "stopped")

    async def restart(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._set_state("restart", scale_set, instance_id, "running")

    async def delete(self, scale_set: str, instance_id: int) -> ChangeReport:
        self.calls.append(("delete", scale_set, instance_id))
        self._instance(scale_set, instance_id)
        entry = self._nat(scale_set, instance_id)
        del self.scale_sets[scale_set][instance_id]
        return ChangeReport(removed=(entry,), instances_removed=(f"{scale_set}/{instance_id}",))

    async def protect(self, scale_set: str, instance_id: int, on: bool = True) -> ChangeReport:
        self.calls.append(("protect", scale_set, instance_id, on))
        instance = self._instance(scale_set, instance_id)
        changed = instance.protected != on
        instance.protected = on
        return ChangeReport(instances_changed=(f"{scale_set}/{instance_id}",) if changed else ())

    async def reload(self) -> ChangeReport:
        self.calls.append(("reload",))
        if self.reload_problems:
            raise TemplateInvalid(self.reload_problems)
        return ChangeReport(nsgs_changed=("web-nsg",))

    # --- helpers ----------------------------------------------------------------------------
    def _set_state(self, verb: str, scale_set: str, instance_id: int, state: str) -> ChangeReport:
        self.calls.append((verb, scale_set, instance_id))
        instance = self._instance(scale_set, instance_id)
        if verb != "restart" and instance.state == state:
            raise LbsimError("OperationNotAllowed", f"{scale_set}/{instance_id} is already {state}")
        instance.state = state
        return ChangeReport(instances_changed=(f"{scale_set}/{instance_id}",))

    def _scale_set(self, name: str) -> dict[int, FakeInstance]:
        if name not in self.scale_sets:
            raise LbsimError("ResourceNotFound", f"no scale set {name!r}")
        return self.scale_sets[name]

    def _instance(self, name: str, instance_id: int) -> FakeInstance:
        instance = self._scale_set(name).get(instance_id)
        if instance is None:
            raise LbsimError(
                "ResourceNotFound", f"scale set {name!r} has no instance {instance_id}"
            )
        return instance

    def _maybe_broken(self) -> None:
        if self.broken:
            raise RuntimeError("the fake is broken on purpose")

    def _port_of(self, name: str, instance_id: int) -> int:
        return POOL_START + 100 * list(self.scale_sets).index(name) + instance_id

    def _frontend_ports(self) -> set[int]:
        ports = {self._port_of(n, i) for n, ids in self.scale_sets.items() for i in ids}
        return ports | {80}

    def _nat(self, name: str, instance_id: int) -> dict[str, Any]:
        return {
            "ruleName": f"ssh.{instance_id}",
            "kind": "InboundNatPool",
            "protocol": "Tcp",
            "frontendIPAddress": "127.0.0.1",
            "frontendPort": self._port_of(name, instance_id),
            "backendPort": 22,
            "scaleSet": name,
            "instanceId": instance_id,
            "backend": f"{name}/{instance_id}",
        }

    def _rule(self) -> dict[str, Any]:
        backends = [
            {"backend": f"{n}/{i}", "backendIPAddress": None}
            for n, ids in self.scale_sets.items()
            for i in ids
        ]
        return {
            "ruleName": "http",
            "kind": "LoadBalancingRule",
            "protocol": "Tcp",
            "frontendIPAddress": "127.0.0.1",
            "frontendPort": 80,
            "backendPort": 8080,
            "backends": backends,
        }

    def _port(self, name: str, instance_id: int) -> dict[str, Any]:
        return {
            "ruleName": f"ssh.{instance_id}",
            "frontendIPAddress": "127.0.0.1",
            "frontendPort": self._port_of(name, instance_id),
            "protocol": "Tcp",
            "backendPort": 22,
            "servedBy": "127.1.0.1:22",
        }

    def _rule_port(self) -> dict[str, Any]:
        return {
            "ruleName": "http",
            "frontendIPAddress": "127.0.0.1",
            "frontendPort": 80,
            "protocol": "Tcp",
            "backendPort": 8080,
            "servedBy": "127.1.0.1:8080",
        }


def template_problems() -> list[Problem]:
    """Two problems of an invalid template, as a failed reload reports them."""
    return [
        Problem(
            "InvalidTemplate",
            "The value 300 of parameter 'instanceCount' exceeds maxValue 100.",
            Pointer.parse("/parameters/instanceCount"),
            "lb.json",
        ),
        Problem(
            "SecurityRuleConflict",
            "Rules 'a' and 'b' have the same priority 100 and direction Inbound.",
            Pointer.parse("/resources/1/properties/securityRules/1"),
            "lb.json",
        ),
    ]
