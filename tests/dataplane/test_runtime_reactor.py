"""The runtime's TCP engine: relayed connections cost no trio task, and remembered NSG
verdicts never stand in for a verdict that the source port could change."""

from __future__ import annotations

import gc
import random
import socket
import weakref

import trio
from runtime_harness import (
    allow,
    connect,
    echo_plan,
    ending,
    free_ports,
    listener_on,
    nat_pool,
    no_descriptors_left,
    place,
    plan_of,
    read_line,
    running,
    scale_set,
    settings,
)
from waiting import eventually

from lbsim.dataplane.reactor import Reactor
from lbsim.dataplane.settings import BackendPattern
from lbsim.dataplane.stats import RuleStats


def _tasks() -> int:
    """How many tasks the trio run has now."""
    count, todo = 0, [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        if task is None:
            continue
        count += 1
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return count


async def test_relayed_connections_cost_no_task() -> None:
    where = place()
    start = free_ports(where.frontend, 1)
    backend = socket.create_server(("127.0.0.1", 0), backlog=64)  # accepted by this test only
    template = scale_set([nat_pool("echo", start, 7000, size=1)], capacity=1)
    target = BackendPattern(instances={0: f"127.0.0.1:{backend.getsockname()[1]}"})
    async with running(
        plan_of(template, where.frontend), settings(where, backends={"vmss": target})
    ) as rt:
        clients, served = [], []
        for index in range(30):
            clients.append(client := await connect((where.frontend, start)))
            if index == 1:  # after the first flow: the run's idle watcher has started
                before = _tasks()
            await client.send(b"%d\n" % index)
            accepted, _ = backend.accept()  # the kernel has it queued: lbsim connected
            served.append(trio.socket.from_stdlib_socket(accepted))
            assert await read_line(served[-1]) == b"%d\n" % index
        stats = listener_on(rt, start).stats
        assert stats.flows_active == 30
        assert _tasks() == before  # thirty relayed flows, not one task among them
        for sock in (*clients, *served):
            sock.close()
        await eventually(lambda: stats.flows_active == 0)
    backend.close()
    assert sum(stats.closes.values()) == 30
    assert set(stats.closes) <= {"client-closed", "backend-closed"}


async def test_a_rule_on_source_ports_is_judged_for_every_connection() -> None:
    where = place()
    start = free_ports(where.frontend, 1)
    deny_ports = {
        "name": "deny-some-ports",
        "properties": {
            "priority": 100,
            "direction": "Inbound",
            "access": "Deny",
            "protocol": "Tcp",
            "sourceAddressPrefix": "*",
            "sourcePortRange": "41000-41999",
            "destinationAddressPrefix": "*",
            "destinationPortRange": "*",
        },
    }
    template = scale_set(
        [nat_pool("echo", start, 7000, size=1)],
        capacity=1,
        nsg_rules=[deny_ports, allow("allow-all", 200, "*")],
    )
    client = where.client(9)
    async with running(plan_of(template, where.frontend), settings(where)) as rt:
        denied, allowed = (
            random.sample(range(41000, 42000), 2),
            random.sample(range(42000, 43000), 2),
        )
        for port in (denied[0], allowed[0], denied[1], allowed[1]):  # one source address
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            await sock.bind((client, port))
            await sock.connect((where.frontend, start))
            with sock:
                if 41000 <= port <= 41999:
                    assert await ending(sock, within=1) == "reset"
                else:
                    assert (await read_line(sock)).startswith(b"lbsim instance vmss/0 ")
        assert rt.nsg_decisions == {
            ("nsg", "subnet", "UserRule_deny-some-ports", "Deny"): 2,
            ("nsg", "subnet", "UserRule_allow-all", "Allow"): 2,
        }


async def test_without_source_port_rules_one_verdict_serves_a_source() -> None:
    where = place()
    start, the_plan = echo_plan(where)
    async with running(the_plan, settings(where)) as rt:
        for _ in range(3):
            with await connect((where.frontend, start), where.client(3)) as sock:
                assert (await read_line(sock)).startswith(b"lbsim instance vmss/0 ")
        assert len(rt.verdicts) == 1  # one remembered verdict for three connections
        assert sum(rt.nsg_decisions.values()) == 3  # each one still counted


async def test_out_of_descriptors_one_accept_retry_waits_however_many_connect() -> None:
    where = place()
    start, the_plan = echo_plan(where)
    async with running(the_plan, settings(where)) as runtime:
        reactor = getattr(runtime.engine, "reactor", None)
        assert reactor is not None
        clients = [trio.socket.socket() for _ in range(12)]
        with no_descriptors_left():
            for sock in clients:
                await sock.connect((where.frontend, start))  # each one wakes the listener
            await trio.sleep(0.25)  # several retries later
            assert reactor._nursery is not None
            retries = [t for t in reactor._nursery.child_tasks if "reaper" not in t.name]
            assert len(retries) == 1  # one retry, not one per connection
        for sock in clients:
            with sock:
                assert (await read_line(sock)).startswith(b"lbsim instance vmss/0 ")


async def test_an_ended_flow_is_freed_without_the_cyclic_collector(a_reactor: Reactor) -> None:
    """An ended flow leaves no reference cycle: with the collector off, its objects go as
    soon as the last reference does."""
    client_side, client = socket.socketpair()
    backend, peer = socket.socketpair()
    for sock in (client, backend):
        sock.setblocking(False)
    backend_side = trio.socket.from_stdlib_socket(peer)
    ended: list[weakref.ref[object]] = []

    def on_end(flow: object) -> None:
        ended.append(weakref.ref(flow))

    gc.disable()
    try:
        a_reactor.relay(client, backend, RuleStats().open_flow(0.0), on_end=on_end)
        client_side.sendall(b"ping")
        with trio.fail_after(3):
            assert await backend_side.recv(16) == b"ping"
        client_side.close()
        backend_side.close()
        await eventually(lambda: bool(ended))
        await trio.lowlevel.checkpoint()  # the reactor's round is over: nothing holds it
        assert ended[0]() is None
    finally:
        gc.enable()
