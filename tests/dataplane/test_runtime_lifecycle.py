"""The Runtime's life: stop and drain, bind failures, many flows at once, running out of
file descriptors."""

from __future__ import annotations

import gc
import hashlib
import random
import socket
import warnings
from collections import Counter

import pytest
import trio
from runtime_harness import (
    MiB,
    connect,
    echo_plan,
    ending,
    example_plan,
    free_ports,
    listener_on,
    nat_pool,
    no_descriptors_left,
    nsg_sources,
    place,
    plan_of,
    read_line,
    running,
    scale_set,
    settings,
    start_watched,
)
from waiting import eventually

from lbsim.dataplane.events import FlowEvent, as_events
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import DenyMode
from lbsim.errors import LbsimError

pytestmark = pytest.mark.every_engine  # once per engine (conftest.py)


# --- stop and drain ------------------------------------------------------------------------
async def test_stop_refuses_new_flows_and_drains_open_ones(nursery: trio.Nursery) -> None:
    where = place()
    start, the_plan = echo_plan(where)
    runtime, done = Runtime(the_plan, settings(where, drain_timeout_s=5)), trio.Event()
    await start_watched(nursery, runtime, done)
    with await connect((where.frontend, start)) as sock:
        await read_line(sock)
        runtime.stop()
        await trio.sleep(0.1)
        with pytest.raises(ConnectionRefusedError):
            await connect((where.frontend, start))
        await sock.send(b"still here\n")
        assert await read_line(sock) == b"still here\n"
        assert not done.is_set()
        closed = trio.current_time()
    with trio.fail_after(1):
        await done.wait()
    assert trio.current_time() - closed < 1.0


async def test_drain_ends_at_the_drain_timeout(nursery: trio.Nursery) -> None:
    where = place()
    start, the_plan = echo_plan(where)
    events: list[FlowEvent] = []
    runtime = Runtime(the_plan, settings(where, drain_timeout_s=0.4), as_events(events.append))
    done = trio.Event()
    await start_watched(nursery, runtime, done)
    with await connect((where.frontend, start)) as sock:
        await read_line(sock)
        stopped = trio.current_time()
        runtime.stop()
        with trio.fail_after(2):
            await done.wait()
        assert 0.3 < trio.current_time() - stopped < 2.0
        assert await ending(sock) == "reset"  # the flow was cut, both sides reset
    assert listener_on(runtime, start).stats.closes == {"cancelled": 1}
    closes = [e for e in events if e.kind == "close"]  # a cut flow is logged too
    assert [(e.reason, e.bytes_out) for e in closes] == [
        ("cancelled", len(b"lbsim instance vmss/0 at 10.0.0.4\n"))
    ]


async def test_stop_releases_connections_held_by_deny_mode_drop(nursery: trio.Nursery) -> None:
    where = place()
    the_plan = example_plan("vmss-linux-ssh", where.frontend, "web-lb/public")
    config = settings(
        where,
        sources=nsg_sources(where),
        deny_mode=DenyMode.DROP,
        deny_hold_s=30,
        drain_timeout_s=30,
    )
    runtime, done = Runtime(the_plan, config), trio.Event()
    await start_watched(nursery, runtime, done)
    with await connect((where.frontend, 50000), where.client(140)) as held:
        await trio.sleep(0.1)
        runtime.stop()
        with trio.fail_after(1):  # a denied connection is no flow to drain
            await done.wait()
        assert await ending(held) == "eof"


# --- bind failures -------------------------------------------------------------------------
async def test_a_taken_frontend_port_fails_with_frontend_bind_failed() -> None:
    where = place()
    start = free_ports(where.frontend, 3)
    the_plan = plan_of(scale_set([nat_pool("ssh", start, 22, size=3)]), where.frontend)
    with socket.socket() as squatter:
        squatter.bind((where.frontend, start + 1))
        squatter.listen()
        runtime = Runtime(the_plan, settings(where))
        with pytest.RaisesGroup(pytest.RaisesExc(LbsimError), flatten_subgroups=True) as caught:
            async with trio.open_nursery() as nursery:
                await nursery.start(runtime.run)
    error = caught.value.exceptions[0]
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, LbsimError)
    assert error.code == "FrontendBindFailed"
    assert f"{where.frontend}:{start + 1}" in error.message
    assert "in use" in error.message  # the OS's reason
    assert f"`ss -tanp 'sport = :{start + 1}'`" in error.message  # and how to see who holds it
    for port in (start, start + 2):  # the other listeners were closed again
        with socket.socket() as probe:
            probe.bind((where.frontend, port))
    for server in runtime.instances:  # and so were the built-in instances
        with socket.socket() as probe:
            probe.bind(server.address)


# --- many flows at once --------------------------------------------------------------------
async def test_many_concurrent_flows_are_byte_exact() -> None:
    where = place()
    start = free_ports(where.frontend, 3)
    the_plan = plan_of(scale_set([nat_pool("echo", start, 7000, size=3)]), where.frontend)
    rng = random.Random(7)
    count = 200
    sizes = [rng.randrange(4 * MiB if i % 10 == 0 else 2 * MiB) for i in range(count)]
    got: dict[int, tuple[bytes, int]] = {}

    async def client(index: int) -> None:
        instance = index % 3
        payload = random.Random(index).randbytes(sizes[index])
        with await connect((where.frontend, start + instance)) as sock:
            stream = trio.SocketStream(sock)
            greeting = await read_line(sock, within=15)  # 200 flows start at once
            assert greeting.startswith(f"lbsim instance vmss/{instance} ".encode())
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_send_then_eof, stream, payload)
                digest, total = hashlib.sha256(), 0
                while chunk := await stream.receive_some(1 << 18):
                    digest.update(chunk)
                    total += len(chunk)
            got[index] = (digest.digest(), total)
            assert got[index] == (hashlib.sha256(payload).digest(), len(payload))

    async with running(the_plan, settings(where)) as runtime:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for index in range(count):
                    nursery.start_soon(client, index)
        await eventually(lambda: all(lst.stats.flows_active == 0 for lst in runtime.listeners))
        stats = [lst.stats for lst in runtime.listeners]
    assert len(got) == count
    assert sum(s.flows_total for s in stats) == count
    assert sum(s.inbound.bytes for s in stats) == sum(sizes)
    greetings = sum(
        len(f"lbsim instance vmss/{i % 3} at 10.0.0.{4 + i % 3}\n") for i in range(count)
    )
    assert sum(s.outbound.bytes for s in stats) == sum(sizes) + greetings
    reasons: Counter[str] = Counter()
    for s in stats:
        reasons.update(s.closes)
    assert set(reasons) <= {"client-closed", "backend-closed"}
    assert sum(reasons.values()) == count


async def _send_then_eof(stream: trio.SocketStream, payload: bytes) -> None:
    view = memoryview(payload)
    for at in range(0, len(view), 1 << 18):
        await stream.send_all(view[at : at + (1 << 18)])
    await stream.send_eof()


# --- resource exhaustion -------------------------------------------------------------------
async def test_running_out_of_descriptors_delays_accepts_but_stops_nothing() -> None:
    where = place()
    start, the_plan = echo_plan(where)
    async with running(the_plan, settings(where)) as runtime:
        clients = [trio.socket.socket() for _ in range(3)]
        with no_descriptors_left():
            for sock in clients:
                await sock.connect((where.frontend, start))  # the kernel accepts: no new fd
            await trio.sleep(0.3)  # lbsim's accept fails meanwhile (EMFILE)
        for sock in clients:
            with sock:
                assert (await read_line(sock)).startswith(b"lbsim instance vmss/0 ")
        assert listener_on(runtime, start).stats.flows_total == 3


@pytest.mark.parametrize(
    ("spare", "outcome"),
    [(1, "reset"), (3, "served")],  # no socket for the backend; no pipe for the fast path
)
async def test_running_out_of_descriptors_mid_flow_ends_that_flow_only(
    spare: int, outcome: str
) -> None:
    where = place()
    start, the_plan = echo_plan(where)
    events: list[FlowEvent] = []
    async with running(the_plan, settings(where), events) as runtime:
        with trio.socket.socket() as sock:
            with no_descriptors_left(spare):
                await sock.connect((where.frontend, start))
                await trio.sleep(0.3)
            if outcome == "reset":
                assert await ending(sock) == "reset"
            else:
                assert (await read_line(sock)).startswith(b"lbsim instance vmss/0 ")
        with await connect((where.frontend, start)) as sock:  # and lbsim lives on
            assert (await read_line(sock)).startswith(b"lbsim instance vmss/0 ")
        stats = listener_on(runtime, start).stats
        assert stats.backend_failures == (1 if outcome == "reset" else 0)
    failed = [e.reason for e in events if e.kind == "unreachable"]
    # said as what it is: lbsim's shortage, not the backend's fault
    assert failed == (["out-of-descriptors"] if outcome == "reset" else [])


async def test_a_cancelled_runtime_closes_its_listeners_itself() -> None:
    """Cancelled rather than stopped (a second SIGINT): no listening socket is left for the
    garbage collector to close."""
    where = place()
    start, the_plan = echo_plan(where)
    runtime = Runtime(the_plan, settings(where))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(runtime.run)
                scope.cancel()
        gc.collect()
    leaked = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaked == []
    with pytest.raises(ConnectionRefusedError):
        await connect((where.frontend, start))  # nothing listens any more
