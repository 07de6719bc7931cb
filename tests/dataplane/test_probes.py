"""Health probes: the state machine, TCP and HTTP checks on loopback, and a load-balancing
rule that sends new flows only to backends its probe finds up."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest
import trio
from cryptography.hazmat.primitives import hashes

from lbsim.arm.jsontext import load_json_text
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import Backend, Plan, PlannedProbe
from lbsim.dataplane import probes, tls
from lbsim.dataplane.events import FlowEvent, as_events
from lbsim.dataplane.probes import ProbeState, check
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import BackendPattern, RuntimeSettings
from lbsim.model import ProbeProtocol

EXAMPLE = Path(__file__).parents[2] / "arm-examples" / "lb-rules-probe" / "azuredeploy.json"
BACKEND = Backend("id", "web_0", "10.0.0.4", "web", 0)


def state(
    protocol: ProbeProtocol = ProbeProtocol.TCP, threshold: int = 2, port: int = 1
) -> ProbeState:
    probe = PlannedProbe(
        "lb", "p", protocol, port, interval_s=1.0, threshold=threshold, request_path="/health"
    )
    return ProbeState(probe, BACKEND, ("127.0.0.1", port))


def test_first_result_sets_the_state() -> None:
    up, down = state(), state()
    up.record(True)
    down.record(False)
    assert (up.healthy, down.healthy) == (True, False)


def test_threshold_contrary_results_in_a_row_flip_the_state() -> None:
    s = state(threshold=3)
    s.record(True)
    for ok in (False, False, True, False, False):  # the success in between resets the streak
        s.record(ok)
        assert s.healthy
    s.record(False)
    assert not s.healthy
    assert (s.checks, s.failures) == (7, 5)


async def _http_server(status: bytes, task_status: trio.TaskStatus[int]) -> None:
    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some(4096)
            await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)


@pytest.fixture
async def servers(nursery: trio.Nursery) -> AsyncIterator[dict[str, int]]:
    ports = {s: await nursery.start(_http_server, s.encode()) for s in ("200 OK", "503 Busy")}
    yield ports
    nursery.cancel_scope.cancel()


async def test_http_probe_wants_200(servers: dict[str, int]) -> None:
    assert await check(state(ProbeProtocol.HTTP, port=servers["200 OK"]))
    assert not await check(state(ProbeProtocol.HTTP, port=servers["503 Busy"]))


async def _https_server(
    status: bytes, signature: tls.SignatureHash, task_status: trio.TaskStatus[int]
) -> None:
    """A TLS server (its certificate signed with ``signature``) answering ``status``."""
    context = tls.server_context(*tls.self_signed("backend", signature))

    async def answer(stream: trio.SocketStream) -> None:
        secure = trio.SSLStream(stream, context, server_side=True)
        try:
            await secure.receive_some(4096)
            await secure.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\n\r\n")
        except trio.BrokenResourceError:
            pass
        finally:
            await trio.aclose_forcefully(secure)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(answer, listeners)


async def test_https_probe_wants_200_inside_tls_from_a_strong_certificate(
    servers: dict[str, int], nursery: trio.Nursery
) -> None:
    sha256, sha224 = hashes.SHA256(), hashes.SHA224()
    good = await nursery.start(_https_server, b"200 OK", sha256)
    busy = await nursery.start(_https_server, b"503 Busy", sha256)
    weak = await nursery.start(_https_server, b"200 OK", sha224)
    assert await check(state(ProbeProtocol.HTTPS, port=good))
    assert not await check(state(ProbeProtocol.HTTPS, port=busy))
    assert not await check(state(ProbeProtocol.HTTPS, port=weak))  # 200, but signed with SHA-224
    assert not await check(state(ProbeProtocol.HTTPS, port=servers["200 OK"]))  # 200, no TLS
    nursery.cancel_scope.cancel()


async def test_tcp_probe_wants_a_completed_connection(servers: dict[str, int]) -> None:
    assert await check(state(ProbeProtocol.TCP, port=servers["503 Busy"]))
    closed = trio.socket.socket()
    await closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    assert not await check(state(ProbeProtocol.TCP, port=port))


async def test_probe_connections_never_leave_a_time_wait_that_blocks_a_listener() -> None:
    """A probe closes first, so its ephemeral source port waits in TIME_WAIT, and that port
    may be a NAT frontend port of lbsim's next run: the probe's socket has SO_REUSEADDR,
    which lets a listener with SO_REUSEADDR (as lbsim's) bind the port all the same."""
    server = trio.socket.socket()
    await server.bind(("127.0.0.1", 0))
    server.listen()
    stream = await probes._connect(server.getsockname(), 2.0)
    async with stream:
        assert stream.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    server.close()


def _plan(address: str, *, https: bool = False) -> Plan:
    """The web example with its frontend on ``address`` (each test its own); with
    ``https``, one load-balancing rule on port 443 whose probe is HTTPS."""
    text = EXAMPLE.read_bytes()
    options = LoadOptions(fill_missing=True)
    if https:
        text = text.replace(b'"protocol": "Http", "port"', b'"protocol": "Https", "port"')
        options = LoadOptions(fill_missing=True, cli_parameters={"ports": "[443]"})
    template = load_json_text(text, str(EXAMPLE))
    deployment = load_template(template, str(EXAMPLE), options)
    return plan(deployment, {"web-lb/fe": address})


async def _get(address: str, port: int) -> bytes:
    stream = await trio.open_tcp_stream(address, port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.move_on_after(2):
            return await stream.receive_some(4096)
    return b""


async def test_rule_sends_new_flows_only_to_backends_probed_up(
    servers: dict[str, int], nursery: trio.Nursery
) -> None:
    good, busy = servers["200 OK"], servers["503 Busy"]
    instances = {0: f"127.0.0.1:{good}", 1: f"127.0.0.1:{busy}", 2: f"127.0.0.1:{good}"}
    settings = RuntimeSettings(backends={"web": BackendPattern(instances=instances)})
    runtime: Runtime = await nursery.start(Runtime(_plan("127.0.0.91"), settings).run)
    health = {(s.probe.name, s.backend.label): s.healthy for s in runtime.probes}
    assert health[("probe-80", "web/1")] is False
    assert health[("probe-80", "web/0")]
    assert health[("probe-80", "web/2")]
    rule = next(x for x in runtime.listeners if x.entry.rule_name == "http-80")
    for port in range(40000, 40040):  # many client ports: the 5-tuple hash spreads them
        route = rule.pick(("127.0.0.1", port))
        assert route is not None
        assert route.backend.label != "web/1"
    assert (await _get("127.0.0.91", 80)).startswith(b"HTTP/1.1 200")
    runtime.stop()


async def test_no_backend_up_means_no_new_flow(
    servers: dict[str, int], nursery: trio.Nursery
) -> None:
    busy = f"127.0.0.1:{servers['503 Busy']}"
    settings = RuntimeSettings(backends={"web": BackendPattern(pattern=busy)})
    events: list[FlowEvent] = []
    runtime: Runtime = await nursery.start(
        Runtime(_plan("127.0.0.92"), settings, as_events(events.append)).run
    )
    rule = next(x for x in runtime.listeners if x.entry.rule_name == "http-80")
    assert rule.pick(("127.0.0.1", 40000)) is None
    with pytest.raises((trio.BrokenResourceError, ConnectionResetError)):
        await _get("127.0.0.92", 80)  # reset: no backend takes the flow
    assert rule.stats.backend_failures == 1
    (event,) = [e for e in events if e.kind == "unreachable"]
    assert (event.rule, event.reason, event.backend) == ("http-80", "no-healthy-backend", "-")
    runtime.stop()


async def test_built_in_instances_answer_an_https_probe_and_its_rule(nursery: trio.Nursery) -> None:
    """With no service of the user's, the built-in instances on the probed port speak HTTPS:
    the probe finds them up, and a client through the rule gets their JSON inside TLS."""
    runtime: Runtime = await nursery.start(
        Runtime(_plan("127.0.0.93", https=True), RuntimeSettings()).run
    )
    assert {s.probe.protocol for s in runtime.probes} == {ProbeProtocol.HTTPS}
    assert all(s.healthy for s in runtime.probes)
    plain = await trio.open_tcp_stream("127.0.0.93", 443)
    stream = trio.SSLStream(plain, tls.client_context(), https_compatible=True)
    async with stream:
        await stream.send_all(b"GET /through HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := await stream.receive_some(4096):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert b'"target": "/through"' in body
    assert b'"name": "web_' in body
    runtime.stop()


async def test_http_probe_names_the_backends_own_address_as_host(nursery: trio.Nursery) -> None:
    """As Azure's probe does: the Host header is the backend's private address (and the port
    where it is not the scheme's default), not the address lbsim reaches it at."""
    requests: list[bytes] = []

    async def record(task_status: trio.TaskStatus[int]) -> None:
        async def answer(stream: trio.SocketStream) -> None:
            async with stream:
                requests.append(await stream.receive_some(4096))
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        task_status.started(listeners[0].socket.getsockname()[1])
        await trio.serve_listeners(answer, listeners)

    port = await nursery.start(record)
    assert await check(state(ProbeProtocol.HTTP, port=port))
    assert b"\r\nHost: 10.0.0.4:%d\r\n" % port in requests[0]
    assert requests[0].startswith(b"GET /health HTTP/1.1\r\n")
    nursery.cancel_scope.cancel()


def test_the_host_header_leaves_out_the_default_port_and_brackets_ipv6() -> None:
    v6 = attrs.evolve(BACKEND, private_ip_address="fd00::4")
    for protocol, port, backend, expected in [
        (ProbeProtocol.HTTP, 80, BACKEND, "10.0.0.4"),
        (ProbeProtocol.HTTPS, 443, BACKEND, "10.0.0.4"),
        (ProbeProtocol.HTTPS, 8443, BACKEND, "10.0.0.4:8443"),
        (ProbeProtocol.HTTP, 8080, v6, "[fd00::4]:8080"),
    ]:
        probe = attrs.evolve(state(protocol).probe, port=port)
        default = 443 if protocol is ProbeProtocol.HTTPS else 80
        assert probes._host(ProbeState(probe, backend, ("127.0.0.1", port)), default) == expected
