"""Faults in Toxiproxy's vocabulary, each measured over loopback through a running Runtime:
latency, bandwidth, reset_peer, limit_data, slicer, timeout, slow_close, down (held
connections, failing probes), UDP loss and duplicate; toxicity 0 never fires; a flow no
fault acts on keeps the engine's fast path."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from runtime_harness import (
    Place,
    connect,
    echo_plan,
    ending,
    example_plan,
    free_ports,
    listener_on,
    nat_pool,
    place,
    plan_of,
    read_line,
    running,
    scale_set,
    settings,
    udp_client,
)
from waiting import eventually

from lbsim.dataplane import probes
from lbsim.dataplane.engines import ReactorEngine
from lbsim.dataplane.faults import Faults, Stream, Target, make_fault
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import BackendPattern, TcpEngine
from lbsim.errors import LbsimError

Address = tuple[str, int]


@asynccontextmanager
async def echo(**overrides: Any) -> AsyncIterator[tuple[Runtime, Address]]:
    """A runtime with one NAT entry to one built-in echo instance (``vmss/0``)."""
    where = place()
    start, the_plan = echo_plan(where)
    async with running(the_plan, settings(where, **overrides)) as runtime:
        yield runtime, (where.frontend, start)


async def receive_exactly(sock: trio.socket.SocketType, n: int, within: float = 10.0) -> bytes:
    data = b""
    with trio.fail_after(within):
        while len(data) < n:
            chunk = await sock.recv(65536)
            assert chunk, f"closed after {len(data)} of {n} bytes"
            data += chunk
    return data


async def round_trip(sock: trio.socket.SocketType, payload: bytes = b"ping\n") -> float:
    started = trio.current_time()
    await sock.send(payload)
    assert await receive_exactly(sock, len(payload)) == payload
    return trio.current_time() - started


async def test_latency_delays_each_round_trip_within_bounds() -> None:
    async with echo() as (runtime, address):
        runtime.add_fault(make_fault("latency", attributes={"latency": 100}))
        with await connect(address) as sock:
            await read_line(sock)
            times = [await round_trip(sock) for _ in range(3)]
        assert all(0.1 <= t <= 5.0 for t in times), times  # at least the latency added


async def test_jitter_varies_the_delay_within_its_range() -> None:
    async with echo() as (runtime, address):
        fault = make_fault("latency", attributes={"latency": 60, "jitter": 40}, seed=7)
        runtime.add_fault(fault)
        with await connect(address) as sock:
            await read_line(sock)
            times = [await round_trip(sock) for _ in range(6)]
        assert all(0.02 <= t <= 5.0 for t in times), times  # 60 ms give or take 40, at least
        assert max(times) - min(times) > 0.01  # not one fixed delay


async def test_bandwidth_keeps_throughput_under_the_cap() -> None:
    async with echo() as (runtime, address):
        runtime.add_fault(make_fault("bandwidth", attributes={"rate": 100}))  # 100 KB/s
        with await connect(address) as sock:
            await read_line(sock)
            payload = b"x" * 40_000
            took = await round_trip(sock, payload)
        assert 0.35 <= took <= 3.0, took  # 40 KB at 100 KB/s: 0.4 s (the banner went first)


async def test_reset_peer_resets_the_client_after_its_timeout() -> None:
    async with echo() as (runtime, address):
        runtime.add_fault(make_fault("reset_peer", attributes={"timeout": 150}))
        with await connect(address) as sock:
            started = trio.current_time()
            await read_line(sock)
            assert await ending(sock) == "reset"
            assert 0.13 <= trio.current_time() - started <= 5.0
        stats = listener_on(runtime, address[1]).stats
        await eventually(lambda: stats.flows_active == 0)
        assert stats.closes == {"fault": 1}


async def test_limit_data_cuts_the_data_at_the_limit_then_closes() -> None:
    async with echo() as (runtime, address):
        with await connect(address) as sock:  # unfaulted: how long the banner is
            banner = await read_line(sock)
        runtime.add_fault(make_fault("limit_data", attributes={"bytes": len(banner) + 10}))
        with await connect(address) as sock:
            await sock.send(b"0123456789abcdefghij\n")
            got = b""
            with trio.fail_after(3):
                while chunk := await sock.recv(65536):
                    got += chunk
        assert got == banner + b"0123456789"


async def test_the_slicer_cuts_writes_into_slices() -> None:
    async with echo() as (runtime, address):
        fault = make_fault("slicer", attributes={"average_size": 10, "delay": 500})
        runtime.add_fault(fault)
        with await connect(address) as sock:
            banner = await read_line(sock)
            payload = b"y" * 200 + b"\n"
            await round_trip(sock, payload)
        outbound = listener_on(runtime, address[1]).stats.outbound
        await eventually(lambda: outbound.bytes == len(banner) + len(payload))
        assert outbound.packets >= (len(banner) + len(payload)) // 10  # writes of 10 bytes


async def test_timeout_stops_forwarding_then_closes() -> None:
    async with echo() as (runtime, address):
        fault = make_fault("timeout", stream="upstream", attributes={"timeout": 200})
        runtime.add_fault(fault)
        with await connect(address) as sock:
            started = trio.current_time()
            await read_line(sock)  # downstream flows
            await sock.send(b"never echoed\n")  # upstream is dropped
            assert await ending(sock) == "eof"  # nothing came back before the close
            assert 0.18 <= trio.current_time() - started <= 2.0


@pytest.mark.parametrize("timeout_ms", [0, 600_000])
async def test_timeout_holds_the_connection_until_the_fault_goes_then_closes_it(
    timeout_ms: int,
) -> None:
    """Bytes were dropped, so the stream cannot go on intact: removing the fault closes the
    connections it held (0: held until then; otherwise, before the timeout came)."""
    async with echo() as (runtime, address):
        timeout = {"timeout": timeout_ms}
        runtime.add_fault(make_fault("timeout", name="hang", stream="upstream", attributes=timeout))
        with await connect(address) as sock:
            await read_line(sock)
            await sock.send(b"dropped\n")
            with trio.move_on_after(0.4) as waited:
                await sock.recv(1)
            assert waited.cancelled_caught  # no byte, no close
            runtime.remove_fault("hang")
            assert await ending(sock) == "eof"
        stats = listener_on(runtime, address[1]).stats
        await eventually(lambda: stats.flows_active == 0)
        assert stats.closes == {"fault": 1}


async def test_slow_close_delays_the_end_of_stream() -> None:
    async with echo() as (runtime, address):
        runtime.add_fault(make_fault("slow_close", stream="upstream", attributes={"delay": 200}))
        with await connect(address) as sock:
            await read_line(sock)
            started = trio.current_time()
            sock.shutdown(socket.SHUT_WR)  # the echo instance closes once it sees the FIN
            assert await ending(sock) == "eof"
            assert 0.18 <= trio.current_time() - started <= 2.0


async def test_toxicity_zero_never_fires_and_the_flow_keeps_the_fast_path(
    tcp_engine: TcpEngine,
) -> None:
    async with echo() as (runtime, address):
        runtime.add_fault(make_fault("latency", toxicity=0, attributes={"latency": 1000}))
        runtime.add_fault(make_fault("reset_peer", target=Target(instance="vmss/9")))
        with await connect(address) as sock:
            await read_line(sock)
            for _ in range(20):
                assert await round_trip(sock) < 0.5  # not the second the latency would add
            assert runtime.open_flows == runtime.engine.open_flows == 1
            if tcp_engine is TcpEngine.REACTOR:
                assert isinstance(runtime.engine, ReactorEngine)
                assert len(runtime.engine.reactor.flows) == 1  # the reactor relays it


async def test_a_fault_acts_on_new_flows_only_and_goes_when_removed() -> None:
    async with echo() as (runtime, address):
        with await connect(address) as before:
            await read_line(before)
            runtime.add_fault(make_fault("latency", name="slow", attributes={"latency": 1000}))
            assert await round_trip(before) < 0.5  # started before the fault: unchanged
            with await connect(address) as during:
                await read_line(during)
                assert await round_trip(during) >= 1.0
            assert runtime.remove_fault("slow").name == "slow"
            with await connect(address) as after:
                await read_line(after)
                assert await round_trip(after) < 0.5
        with pytest.raises(LbsimError) as missing:
            runtime.remove_fault("slow")
        assert missing.value.code == "ResourceNotFound"


async def test_a_target_picks_its_frontend_port_rule_and_instance() -> None:
    where = place()
    start = free_ports(where.frontend, 2)
    the_plan = plan_of(
        scale_set([nat_pool("echo", start, 7000, size=2)], capacity=2), where.frontend
    )
    async with running(the_plan, settings(where)) as runtime:
        runtime.add_fault(make_fault("latency", attributes={"latency": 1000},
                                     target=Target(rule="echo", instance="VMSS/1")))  # fmt: skip
        for port, slow in ((start, False), (start + 1, True)):
            with await connect((where.frontend, port)) as sock:
                await read_line(sock)
                took = await round_trip(sock)
                assert took >= 1.0 if slow else took < 0.5, (port, took)


async def test_down_holds_new_connections_silently_until_the_fault_goes() -> None:
    async with echo() as (runtime, address):
        runtime.add_fault(make_fault("down", name="crash", target=Target(instance="vmss/0")))
        with await connect(address) as sock:  # the kernel completes lbsim's side of it
            with trio.move_on_after(0.4) as waited:
                await sock.recv(1)
            assert waited.cancelled_caught  # no banner, no FIN, no reset
            assert runtime.open_flows == 0
            runtime.remove_fault("crash")
            assert await ending(sock) == "reset"
        with await connect(address) as sock:  # the instance answers again
            assert (await read_line(sock)).endswith(b"\n")


async def test_down_fails_the_instances_probes() -> None:
    where = place()
    the_plan = example_plan("lb-rules-probe", where.frontend, "web-lb/fe")
    async with running(the_plan, settings(where)) as runtime:
        states = {s.backend.label: s for s in runtime.probes}
        assert all([await probes.check(s) for s in states.values()])
        runtime.add_fault(make_fault("down", target=Target(instance="web/1")))
        assert [label for label, s in states.items() if s.down] == ["web/1"]
        assert not await probes.check(states["web/1"])
        assert await probes.check(states["web/0"])


def _flows_through(seed: int, chunks_of: list[int]) -> list[list[float] | None]:
    """For new flows one after another through a latency fault (toxicity 0.5, jitter 40 ms),
    each flow's jitter for its chunks (``chunks_of[n]`` of them for the n-th), or None for
    a flow the fault spared: the draws a run of it makes, without its timing."""
    faults = Faults()
    fault = make_fault(
        "latency", toxicity=0.5, seed=seed, attributes={"latency": 100, "jitter": 40}
    )
    faults.add(fault)
    seen: list[list[float] | None] = []
    for chunks in chunks_of:
        toxics = faults.tcp(1, ("r",), "web/0")
        if toxics is None:
            seen.append(None)
            continue
        (toxic,) = toxics.downstream
        seen.append([toxic.rng.uniform(-40, 40) for _ in range(chunks)])
    return seen


def test_a_seed_gives_each_flow_the_same_decision_and_jitter_whatever_others_drew() -> None:
    quiet = _flows_through(7, [1] * 40)
    busy = _flows_through(7, [1 + 9 * (n % 3) for n in range(40)])  # more chunks, other timing
    assert [flow is None for flow in busy] == [flow is None for flow in quiet]
    assert 5 <= sum(flow is None for flow in quiet) <= 35  # toxicity 0.5 both ways
    for before, after in zip(quiet, busy, strict=True):
        if before is not None and after is not None:
            assert after[: len(before)] == before  # the n-th flow's first jitter, the same
    assert _flows_through(7, [3] * 40) == _flows_through(7, [3] * 40)
    assert _flows_through(8, [3] * 40) != _flows_through(7, [3] * 40)
    hit = [flow for flow in quiet if flow is not None]
    assert len({flow[0] for flow in hit}) == len(hit)  # each flow draws its own jitter


def _udp_plan(where: Place) -> tuple[int, Any]:
    start = free_ports(where.frontend, 1)
    pool = nat_pool("dns", start, 5300, protocol="Udp", size=1)
    return start, plan_of(scale_set([pool], capacity=1), where.frontend)


async def _through_udp_loss(seed: int, count: int = 2000) -> set[int]:
    """Which of ``count`` datagrams reach a backend of the test's own through a 30% loss."""
    where = place()
    start, the_plan = _udp_plan(where)
    backend = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await backend.bind(("127.0.0.1", 0))
    target = BackendPattern(instances={0: f"127.0.0.1:{backend.getsockname()[1]}"})
    seen: set[int] = set()

    async def receive() -> None:
        while True:
            seen.add(int(await backend.recv(64)))

    config = settings(where, backends={"vmss": target})
    async with running(the_plan, config) as runtime, trio.open_nursery() as nursery:
        nursery.start_soon(receive)
        loss = make_fault("loss", stream="upstream", toxicity=0.3, seed=seed)
        runtime.add_fault(loss)
        client = await udp_client()
        for index in range(count):
            await client.sendto(b"%d" % index, (where.frontend, start))
            if index % 50 == 49:
                await trio.sleep(0.002)  # no kernel buffer overflows: only the fault loses
        drawn = random.Random(seed)
        expected = {i for i in range(count) if not drawn.random() < 0.3}
        await eventually(lambda: len(seen) >= len(expected))
        nursery.cancel_scope.cancel()
    backend.close()
    client.close()
    assert seen == expected
    return seen


async def test_udp_loss_is_near_its_toxicity_and_repeats_with_its_seed() -> None:
    first = await _through_udp_loss(seed=42)
    assert 0.27 <= 1 - len(first) / 2000 <= 0.33
    assert await _through_udp_loss(seed=42) == first
    assert await _through_udp_loss(seed=43) != first


async def test_udp_duplicate_sends_each_reply_twice() -> None:
    where = place()
    start, the_plan = _udp_plan(where)
    async with running(the_plan, settings(where)) as runtime:
        runtime.add_fault(make_fault("duplicate"))  # downstream, toxicity 1
        client = await udp_client()
        with client:
            await client.sendto(b"hello", (where.frontend, start))
            with trio.fail_after(2):
                replies = [await client.recv(100), await client.recv(100)]
        assert replies == [b"vmss/0: hello"] * 2


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("options", "at", "message"),
    [
        ({"kind": "lag"}, "/type", "type: 'lag' is not one of"),
        ({"kind": "latency", "stream": "sideways"}, "/stream", "stream:"),
        ({"kind": "latency", "toxicity": 1.5}, "/toxicity", "toxicity: 1.5 is not between"),
        ({"kind": "latency", "toxicity": NAN}, "/toxicity", "toxicity: nan is not between"),
        ({"kind": "latency", "attributes": {"rate": 1}}, "/attributes/rate", "attributes.rate:"),
        ({"kind": "latency", "attributes": {"latency": -1}}, "/attributes/latency", "attributes"),
        ({"kind": "bandwidth"}, "/attributes/rate", "attributes.rate: bandwidth requires rate"),
        ({"kind": "slicer", "attributes": {"average_size": 0}}, "/attributes/average_size", ""),
        # Infinity and NaN are no delay, rate or size (int() of them raised OverflowError)
        ({"kind": "latency", "attributes": {"latency": INF}}, "/attributes/latency", "attrib"),
        ({"kind": "latency", "attributes": {"jitter": -INF}}, "/attributes/jitter", "attrib"),
        ({"kind": "bandwidth", "attributes": {"rate": NAN}}, "/attributes/rate", "attributes"),
        ({"kind": "limit_data", "attributes": {"bytes": 2**64}}, "/attributes/bytes", "attr"),
        ({"kind": "latency", "seed": INF}, "/seed", "seed: inf is not a whole number"),
        ({"kind": "latency", "seed": 1.5}, "/seed", "seed: 1.5 is not a whole number"),
        # an instance is down for every flow, datagram and probe, or for none
        ({"kind": "down", "toxicity": 0.5}, "/toxicity", "toxicity: down takes 0 or 1"),
        ({"kind": "down", "toxicity": 0.999}, "/toxicity", "toxicity: down takes 0 or 1"),
    ],
)
def test_faults_refuse_bad_values_naming_the_field(
    options: dict[str, Any], at: str, message: str
) -> None:
    with pytest.raises(LbsimError) as error:
        make_fault(**options)
    assert (error.value.code, str(error.value.at)) == ("InvalidFault", at)
    assert error.value.message.startswith(message), error.value.message


def test_a_down_fault_takes_toxicity_0_or_1() -> None:
    assert make_fault("down", toxicity=0).toxicity == 0
    assert make_fault("down", toxicity=1).toxicity == 1
    whole: Any = 3.0  # a JSON number may spell a whole seed so
    assert make_fault("latency", attributes={"latency": 2.0, "jitter": 0}, seed=whole).seed == 3


def test_a_fault_name_is_set_once() -> None:
    faults = Faults()
    faults.add(make_fault("latency"))
    with pytest.raises(LbsimError) as twice:
        faults.add(make_fault("latency"))
    assert twice.value.code == "FaultAlreadyExists"
    assert [f.name for f in faults] == ["latency_downstream"]
    assert faults.copies(1, ("r",), "web/0", Stream.UPSTREAM) == 1
