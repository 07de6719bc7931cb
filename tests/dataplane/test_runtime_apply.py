"""Runtime.apply on real loopback sockets, on every TCP engine: scale-out opens the new NAT
ports to new instances, scale-in and stop reset what they take away, start brings an
instance back, a rule's probe follows stop and start, an NSG change judges new flows only,
an untouched instance's flow survives it all, and a port that cannot be had changes nothing."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from runtime_harness import (
    Json,
    Place,
    allow,
    connect,
    ending,
    free_ports,
    nat_pool,
    nsg_sources,
    place,
    read_line,
    running,
    scale_set,
    settings,
)
from waiting import eventually

from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.diff import diff, listen_table
from lbsim.control.fleet import Fleet, PowerState, fresh, reconcile, scale, set_state
from lbsim.control.plan import plan
from lbsim.control.types import Plan
from lbsim.dataplane.runtime import Runtime
from lbsim.errors import LbsimError
from lbsim.model import Deployment

# Every test runs on each way lbsim relays TCP (tests/dataplane/conftest.py names them).
pytestmark = pytest.mark.every_engine  # once per engine (conftest.py)

ECHO = 7000  # a backend port where a built-in instance names itself, then echoes
_LB = "resourceId('Microsoft.Network/loadBalancers', 'lb')"


# --- templates and plans -----------------------------------------------------------------------
def echo_template(start: int, capacity: int, **extra: Any) -> Json:
    """A scale set ``vmss`` behind NAT pool ``echo`` (``start`` .. ``start + 5`` -> 7000)."""
    return scale_set([nat_pool("echo", start, ECHO, size=6)], capacity=capacity, **extra)


def with_probed_rule(doc: Json, frontend_port: int) -> Json:
    """``doc`` with a load-balancing rule ``spread`` (``frontend_port`` -> 7000) over backend
    pool ``pool`` with a TCP probe on 7000, and every instance in that pool."""
    for res in doc["resources"]:
        props = res["properties"]
        if res["name"] == "lb":
            props["probes"] = [{"name": "alive", "properties": {"protocol": "Tcp", "port": ECHO}}]
            props["loadBalancingRules"] = [
                {
                    "name": "spread",
                    "properties": {
                        "frontendIPConfiguration": {"id": _ref("frontendIPConfigurations/fe")},
                        "backendAddressPool": {"id": _ref("backendAddressPools/pool")},
                        "probe": {"id": _ref("probes/alive")},
                        "protocol": "Tcp",
                        "frontendPort": frontend_port,
                        "backendPort": ECHO,
                    },
                }
            ]
        if res["name"] == "vmss":
            nics = props["virtualMachineProfile"]["networkProfile"]
            ipc = nics["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"][0]
            ipc["properties"]["loadBalancerBackendAddressPools"] = [
                {"id": _ref("backendAddressPools/pool")}
            ]
    return doc


def _ref(path: str) -> str:
    return f"[concat({_LB}, '/{path}')]"


def fast_probes(the_plan: Plan, interval_s: float = 0.1, threshold: int = 2) -> Plan:
    """``the_plan`` with every probe checking each ``interval_s`` (templates allow 5 s at
    the least: a test cannot wait for that)."""
    rules = tuple(
        attrs.evolve(
            rule, probe=attrs.evolve(rule.probe, interval_s=interval_s, threshold=threshold)
        )
        if rule.probe is not None
        else rule
        for rule in the_plan.balancing
    )
    return attrs.evolve(the_plan, balancing=rules)


def load(doc: Json) -> Deployment:
    return load_template(doc, "t.json", LoadOptions(fill_missing=True))


@attrs.define
class Live:
    """What ``lbsim up`` keeps of a running deployment: the template's deployment, the fleet,
    and the runtime applying the plans made of them."""

    deployment: Deployment
    fleet: Fleet
    runtime: Runtime
    where: Place
    fast: bool = False

    async def apply(self, deployment: Deployment, fleet: Fleet) -> Plan:
        """Run the plan of ``deployment`` and ``fleet`` (kept once it runs); the plan."""
        new = plan(
            deployment, {"lb/fe": self.where.frontend}, fleet=fleet, previous=self.runtime.plan
        )
        new = fast_probes(new) if self.fast else new
        await self.runtime.apply(diff(self.runtime.plan, new))
        assert self.runtime.plan is new
        self.deployment, self.fleet = deployment, fleet
        return new

    async def scale(self, capacity: int) -> Plan:
        vmss = self.deployment.virtual_machine_scale_sets[0]
        return await self.apply(self.deployment, scale(self.fleet, vmss, capacity))

    async def power(self, instance: int, state: PowerState) -> Plan:
        return await self.apply(self.deployment, set_state(self.fleet, "vmss", instance, state))

    async def reload(self, doc: Json) -> Plan:
        deployment = load(doc)
        return await self.apply(deployment, reconcile(self.fleet, deployment))


@asynccontextmanager
async def live(
    doc: Json, where: Place, *, fast: bool = False, **config: Any
) -> AsyncIterator[Live]:
    deployment = load(doc)
    fleet = fresh(deployment)
    first = plan(deployment, {"lb/fe": where.frontend}, fleet=fleet)
    async with running(fast_probes(first) if fast else first, settings(where, **config)) as rt:
        yield Live(deployment, fleet, rt, where, fast)


def keys(runtime: Runtime) -> set[Any]:
    return {listener.key for listener in runtime.listeners}


async def greeting(address: tuple[str, int], source: str | None = None) -> bytes:
    """The line the built-in echo instance behind ``address`` names itself with."""
    with await connect(address, source) as sock:
        return await read_line(sock)


def names(line: bytes, instance: int) -> bool:
    return line.startswith(f"lbsim instance vmss/{instance} at ".encode())


# --- an echo stream that must stay whole -------------------------------------------------------
@attrs.define
class Echo:
    """A flow through lbsim to an echo instance, checked byte for byte while it runs."""

    stream: trio.SocketStream
    sent: int = 0
    rounds: int = 0

    async def round(self, rng: random.Random) -> None:
        data = rng.randbytes(rng.randrange(1, 16384))
        with trio.fail_after(3):
            await self.stream.send_all(data)
            back = b""
            while len(back) < len(data):
                chunk = await self.stream.receive_some(len(data) - len(back))
                assert chunk, f"the echo ended after {self.sent + len(back)} bytes"
                back += chunk
        assert back == data
        self.sent += len(data)
        self.rounds += 1

    async def more(self, rounds: int) -> None:
        """Wait until the pump has done ``rounds`` more rounds."""
        wanted = self.rounds + rounds
        await eventually(lambda: self.rounds >= wanted)

    async def pump(self, done: trio.Event) -> None:
        """Rounds until ``done`` (at most 100,000: bounded)."""
        rng = random.Random(7)
        for _ in range(100_000):
            if done.is_set():
                return
            await self.round(rng)
            await trio.sleep(0.001)


@asynccontextmanager
async def echo_to(
    address: tuple[str, int], source: str | None = None
) -> AsyncIterator[tuple[Echo, bytes]]:
    """An echo flow through ``address`` and the line its instance named itself with; closed
    on the way out."""
    with await connect(address, source) as sock:
        line = await read_line(sock)
        yield Echo(trio.SocketStream(sock)), line


# --- scale-out ---------------------------------------------------------------------------------
async def test_scale_out_opens_new_nat_ports_to_the_new_instances() -> None:
    where = place()
    start = free_ports(where.frontend, 6)
    async with live(echo_template(start, 2), where) as lb:
        before = {listener.key: listener for listener in lb.runtime.listeners}
        new = await lb.scale(4)
        assert keys(lb.runtime) == set(listen_table(new))
        assert len(keys(lb.runtime)) == 4
        for instance in (2, 3):
            line = await greeting((where.frontend, start + instance))
            assert names(line, instance), line
        for key, listener in before.items():  # the listeners that stay are the same ones
            assert next(x for x in lb.runtime.listeners if x.key == key) is listener
        assert names(await greeting((where.frontend, start)), 0)


# --- an untouched flow -------------------------------------------------------------------------
async def test_an_echo_stream_on_an_untouched_instance_survives_other_instances_changes() -> None:
    where = place()
    start = free_ports(where.frontend, 6)
    async with live(echo_template(start, 3), where) as lb:
        changes: list[Callable[[], Awaitable[Plan]]] = [
            partial(lb.scale, 5),
            partial(lb.scale, 2),  # Default: 4, 3 and 2 go
            partial(lb.power, 1, PowerState.STOPPED),
            partial(lb.power, 1, PowerState.RUNNING),
            partial(lb.scale, 4),
        ]
        async with echo_to((where.frontend, start)) as (echo, line):
            assert names(line, 0)
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(echo.pump, done)
                for change in changes:
                    await change()
                    await echo.more(3)  # rounds after the change, byte for byte
                done.set()
            await echo.round(random.Random(1))
            await echo.stream.send_eof()
            assert await ending(echo.stream.socket) == "eof"
        assert echo.rounds >= 16
        assert keys(lb.runtime) == set(listen_table(lb.runtime.plan))


# --- scale-in ----------------------------------------------------------------------------------
async def test_scale_in_closes_the_removed_instances_listener_and_resets_its_flow() -> None:
    where = place()
    start = free_ports(where.frontend, 6)
    async with live(echo_template(start, 3), where) as lb:
        async with (
            echo_to((where.frontend, start + 2)) as (doomed, line),
            echo_to((where.frontend, start + 1)) as (kept, _),
        ):
            assert names(line, 2)
            new = await lb.scale(2)  # Default: the highest id, 2, goes
            assert keys(lb.runtime) == set(listen_table(new))
            assert await ending(doomed.stream.socket) == "reset"
            with pytest.raises(ConnectionRefusedError):
                await connect((where.frontend, start + 2))
            await kept.round(random.Random(2))
        assert {s.identity.label for s in lb.runtime.instances} == {"vmss/0", "vmss/1"}


# --- stop and start ----------------------------------------------------------------------------
async def test_a_stopped_instance_listens_but_resets_until_it_is_started() -> None:
    where = place()
    start = free_ports(where.frontend, 6)
    async with live(echo_template(start, 2), where) as lb:
        async with echo_to((where.frontend, start + 1)) as (flow, _):
            stopped = await lb.power(1, PowerState.STOPPED)
            assert keys(lb.runtime) == set(listen_table(stopped))  # its NAT port stays
            assert await ending(flow.stream.socket) == "reset"  # its open flow is reset
        assert {s.identity.label for s in lb.runtime.instances} == {"vmss/0"}
        for _ in range(2):
            with await connect((where.frontend, start + 1)) as sock:  # accepted, then reset
                assert await ending(sock) == "reset"
        await lb.power(1, PowerState.RUNNING)
        line = await greeting((where.frontend, start + 1))
        assert names(line, 1), line
        assert "at 10.0.0.5" in line.decode()  # the same private address as before


# --- a rule's probe ----------------------------------------------------------------------------
def _picked(lb: Live, port: int) -> set[str]:
    """The instances the rule on ``port`` gives new flows from many client ports."""
    rule = next(x for x in lb.runtime.listeners if x.entry.frontend_port == port)
    routes = (rule.pick(("127.0.0.1", p)) for p in range(40000, 40060))
    return {r.backend.label for r in routes if r is not None}


def _healthy(lb: Live, label: str) -> bool:
    return any(s.healthy for s in lb.runtime.probes if s.backend.label == label)


async def test_a_rules_probe_drops_a_stopped_backend_and_takes_it_back_after_start() -> None:
    where = place()
    start = free_ports(where.frontend, 7)
    rule_port = start + 6
    doc = with_probed_rule(echo_template(start, 3), rule_port)
    async with live(doc, where, fast=True) as lb:
        assert _picked(lb, rule_port) == {"vmss/0", "vmss/1", "vmss/2"}
        await lb.power(1, PowerState.STOPPED)
        await eventually(lambda: not _healthy(lb, "vmss/1"))
        assert _picked(lb, rule_port) == {"vmss/0", "vmss/2"}
        for _ in range(12):  # every new flow reaches a running instance
            line = await greeting((where.frontend, rule_port))
            assert not names(line, 1), line
        await lb.power(1, PowerState.RUNNING)
        await eventually(lambda: _healthy(lb, "vmss/1"))
        assert _picked(lb, rule_port) == {"vmss/0", "vmss/1", "vmss/2"}
        assert names(await greeting((where.frontend, start + 1)), 1)


async def test_scale_in_resets_a_rules_flows_on_removed_backends_only() -> None:
    where = place()
    start = free_ports(where.frontend, 7)
    rule_port = start + 6
    doc = with_probed_rule(echo_template(start, 3), rule_port)
    async with live(doc, where, fast=True) as lb, AsyncExitStack() as stack:
        flows: dict[int, list[Echo]] = {0: [], 1: [], 2: []}
        for _ in range(30):  # the 5-tuple hash spreads them over the three instances
            echo, line = await stack.enter_async_context(echo_to((where.frontend, rule_port)))
            flows[next(i for i in flows if names(line, i))].append(echo)
        assert all(flows.values()), {i: len(f) for i, f in flows.items()}
        await lb.scale(1)  # Default: 2 and 1 go
        for echo in flows[1] + flows[2]:
            assert await ending(echo.stream.socket) == "reset"
        rng = random.Random(5)
        for echo in flows[0]:
            await echo.round(rng)
        assert _picked(lb, rule_port) == {"vmss/0"}
        assert [s.backend.label for s in lb.runtime.probes] == ["vmss/0"]


async def test_scale_to_zero_closes_every_listener_and_scale_out_opens_them_again() -> None:
    where = place()
    start = free_ports(where.frontend, 7)
    rule_port = start + 6
    doc = with_probed_rule(echo_template(start, 2), rule_port)
    async with live(doc, where, fast=True) as lb:
        empty = await lb.scale(0)
        assert listen_table(empty) == {}
        assert (lb.runtime.listeners, lb.runtime.instances, lb.runtime.probes) == ([], [], [])
        for port in (start, start + 1, rule_port):
            with pytest.raises(ConnectionRefusedError):
                await connect((where.frontend, port))
        again = await lb.scale(2)  # ids 2 and 3, on the lowest ports of the pool
        assert keys(lb.runtime) == set(listen_table(again))
        assert names(await greeting((where.frontend, start)), 2)
        assert names(await greeting((where.frontend, start + 1)), 3)
        await eventually(lambda: _healthy(lb, "vmss/2") and _healthy(lb, "vmss/3"))
        assert _picked(lb, rule_port) == {"vmss/2", "vmss/3"}


# --- an NSG change -----------------------------------------------------------------------------
async def test_a_changed_nsg_denies_new_flows_and_leaves_open_ones_open() -> None:
    where = place()
    start = free_ports(where.frontend, 6)
    allowed = where.client(7)  # presented as 203.0.113.7

    def doc(source: str) -> Json:
        return echo_template(start, 2, nsg_rules=[allow("allow-echo", 100, source)])

    async with live(doc("203.0.113.0/25"), where, sources=nsg_sources(where)) as lb:
        async with echo_to((where.frontend, start), allowed) as (flow, line):
            assert names(line, 0)
            before = lb.runtime.plan
            after = await lb.reload(doc("192.0.2.0/24"))
            assert diff(before, after).nsgs_changed != ()
            assert keys(lb.runtime) == set(listen_table(after))
            for port in (start, start + 1):
                with await connect((where.frontend, port), allowed) as sock:
                    assert await ending(sock) == "reset"  # denied now
            await flow.round(random.Random(3))  # the flow opened before goes on
            await lb.reload(doc("203.0.113.0/25"))
            assert names(await greeting((where.frontend, start + 1), allowed), 1)
            await flow.round(random.Random(4))
        assert (
            lb.runtime.nsg_decisions[("nsg", "subnet", "DefaultRule_DenyAllInBound", "Deny")] == 2
        )


# --- a port held elsewhere ---------------------------------------------------------------------
async def test_apply_needing_a_port_held_elsewhere_fails_and_changes_nothing() -> None:
    where = place()
    start = free_ports(where.frontend, 6)
    async with live(echo_template(start, 2), where) as lb:
        before, listeners = lb.runtime.plan, list(lb.runtime.listeners)
        servers = {s.identity.label for s in lb.runtime.instances}
        with _held(where.frontend, [start + 3]):
            with pytest.raises(LbsimError) as caught:
                await lb.scale(4)
            assert caught.value.code == "FrontendBindFailed"
            assert f"{where.frontend}:{start + 3}" in caught.value.message
        assert lb.runtime.plan is before
        assert lb.runtime.listeners == listeners
        assert {s.identity.label for s in lb.runtime.instances} == servers == {"vmss/0", "vmss/1"}
        with pytest.raises(ConnectionRefusedError):  # the port it could bind is let go
            await connect((where.frontend, start + 2))
        assert names(await greeting((where.frontend, start + 1)), 1)
        again = await lb.scale(4)  # the port is free again: the same change applies
        assert keys(lb.runtime) == set(listen_table(again))
        assert names(await greeting((where.frontend, start + 3)), 3)


@contextmanager
def _held(host: str, ports: Iterable[int]) -> Iterator[None]:
    """TCP ports on ``host`` listened on by someone else for the block's duration."""
    with ExitStack() as stack:
        for port in ports:
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, port))
            sock.listen()
        yield
