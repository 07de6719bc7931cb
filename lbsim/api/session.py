"""One live load balancer: the template it was loaded from, the live state of its scale sets,
the plan running, and the runtime that runs it.

Every change is "compute the new plan, diff, apply": scale, stop, start, restart, delete and
reload each make a new :class:`~lbsim.control.fleet.Fleet` (or load the template again),
plan it purely with the running plan as ``previous`` (so instances keep their addresses and
NAT ports), and hand :func:`~lbsim.control.diff.diff` of the two to
:meth:`~lbsim.dataplane.runtime.Runtime.apply`. Nothing else reaches into the runtime. A
change that fails (no port left, an invalid template, a port that cannot be bound) leaves
the plan, the fleet and the runtime as they were. Changes are serialized.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any

import trio
from prometheus_client import CollectorRegistry, generate_latest

from lbsim.api import bastion as bastions
from lbsim.api import changes, livetable, queries, sources, views
from lbsim.api.checks import at_start
from lbsim.api.config import UpConfig, resolve
from lbsim.api.files import Loaded, load
from lbsim.api.handle import ChangeReport
from lbsim.api.sinks import flow_sinks
from lbsim.api.source import Source
from lbsim.control import fleet as fleets
from lbsim.control.diff import diff
from lbsim.control.fleet import Fleet, Overprovision, PowerState
from lbsim.control.nsg import effective_rules
from lbsim.control.plan import plan as make_plan
from lbsim.control.types import BalancingEntry, NatEntry, Plan
from lbsim.dataplane.events import RecordSink
from lbsim.dataplane.faults import Fault, Target, make_fault, rules_of
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import RuntimeSettings
from lbsim.errors import LbsimError, Problem, TemplateInvalid
from lbsim.model import Deployment, SecurityRuleDirection, VirtualMachineScaleSet
from lbsim.observe.metrics import RuntimeCollector
from lbsim.pointer import Pointer


class Session:
    """A running load balancer (the Python API's handle): see :mod:`lbsim.api.handle`."""

    def __init__(
        self,
        source: Source,
        config: UpConfig,
        sink: RecordSink | None = None,
        *,
        config_args: argparse.Namespace | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """Load ``source`` (raises ``TemplateInvalid`` with every problem). Flow events go to
        ``sink``, else where ``config`` says (log lines, NSG flow logs). A reload resolves
        the settings again from ``config_args`` and ``environ`` (the ``LBSIM_*`` variables
        lbsim started with; none for the library)."""
        self.source = source
        self.config = config
        self._config_args = config_args  # what resolve() reads again on reload
        self._environ = dict(environ or {})
        self._writers: list[Callable[[], Awaitable[None]]] = []
        if sink is None:
            sink, self._writers = flow_sinks(config)
        loaded = load(source.namespace(), frontends=dict(config.frontends), links=config.links)
        self.deployment: Deployment = loaded.deployment
        fleet = fleets.fresh(loaded.deployment, overprovision(config))
        planned = loaded.plan
        if fleets.has_surplus(fleet):
            planned, fleet = self._plan(loaded.deployment, fleet, config, None, live=False)
        self.fleet: Fleet = fleet
        self.warnings: tuple[Problem, ...] = at_start(loaded, config, source.template)
        self.runtime = Runtime(planned, config.runtime, sink)
        self.bastion = bastions.Bastion(self.runtime)  # bastion tunnels, held by run()
        self.registry = CollectorRegistry()
        self.registry.register(RuntimeCollector(self.runtime))
        self.api_url: str | None = None
        self._ready = False
        self._changing = trio.Lock()
        for fault in config.faults:  # the config file's [[faults]]: active from the start
            self.add_fault(fault)

    @property
    def plan(self) -> Plan:
        return self.runtime.plan

    @property
    def config_file(self) -> str | None:
        """The TOML settings file a reload reads again, if any."""
        config: str | None = getattr(self._config_args, "config", None)
        return config

    async def run(
        self, *, task_status: trio.TaskStatus[Session] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until the runtime is stopped and drained; started once every listener is
        bound and every probe has a first result."""
        values = self.config.values
        async with trio.open_nursery() as nursery:
            for write in self._writers:
                nursery.start_soon(write)
            if values["api_port"] is not None:  # first: /readyz answers while starting
                # (imported here: the HTTP server costs lbsim up ~50 ms at start when off)
                from lbsim.api.http import serve_api  # noqa: PLC0415

                serving = partial(
                    serve_api,
                    self,
                    host=values["api_address"],
                    port=values["api_port"],
                    token=values["api_token"],
                )
                self.api_url = await nursery.start(serving)
            await nursery.start(self.bastion.run)  # (they close when the runtime ends)
            await nursery.start(self._run_runtime, nursery.cancel_scope)
            self._ready = True
            task_status.started(self)
        self._ready = False

    async def _run_runtime(
        self, everything: trio.CancelScope, *, task_status: trio.TaskStatus[Runtime]
    ) -> None:
        await self.runtime.run(task_status=task_status)
        everything.cancel()  # drained: the API and the log writers end too

    def shutdown(self) -> None:
        """Stop accepting; ``run`` returns once open flows drained."""
        self.runtime.stop()

    # --- reads ------------------------------------------------------------------------------
    def readiness(self) -> str | None:
        if self.runtime.stopping:
            return "stopping"
        return None if self._ready else "starting: binding listeners and starting instances"

    def ports(self) -> list[dict[str, Any]]:
        return livetable.ports_json(self.plan, self.runtime)

    def instances(self) -> list[dict[str, Any]]:
        return livetable.instances_json(self.plan, self.fleet, self.runtime)

    def endpoint(
        self, scale_set: str, instance_id: int, backend_port: int, protocol: str = "Tcp"
    ) -> tuple[str, int]:
        label, wanted = f"{scale_set}/{instance_id}".lower(), protocol.lower()
        for entry in self.plan.nat:
            backend = entry.backend
            if (
                backend is not None
                and backend.label.lower() == label
                and entry.backend_port == backend_port
                and entry.protocol.value.lower() == wanted
            ):
                key = livetable.listen_key(entry)
                found = livetable.listening(self.runtime).get(key)
                return found or self.runtime.port_map.listen(*key[::2])
        raise LbsimError(
            "ResourceNotFound",
            f"no {protocol} NAT entry reaches port {backend_port} of {scale_set}/{instance_id}.",
        )

    def check(
        self,
        *,
        source: str,
        frontend_port: int | None = None,
        destination: str | None = None,
        protocol: str = "Tcp",
        frontend: str | None = None,
    ) -> dict[str, Any]:
        result = queries.check_flow(
            self.plan,
            source=source,
            frontend_port=frontend_port,
            destination=destination,
            protocol=protocol,
            frontend=frontend,
        )
        return views.check_json(result)

    def rules(self, instance: str, direction: str = "Inbound") -> dict[str, Any]:
        backend = queries.find_instance(self.plan, instance)
        try:
            way = SecurityRuleDirection(direction.capitalize())
        except ValueError:
            raise LbsimError(
                "InvalidArgument", f"direction {direction!r}: choose Inbound or Outbound."
            ) from None
        rules = effective_rules(backend.subnet_nsg, backend.nic_nsg, way)
        return views.rules_json(backend, way, rules)

    def metrics(self) -> bytes:
        return generate_latest(self.registry)

    def probed(self, scale_set: str, instance_id: int) -> dict[str, bool | None]:
        """What each health probe of an instance says now: ``{"LB/PROBE": up}``, None
        until its first result (none at all when no rule with a probe reaches it)."""
        backend = queries.find_instance(self.plan, f"{scale_set}/{instance_id}")
        return {
            f"{state.probe.load_balancer}/{state.probe.name}": state.up
            for state in self.runtime.probes
            if state.backend.key == backend.key
        }

    async def client_for(self, source: str) -> str:
        """A loopback address whose connections the NSGs see as coming from ``source``
        (an IPv4 address): one of 127.250.0.0/16, added to the running source map for new
        flows, with no reload (a reload of the config file's sources drops it; it is added
        again when asked again)."""
        async with self._changing:
            settings, local = sources.presented_as(self.runtime.settings, source)
            if settings is not self.runtime.settings:
                await self.runtime.apply(diff(self.plan, self.plan), settings)
            return local

    # --- faults -----------------------------------------------------------------------------
    def faults(self) -> list[dict[str, Any]]:
        return [fault.to_json() for fault in self.runtime.faults]

    def add_fault(
        self,
        fault: Fault | str,
        *,
        name: str | None = None,
        stream: str = "downstream",
        toxicity: float = 1.0,
        seed: int | None = None,
        frontend_port: int | None = None,
        rule: str | None = None,
        instance: str | None = None,
        **attributes: float,
    ) -> dict[str, Any]:
        """Set a fault: a :class:`~lbsim.dataplane.faults.Fault`, or its type and the rest
        as keywords (``add_fault("latency", latency=200, instance="web/1")``). It acts on
        new flows (and on new UDP datagrams) from now on; its JSON is returned."""
        if isinstance(fault, str):
            target = Target(frontend_port, rule, instance)
            fault = make_fault(
                fault,
                name=name,
                stream=stream,
                toxicity=toxicity,
                seed=seed,
                target=target,
                attributes=attributes,
            )
        self._check_target(fault.target)
        self.runtime.add_fault(fault)
        return fault.to_json()

    def remove_fault(self, name: str) -> dict[str, Any]:
        return self.runtime.remove_fault(name).to_json()

    @asynccontextmanager
    async def fault(self, fault: Fault | str, **options: Any) -> AsyncIterator[dict[str, Any]]:
        """``async with lb.fault("latency", latency=200):`` the fault is set inside the
        block and removed on the way out (whatever happens inside)."""
        made = self.add_fault(fault, **options)
        try:
            yield made
        finally:
            if any(f.name == made["name"] for f in self.runtime.faults):
                self.remove_fault(made["name"])

    def _check_target(self, target: Target) -> None:
        """A target names what the live plan has: a frontend port, a rule, an instance."""
        entries: list[NatEntry | BalancingEntry] = [*self.plan.nat, *self.plan.balancing]
        port, rule, instance = target.frontend_port, target.rule, target.instance
        if port is not None and all(e.frontend_port != port for e in entries):
            raise _no_target("frontendPort", f"no NAT entry or rule listens on port {port}")
        if rule is not None and all(rule.lower() not in rules_of(e) for e in entries):
            raise _no_target("rule", f"no NAT rule, NAT pool or load-balancing rule {rule!r}")
        labels = {b.label.lower() for b in self.plan.backends}
        if instance is not None and instance.lower() not in labels:
            raise _no_target("instance", f"no instance {instance!r} (as web/1, or a VM's name)")

    # --- bastion tunnels (lbsim.api.bastion.Bastion's, for the handle protocol) -----------
    async def open_tunnel(
        self,
        target: str,
        resource_port: int,
        port: int = 0,
        bastion: str | None = None,
        lease_seconds: float | None = None,
    ) -> dict[str, Any]:
        """As :meth:`lbsim.api.bastion.Bastion.open_tunnel`."""
        return await self.bastion.open_tunnel(target, resource_port, port, bastion, lease_seconds)

    def renew_tunnel(self, tunnel_id: str) -> dict[str, Any]:
        return self.bastion.renew_tunnel(tunnel_id)

    def close_tunnel(self, tunnel_id: str) -> dict[str, Any]:
        return self.bastion.close_tunnel(tunnel_id)

    def tunnels(self) -> list[dict[str, Any]]:
        return self.bastion.tunnels()

    def bastion_tunnel(
        self, target: str, resource_port: int, port: int = 0, bastion: str | None = None
    ) -> AbstractAsyncContextManager[tuple[str, int]]:
        """As :meth:`lbsim.api.bastion.Bastion.bastion_tunnel`."""
        return self.bastion.bastion_tunnel(target, resource_port, port, bastion)

    # --- changes ----------------------------------------------------------------------------
    # Each change is a function of the live state, called with the lock held: two changes
    # at once (two API calls, a reload on SIGHUP) never work from the same stale state.
    async def scale(self, scale_set: str, capacity: int) -> ChangeReport:
        over = overprovision(self.config)
        return await self._change(
            lambda fleet: fleets.scale(fleet, self._scale_set(scale_set), capacity, over)
        )

    async def start(self, scale_set: str, instance_id: int) -> ChangeReport:
        return await self._power(scale_set, instance_id, PowerState.RUNNING)

    async def stop(self, scale_set: str, instance_id: int) -> ChangeReport:
        """Stop (deallocate) an instance: it keeps its ports; new connections are reset and
        its probes fail, so load-balancing rules drop it after their threshold."""
        return await self._power(scale_set, instance_id, PowerState.STOPPED)

    async def restart(self, scale_set: str, instance_id: int) -> ChangeReport:
        """Stop then start, with nothing else in between: the instance's open flows are
        reset, its ports stay."""
        steps = [
            self._powered(scale_set, instance_id, PowerState.STOPPED),
            self._powered(scale_set, instance_id, PowerState.RUNNING),
        ]
        return await self._change(*steps)

    async def delete(self, scale_set: str, instance_id: int) -> ChangeReport:
        """Delete one instance, protected from scale-in or not (Azure's protection does not
        block a delete the user asks for)."""

        def step(fleet: Fleet) -> Fleet:
            self._scale_set(scale_set)
            return fleets.delete(fleet, scale_set, [instance_id])

        return await self._change(step)

    async def reimage(self, scale_set: str, instance_id: int) -> ChangeReport:
        """Reimage one instance: its OS disk is made again, so its built-in SSH server gets
        a new host key (``ssh`` then warns that the remote host identification changed); it
        keeps its id, address, NAT ports and power state, and its open flows are reset."""

        def step(fleet: Fleet) -> Fleet:
            self._scale_set(scale_set)
            return fleets.reimage(fleet, scale_set, instance_id)

        return await self._change(step)

    async def protect(self, scale_set: str, instance_id: int, on: bool = True) -> ChangeReport:
        """Protect an instance from scale-in (``on``) or lift the protection: scale-in then
        skips it. Nothing the data plane runs changes; the report names the instance when
        its protection changed."""
        self._scale_set(scale_set)
        async with self._changing:
            fleet = fleets.protect(self.fleet, scale_set, instance_id, on)
            state = self.fleet.of(scale_set)
            before = state.find(instance_id) if state else None
            self.fleet = fleet
        if state is None or before is None or before.protected == on:
            return ChangeReport()
        return ChangeReport(instances_changed=(f"{state.name}/{instance_id}",))

    async def reload(self) -> ChangeReport:
        """Load the template, parameters and config again; apply the difference, or raise
        ``TemplateInvalid`` with every problem and keep running the old plan. The runtime's
        settings follow for new flows (deny mode, sources, timeouts, backends); the TCP
        engine, the control API's address and the log settings stay as lbsim started."""
        async with self._changing:
            config = self.config
            if self._config_args is not None:
                config = resolve(self._config_args, self._environ)
            loaded = await trio.to_thread.run_sync(_load, self.source, config)
            fleet = fleets.reconcile(self.fleet, loaded.deployment, overprovision(config))
            planned, fleet = self._plan(loaded.deployment, fleet, config, self.plan, live=False)

            def made() -> None:
                self.deployment, self.fleet, self.config = loaded.deployment, fleet, config
                self.warnings = loaded.warnings

            return await self._apply(planned, config.runtime, made)

    async def _power(self, scale_set: str, instance_id: int, power: PowerState) -> ChangeReport:
        return await self._change(self._powered(scale_set, instance_id, power))

    def _powered(
        self, scale_set: str, instance_id: int, power: PowerState
    ) -> Callable[[Fleet], Fleet]:
        def step(fleet: Fleet) -> Fleet:
            self._scale_set(scale_set)
            return fleets.set_state(fleet, scale_set, instance_id, power)

        return step

    async def _change(self, *steps: Callable[[Fleet], Fleet]) -> ChangeReport:
        """Apply each step to the live fleet in turn, with the lock held throughout; each
        step's plan is applied, and the fleet changes with the runtime or not at all."""
        async with self._changing:
            reports = []
            for step in steps:
                wanted = step(self.fleet)
                planned, fleet = self._plan(self.deployment, wanted, self.config, self.plan)

                def made(fleet: Fleet = fleet) -> None:
                    self.fleet = fleet

                reports.append(await self._apply(planned, None, made))
            return reports[0] if len(reports) == 1 else changes.merged(*reports)

    def _plan(
        self,
        deployment: Deployment,
        fleet: Fleet,
        config: UpConfig,
        previous: Plan | None,
        *,
        live: bool = True,
    ) -> tuple[Plan, Fleet]:
        """The plan of ``fleet`` and the fleet it runs. Overprovisioned extras are planned
        first, beside the instances asked for, so that they hold NAT ports and addresses
        while the others take theirs (as in Azure, where they exist for a while); then the
        plan without them keeps everyone else's ports, so ids and ports have gaps."""
        if fleets.has_surplus(fleet):
            previous = self._planned(deployment, fleet, config, previous, live)
            fleet = fleets.settle(fleet)
        return self._planned(deployment, fleet, config, previous, live), fleet

    def _planned(
        self,
        deployment: Deployment,
        fleet: Fleet,
        config: UpConfig,
        previous: Plan | None,
        live: bool,
    ) -> Plan:
        """One plan; a live change that runs out of ports is a refusal with Azure's code."""
        try:
            planned = make_plan(deployment, dict(config.frontends), fleet=fleet, previous=previous)
        except TemplateInvalid as error:
            first = error.problems[0]
            single = len(error.problems) == 1
            if live and single and first.code.endswith("SmallerThanRequestedPorts"):
                raise LbsimError(first.code, first.message, first.at) from None
            raise TemplateInvalid(
                [p.located(self.source.template) for p in error.problems]
            ) from None
        return planned

    async def _apply(
        self, planned: Plan, settings: RuntimeSettings | None, made: Callable[[], None]
    ) -> ChangeReport:
        """Run ``planned``; ``made`` updates the session's own state inside the runtime's
        commit, so that a change cancelled or refused half way leaves both as they were."""
        change = diff(self.plan, planned)
        await self.runtime.apply(change, settings, made)
        return changes.report_of(change)

    def _scale_set(self, name: str) -> VirtualMachineScaleSet:
        wanted = name.lower()
        for vmss in self.deployment.virtual_machine_scale_sets:
            if vmss.name.lower() == wanted:
                return vmss
        known = ", ".join(v.name for v in self.deployment.virtual_machine_scale_sets) or "none"
        raise LbsimError(
            "ResourceNotFound",
            f"The scale set '{name}' is not in the deployment (scale sets: {known}).",
        )


def _no_target(field: str, message: str) -> LbsimError:
    return LbsimError(
        "ResourceNotFound", f"target.{field}: {message}", Pointer.parse(f"/target/{field}")
    )


def overprovision(config: UpConfig) -> Overprovision | None:
    """Overprovisioning as the settings ask: off unless ``overprovision`` is true."""
    values = config.values
    return Overprovision(values["overprovision_seed"]) if values["overprovision"] else None


def _load(source: Source, config: UpConfig) -> Loaded:
    return load(source.namespace(), frontends=dict(config.frontends), links=config.links)
