"""lbsim.dataplane.host: the reactor owns the thread and trio runs as its guest. The runtime
tests run this way too (conftest's "hosted" engine); these test what only it promises."""

from __future__ import annotations

import os
import socket
import threading
import types
from collections.abc import Callable, Iterator

import pytest
import trio
from runtime_harness import free_ports, nat_pool, place, plan_of, running, scale_set, settings

from lbsim.dataplane import closer, host, reactor
from lbsim.dataplane.engines import engine_for
from lbsim.dataplane.settings import BackendPattern, TcpEngine
from lbsim.errors import LbsimError


def test_run_gives_back_what_the_main_task_returns() -> None:
    async def main(x: int) -> int:
        await trio.sleep(0.01)  # a trio timer, while the reactor waits on its own set
        return x + 1

    assert host.run(main, 41) == 42


def test_run_raises_what_the_main_task_raises() -> None:
    async def main() -> None:
        await trio.lowlevel.checkpoint()
        raise LbsimError("SomeCode", "from inside")

    with pytest.raises(LbsimError, match="from inside"):
        host.run(main)


def test_the_hosted_reactor_is_the_runs_reactor() -> None:
    async def main() -> tuple[bool, bool]:
        mine = reactor.hosted()
        engine = engine_for(TcpEngine.REACTOR)
        return mine is not None and mine.hosted, getattr(engine, "reactor", None) is mine

    assert host.run(main) == (True, True)
    assert trio.run(_hosted_outside) is None


async def _hosted_outside() -> reactor.Reactor | None:
    return reactor.hosted()


class _Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.count = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.count += 1


def _round_trips(address: tuple[str, int], count: int) -> int:
    done = 0
    with socket.create_connection(address, timeout=5) as client:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(count):
            message = b"%06d" % i
            client.sendall(message)
            got = b""
            while len(got) < len(message):
                got += client.recv(64)
            done += got == message
    return done


def _exchanges_through_lbsim(
    protocol: str,
    backend: tuple[str, int],
    exchanges: Callable[[tuple[str, int], int], int],
) -> tuple[int, int]:
    """Under lbsim up's hosted loop, a NAT port (``protocol``) to ``backend``, and 200
    ``exchanges`` through it from a worker thread: how many came back right, and how many
    trio task steps ran meanwhile."""

    async def main() -> tuple[int, int]:
        where = place()
        start = free_ports(where.frontend, 1)
        pool = nat_pool("svc", start, 7000, protocol=protocol, size=1)
        target = BackendPattern(instances={0: "{}:{}".format(*backend)})
        config = settings(where, backends={"vmss": target})
        async with running(plan_of(scale_set([pool], capacity=1), where.frontend), config):
            steps = _Steps()
            trio.lowlevel.add_instrument(steps)
            done = await trio.to_thread.run_sync(exchanges, (where.frontend, start), 200)
            trio.lowlevel.remove_instrument(steps)
        return done, steps.count

    return host.run(main)


def test_relayed_bytes_never_wake_trio(echo_backend: tuple[str, int]) -> None:
    """200 round trips through a NAT port cost trio a handful of task steps (the worker
    thread that makes them): the reactor relays them without trio's scheduler."""

    done, steps = _exchanges_through_lbsim("Tcp", echo_backend, _round_trips)
    assert done == 200
    assert steps < 20, f"{steps} trio task steps for 200 round trips"


def _connections(address: tuple[str, int], count: int) -> int:
    """``count`` connections one after the other: one exchange each, closed by the client;
    how many of them saw their bytes back and then the end of the stream."""
    done = 0
    for i in range(count):
        with socket.create_connection(address, timeout=5) as client:
            client.sendall(b"%06d" % i)
            got = b""
            while len(got) < 6:
                got += client.recv(64)
            client.shutdown(socket.SHUT_WR)
            done += got == b"%06d" % i and client.recv(64) == b""
    return done


def test_ended_flows_are_closed_by_the_closer_thread(
    echo_backend: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each flow that ends quietly has both its sockets closed by lbsim's closing thread,
    not by the reactor's, and its client still sees the end of the stream."""
    threads: list[str] = []

    def close(fd: int) -> None:
        threads.append(threading.current_thread().name)
        os.close(fd)

    monkeypatch.setattr(closer, "os", types.SimpleNamespace(close=close))
    done, _ = _exchanges_through_lbsim("Tcp", echo_backend, _connections)
    assert done == 200
    assert len(threads) == 400
    assert set(threads) == {"lbsim closer"}


def _serving(server: socket.socket, serve_one: Callable[[], None]) -> Iterator[tuple[str, int]]:
    """``server``'s address while a thread of the test's own (it never wakes trio) calls
    ``serve_one`` again and again; then the thread is stopped and ``server`` closed."""
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                serve_one()
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[:2]
    stop.set()
    thread.join(timeout=5)
    server.close()


@pytest.fixture
def echo_backend() -> Iterator[tuple[str, int]]:
    """A blocking TCP echo server: one connection after another, each until its client's
    stream ends."""
    server = socket.create_server(("127.0.0.1", 0))

    def echo_one() -> None:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            while data := conn.recv(4096):
                conn.sendall(data)

    yield from _serving(server, echo_one)


@pytest.fixture
def udp_echo_backend() -> Iterator[tuple[str, int]]:
    """A blocking UDP echo server."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))

    def echo_one() -> None:
        data, peer = server.recvfrom(2048)
        server.sendto(data, peer)

    yield from _serving(server, echo_one)


def _udp_round_trips(address: tuple[str, int], count: int) -> int:
    done = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.settimeout(2)
        for i in range(count):
            message = b"%06d" % i
            client.sendto(message, address)
            done += client.recv(64) == message
    return done


def test_relayed_datagrams_never_wake_trio(udp_echo_backend: tuple[str, int]) -> None:
    """200 datagrams each way through a UDP NAT port: the reactor reads both sockets of the
    flow, so trio's scheduler stays out of it."""

    done, steps = _exchanges_through_lbsim("Udp", udp_echo_backend, _udp_round_trips)
    assert done == 200
    assert steps < 20, f"{steps} trio task steps for 200 datagrams each way"


class _Flow:
    """What the idle watcher needs of a flow."""

    def __init__(self, idle_timeout_s: float) -> None:
        self.last = trio.current_time()
        self.idle_timeout_s = idle_timeout_s
        self.done = False
        self.expired = trio.Event()

    def expire(self) -> None:
        self.expired.set()


class _WatchOnRead:
    """A reactor handler that gives the idle watcher a flow, outside any trio task."""

    queued = False

    def __init__(self, flow: _Flow) -> None:
        self.flow = flow

    def ready(self, events: int) -> None:
        hosted = reactor.hosted()
        assert hosted is not None
        hosted.reaper.watch(self.flow)

    def resume(self) -> None:
        pass


def test_a_flow_watched_from_a_handler_expires_on_time() -> None:
    """The idle watcher sleeps until a far deadline; a handler (host side, not a trio task)
    watches a flow due sooner: trio must wake for it, not at the far deadline."""

    async def main() -> bool:
        hosted = reactor.hosted()
        assert hosted is not None
        far = _Flow(idle_timeout_s=3600)
        hosted.reaper.watch(far)
        await trio.sleep(0.05)  # the watcher is asleep until the far deadline
        soon = _Flow(idle_timeout_s=0.2)
        a, b = socket.socketpair()
        with a, b:
            hosted.watch(a.fileno(), _WatchOnRead(soon))
            b.send(b"x")
            with trio.move_on_after(3):
                await soon.expired.wait()
            hosted.unwatch(a.fileno())
        hosted.reaper.forget(far)
        return soon.expired.is_set() and not far.expired.is_set()

    assert host.run(main)
