"""Flows inside the virtual network: judged by the destination's NSGs with the sender's
private address as source, then reaching what serves the instance's port."""

from __future__ import annotations

import socket

import attrs
import pytest
import trio
from prometheus_client import CollectorRegistry
from runtime_harness import allow, nat_pool, place, plan_of, running, scale_set, settings

from lbsim.control.types import Plan
from lbsim.control.vnet import Outcome, default_source, reach
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.vnet import Refused, Throttle, VnetError
from lbsim.errors import LbsimError
from lbsim.observe.metrics import RuntimeCollector

INSIDE = "10.0.1.10"  # in the virtual network 10.0.0.0/16, in no subnet's NIC
OUTSIDE = "198.51.100.7"


def _plan(frontend: str) -> Plan:
    """Three instances (10.0.0.4-6) whose NAT pool reaches port 80 only; their subnet's NSG
    allows any port from the virtual network and port 22 from 203.0.113.0/24."""
    rules = [allow("ssh-office", 100, "203.0.113.0/24", "22")]
    return plan_of(scale_set([nat_pool("web", 50000, 80)], nsg_rules=rules), frontend)


def _stopped(plan: Plan, label: str) -> Plan:
    backends = tuple(
        attrs.evolve(b, running=False) if b.label == label else b for b in plan.backends
    )
    return attrs.evolve(plan, backends=backends)


def test_the_destination_nsgs_judge_with_the_senders_private_address() -> None:
    plan = _plan("127.0.93.250")
    inside = reach(plan, INSIDE, "10.0.0.5", 22)
    assert inside.outcome is Outcome.ALLOWED
    assert inside.backend is not None
    assert inside.backend.label == "vmss/1"
    assert inside.rule == "DefaultRule_AllowVnetInBound"
    office = reach(plan, "203.0.113.9", "10.0.0.5", 22)
    assert (office.outcome, office.rule) == (Outcome.ALLOWED, "UserRule_ssh-office")
    outside = reach(plan, OUTSIDE, "10.0.0.5", 22)
    assert (outside.outcome, outside.rule) == (Outcome.DENIED, "DefaultRule_DenyAllInBound")
    assert "denied by NSG rule DefaultRule_DenyAllInBound" in outside.describe()


def test_an_address_no_nic_has_is_unreachable_and_a_stopped_instance_stopped() -> None:
    plan = _plan("127.0.93.250")
    assert reach(plan, INSIDE, "10.0.0.99", 22).outcome is Outcome.UNREACHABLE
    assert reach(plan, INSIDE, "not an address", 22).outcome is Outcome.UNREACHABLE
    stopped = reach(_stopped(plan, "vmss/1"), INSIDE, "10.0.0.5", 22)
    assert stopped.outcome is Outcome.STOPPED
    assert "vmss/1 (10.0.0.5:22) is stopped" in stopped.describe()


def test_the_default_source_is_inside_the_virtual_network_and_held_by_no_nic() -> None:
    plan = _plan("127.0.93.250")
    source = default_source(plan)
    assert source == "10.0.0.254"  # the highest usable address of subnet 10.0.0.0/24
    assert reach(plan, source, "10.0.0.4", 8080).outcome is Outcome.ALLOWED
    assert default_source(Plan()) is None


async def test_open_reaches_the_instances_login_port_that_no_rule_uses() -> None:
    where = place()
    async with running(_plan(where.frontend), settings(where)) as runtime:
        stream, judged = await runtime.vnet.open(INSIDE, "10.0.0.5", 22)
        async with stream:
            with trio.fail_after(5):
                first = await stream.receive_some(256)
        assert first.startswith(b"SSH-2.0-lbsim_vmss_1 ")
        assert judged.backend is not None
        assert judged.backend.label == "vmss/1"
        assert runtime.vnet.counts["allowed"] == 1


async def test_open_refuses_denied_unreachable_and_closed_ports_each_saying_why() -> None:
    where = place()
    notices: list[str] = []
    async with running(_plan(where.frontend), settings(where)) as runtime:
        runtime.notice = notices.append
        with pytest.raises(VnetError) as denied:
            await runtime.vnet.open(OUTSIDE, "10.0.0.5", 22)
        assert denied.value.reach.outcome is Outcome.DENIED
        with pytest.raises(VnetError) as unknown:
            await runtime.vnet.open(INSIDE, "10.0.0.99", 22)
        assert unknown.value.reach.outcome is Outcome.UNREACHABLE
        with pytest.raises(Refused) as closed:  # allowed, but nothing serves port 8081
            await runtime.vnet.open(INSIDE, "10.0.0.5", 8081)
        assert "connection refused" in closed.value.message
        counts = runtime.vnet.counts
        assert (counts["denied"], counts["unreachable"], counts["refused"]) == (1, 1, 1)
    assert any("DefaultRule_DenyAllInBound" in line for line in notices)
    assert any("no instance of the deployment has this address" in line for line in notices)


async def test_resolve_from_another_thread_sees_the_current_plan() -> None:
    where = place()
    async with running(_plan(where.frontend), settings(where)) as runtime:
        token = trio.lowlevel.current_trio_token()
        resolved = await trio.to_thread.run_sync(
            runtime.vnet.resolve_from_thread, token, INSIDE, "10.0.0.6", 80
        )
        assert resolved.reach.outcome is Outcome.ALLOWED
        host, port = resolved.check()
        assert host.startswith(where.instance_network.rsplit(".", 1)[0])
        assert port > 0


async def test_connections_inside_are_counted_as_metrics_by_outcome() -> None:
    where = place()
    async with running(_plan(where.frontend), settings(where)) as runtime:
        stream, _ = await runtime.vnet.open(INSIDE, "10.0.0.4", 22)
        await stream.aclose()
        with pytest.raises(VnetError):
            await runtime.vnet.open(OUTSIDE, "10.0.0.4", 22)
        registry = CollectorRegistry()
        registry.register(RuntimeCollector(runtime))
        for outcome in ("allowed", "denied"):
            sample = registry.get_sample_value("lbsim_vnet_connections_total", {"outcome": outcome})
            assert sample == 1.0


def test_notices_of_a_kind_come_at_most_once_a_second_telling_how_many_were_held() -> None:
    lines: list[str] = []
    now = [100.0]
    tell = Throttle(lines.append, clock=lambda: now[0])
    for n in range(5):
        tell("denied", f"denied {n}")
    tell("unreachable", "unreachable 0")  # another kind: told at once
    now[0] += 1.0
    tell("denied", "denied 5")
    tell("denied", "denied 6")
    now[0] += 1.0
    tell("denied", "denied 7")
    assert lines == [
        "denied 0",
        "unreachable 0",
        "denied 5 (and 4 more)",
        "denied 7 (and 1 more)",
    ]


async def test_a_flood_of_refusals_is_one_notice() -> None:
    where = place()
    notices: list[str] = []
    async with running(_plan(where.frontend), settings(where)) as runtime:
        runtime.notice = notices.append
        for _ in range(50):
            runtime.vnet.resolve(OUTSIDE, "10.0.0.5", 22)
        assert runtime.vnet.counts["denied"] == 50
    assert len([line for line in notices if "DenyAllInBound" in line]) == 1, notices


async def test_a_socks_address_that_cannot_be_bound_is_socks_bind_failed() -> None:
    where = place()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()
        runtime = Runtime(_plan(where.frontend), settings(where, socks=busy))
        with pytest.RaisesGroup(pytest.RaisesExc(LbsimError), flatten_subgroups=True) as caught:
            async with trio.open_nursery() as nursery:
                await nursery.start(runtime.run)
    error = caught.value.exceptions[0]
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, LbsimError)
    assert error.code == "SocksBindFailed"
    assert f"127.0.0.1:{busy[1]} for the SOCKS endpoint" in error.message
