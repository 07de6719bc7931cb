"""A LiveLoadBalancer of the tests' own: scale sets of instances behind one NAT pool
(``ssh``, a range of POOL_SIZE frontend ports per scale set from 50000 + 100 * its position
-> 22) and one load-balancing rule (``http``, 80 -> 8080), that records every call.

Its scale sets are a real :class:`lbsim.control.fleet.Fleet`, changed only by
:mod:`lbsim.control.fleet`'s functions, as :class:`lbsim.api.session.Session` changes its
own: ids are never given twice (scale-out continues above the highest id ever used), scale-in
follows the ``Default`` policy and passes over protected instances, and starting a running
instance or stopping a stopped one is a success that changes nothing (an empty report). As
the real one, a new instance takes the lowest free port of its pool's range and keeps it for
its life. It refuses as the real one does: ``ResourceNotFound``, the pool's range
(``InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts``), an invalid template on
reload."""

from __future__ import annotations

from typing import Any

from lbsim.api.handle import ChangeReport
from lbsim.control import fleet as fleets
from lbsim.control.fleet import Fleet, Instance, PowerState
from lbsim.dataplane.faults import Fault
from lbsim.errors import LbsimError, Problem, TemplateInvalid
from lbsim.model import Deployment, VirtualMachineScaleSet
from lbsim.pointer import Pointer

POOL_START, POOL_SIZE = 50000, 10
SCALE_SETS = (("web", 2), ("db", 1))  # (name, the template's capacity)

Ports = dict[tuple[str, int], int]  # (scale set, instance id) -> its NAT frontend port


def _vmss(name: str, capacity: int) -> VirtualMachineScaleSet:
    return VirtualMachineScaleSet(
        id=f"/subscriptions/0/resourceGroups/rg/providers/Microsoft.Compute/"
        f"virtualMachineScaleSets/{name}",
        name=name,
        capacity=capacity,
        overprovision=False,
    )


class FakeHandle:
    """Implements lbsim.api.handle.LiveLoadBalancer over a Fleet and a table of ports."""

    def __init__(self) -> None:
        self.deployment = Deployment(
            virtual_machine_scale_sets=tuple(_vmss(n, c) for n, c in SCALE_SETS)
        )
        self.fleet: Fleet = fleets.fresh(self.deployment)
        self.nat_ports: Ports = _ports_of(self.fleet, {})
        self.calls: list[tuple[Any, ...]] = []
        self.not_ready: str | None = None
        self.reload_problems: list[Problem] = []
        self.broken = False  # every read raises a bug (not an LbsimError)
        self._faults: dict[str, Fault] = {}

    # --- the tests' own access (recorded as no call) ----------------------------------------
    def ids(self, scale_set: str) -> tuple[int, ...]:
        """The live instance ids of a scale set, in creation order."""
        return self._state(scale_set).ids

    def instance(self, scale_set: str, instance_id: int) -> Instance:
        found = self._state(scale_set).find(instance_id)
        assert found is not None, f"{scale_set}/{instance_id}"
        return found

    def given(
        self,
        scale_set: str,
        instance_id: int,
        *,
        state: PowerState | None = None,
        protected: bool | None = None,
    ) -> None:
        """Put an instance in a state before the test asks anything."""
        if state is not None:
            self.fleet = fleets.set_state(self.fleet, scale_set, instance_id, state)
        if protected is not None:
            self.fleet = fleets.protect(self.fleet, scale_set, instance_id, protected)

    # --- reads ------------------------------------------------------------------------------
    @property
    def api_url(self) -> str | None:
        return None

    def readiness(self) -> str | None:
        return self.not_ready

    def ports(self) -> list[dict[str, Any]]:
        self._maybe_broken()
        entries = [self._nat(name, i) for name, i in self._live()]
        return [*entries, self._rule()]

    def instances(self) -> list[dict[str, Any]]:
        self._maybe_broken()
        return [
            {
                "scaleSet": name,
                "instanceId": i,
                "name": f"{name}_{i}",
                "privateIPAddress": f"10.0.{len(name)}.{4 + i}",
                "state": self.instance(name, i).state.value,
                "protectFromScaleIn": self.instance(name, i).protected,
                "ports": [self._port(name, i), self._rule_port()],
            }
            for name, i in self._live()
        ]

    def endpoint(
        self, scale_set: str, instance_id: int, backend_port: int, protocol: str = "Tcp"
    ) -> tuple[str, int]:
        self._known(scale_set, instance_id)
        return "127.0.0.1", self.nat_ports[scale_set, instance_id]

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
        if self.fleet.of(name) is None or not number.isdigit():
            raise LbsimError("UnknownInstance", f"no instance {instance}")
        return {"instance": instance, "direction": direction, "rules": []}

    def metrics(self) -> bytes:
        return b"# TYPE lbsim_flows_total counter\nlbsim_flows_total 3.0\n"

    # --- changes: a new fleet from lbsim.control.fleet, its ports, then the report -----------
    async def scale(self, scale_set: str, capacity: int) -> ChangeReport:
        self.calls.append(("scale", scale_set, capacity))
        return self._change(fleets.scale(self.fleet, self._scale_set(scale_set), capacity))

    async def start(self, scale_set: str, instance_id: int) -> ChangeReport:
        self.calls.append(("start", scale_set, instance_id))
        return self._power(scale_set, instance_id, PowerState.RUNNING)

    async def stop(self, scale_set: str, instance_id: int) -> ChangeReport:
        self.calls.append(("stop", scale_set, instance_id))
        return self._power(scale_set, instance_id, PowerState.STOPPED)

    async def restart(self, scale_set: str, instance_id: int) -> ChangeReport:
        """Stop then start, as the Session does: the instance is changed once."""
        self.calls.append(("restart", scale_set, instance_id))
        stopped = self._power(scale_set, instance_id, PowerState.STOPPED)
        started = self._power(scale_set, instance_id, PowerState.RUNNING)
        changed = dict.fromkeys(stopped.instances_changed + started.instances_changed)
        return ChangeReport(instances_changed=tuple(changed))

    async def delete(self, scale_set: str, instance_id: int) -> ChangeReport:
        self.calls.append(("delete", scale_set, instance_id))
        self._scale_set(scale_set)
        return self._change(fleets.delete(self.fleet, scale_set, [instance_id]))

    async def reimage(self, scale_set: str, instance_id: int) -> ChangeReport:
        self.calls.append(("reimage", scale_set, instance_id))
        self._scale_set(scale_set)
        return self._change(fleets.reimage(self.fleet, scale_set, instance_id))

    async def protect(self, scale_set: str, instance_id: int, on: bool = True) -> ChangeReport:
        self.calls.append(("protect", scale_set, instance_id, on))
        self._scale_set(scale_set)
        fleet = fleets.protect(self.fleet, scale_set, instance_id, on)
        changed = self.instance(scale_set, instance_id).protected != on
        self.fleet = fleet
        return ChangeReport(instances_changed=(f"{scale_set}/{instance_id}",) if changed else ())

    async def reload(self) -> ChangeReport:
        self.calls.append(("reload",))
        if self.reload_problems:
            raise TemplateInvalid(self.reload_problems)
        return ChangeReport(nsgs_changed=("web-nsg",))

    # --- helpers ----------------------------------------------------------------------------
    def faults(self) -> list[dict[str, Any]]:
        return [fault.to_json() for fault in self._faults.values()]

    def add_fault(self, fault: Fault) -> dict[str, Any]:
        """As the session: a name set once (``FaultAlreadyExists`` otherwise)."""
        self.calls.append(("add_fault", fault.name))
        if fault.name in self._faults:
            raise LbsimError("FaultAlreadyExists", f"A fault named '{fault.name}' is set.")
        self._faults[fault.name] = fault
        return fault.to_json()

    def remove_fault(self, name: str) -> dict[str, Any]:
        self.calls.append(("remove_fault", name))
        fault = self._faults.pop(name, None)
        if fault is None:
            raise LbsimError("ResourceNotFound", f"No fault named '{name}' is set.")
        return fault.to_json()

    def _power(self, scale_set: str, instance_id: int, power: PowerState) -> ChangeReport:
        self._scale_set(scale_set)
        return self._change(fleets.set_state(self.fleet, scale_set, instance_id, power))

    def _change(self, fleet: Fleet) -> ChangeReport:
        """Run ``fleet`` instead (or refuse, changing nothing) and report what changed: the
        NAT entries of instances added and removed, and instances whose power changed."""
        ports = _ports_of(fleet, self.nat_ports)
        before = _by_key(self.fleet)
        after = _by_key(fleet)
        added = [key for key in after if key not in before]
        removed = [key for key in before if key not in after]
        changed = [k for k in after if k in before and _differ(before[k], after[k])]
        report = ChangeReport(
            added=tuple(self._nat(n, i, ports) for n, i in added),
            removed=tuple(self._nat(n, i) for n, i in removed),
            instances_added=tuple(f"{n}/{i}" for n, i in added),
            instances_removed=tuple(f"{n}/{i}" for n, i in removed),
            instances_changed=tuple(f"{n}/{i}" for n, i in changed),
        )
        self.fleet, self.nat_ports = fleet, ports
        return report

    def _scale_set(self, name: str) -> VirtualMachineScaleSet:
        """The scale set, or the Session's refusal (word for word)."""
        for vmss in self.deployment.virtual_machine_scale_sets:
            if vmss.name.lower() == name.lower():
                return vmss
        known = ", ".join(v.name for v in self.deployment.virtual_machine_scale_sets)
        raise LbsimError(
            "ResourceNotFound",
            f"The scale set '{name}' is not in the deployment (scale sets: {known}).",
        )

    def _state(self, name: str) -> fleets.ScaleSetState:
        state = self.fleet.of(name)
        assert state is not None, name
        return state

    def _known(self, name: str, instance_id: int) -> None:
        self._scale_set(name)
        if self._state(name).find(instance_id) is None:
            ids = ", ".join(str(i) for i in self.ids(name)) or "none"
            raise LbsimError(
                "ResourceNotFound",
                f"The scale set '{name}' has no instance {instance_id} (instances: {ids}).",
            )

    def _live(self) -> list[tuple[str, int]]:
        """(scale set, id) of every live instance, scale set by scale set."""
        return [(s.name, i) for s in self.fleet.scale_sets.values() for i in s.ids]

    def _maybe_broken(self) -> None:
        if self.broken:
            raise RuntimeError("the fake is broken on purpose")

    def _frontend_ports(self) -> set[int]:
        return {self.nat_ports[key] for key in self._live()} | {80}

    def _nat(self, name: str, instance_id: int, ports: Ports | None = None) -> dict[str, Any]:
        return {
            "ruleName": f"ssh.{instance_id}",
            "kind": "InboundNatPool",
            "protocol": "Tcp",
            "frontendIPAddress": "127.0.0.1",
            "frontendPort": (ports or self.nat_ports)[name, instance_id],
            "backendPort": 22,
            "scaleSet": name,
            "instanceId": instance_id,
            "backend": f"{name}/{instance_id}",
        }

    def _rule(self) -> dict[str, Any]:
        backends = [{"backend": f"{n}/{i}", "backendIPAddress": None} for n, i in self._live()]
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
            "frontendPort": self.nat_ports[name, instance_id],
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


def _by_key(fleet: Fleet) -> dict[tuple[str, int], Instance]:
    return {(s.name, i.instance_id): i for s in fleet.scale_sets.values() for i in s.instances}


def _ports_of(fleet: Fleet, held: Ports) -> Ports:
    """Every live instance's NAT port: the one it holds, else the lowest free one of its
    scale set's range (instances by id), as lbsim's plan gives them; more instances than the
    range has ports is Azure's refusal."""
    ports: Ports = {}
    for position, state in enumerate(fleet.scale_sets.values()):
        first = POOL_START + 100 * position
        keys = [(state.name, i) for i in sorted(state.ids)]
        if len(keys) > POOL_SIZE:
            raise LbsimError(
                "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts",
                f"the range of pool ssh has {POOL_SIZE} ports, {len(keys)} are requested",
            )
        taken = {held[key] for key in keys if key in held}
        free = (port for port in range(first, first + POOL_SIZE) if port not in taken)
        for key in keys:
            ports[key] = held[key] if key in held else next(free)
    return ports


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


def _differ(before: Instance, after: Instance) -> bool:
    """Whether an instance changed for its users: its power state, or a reimage."""
    return (before.state, before.generation) != (after.state, after.generation)
