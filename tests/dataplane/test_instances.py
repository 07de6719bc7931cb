"""Built-in instance servers: the SSH identification line, HTTP JSON, echo, UDP echo."""

from __future__ import annotations

import json
import re
import socket

import h11
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from lbsim.dataplane import tls
from lbsim.dataplane.instances import (
    InstanceIdentity,
    InstanceServer,
    ssh_banner,
    start_instance,
    start_tcp_instance,
    start_udp_instance,
)
from lbsim.dataplane.relay import reset_socket
from lbsim.model.common import ProbeProtocol, TransportProtocol

WEB_1 = InstanceIdentity("web", 1, "10.0.0.5")
# RFC 4253 4.2: SSH-protoversion-softwareversion [SP comments] CR LF, printable US-ASCII,
# no space or minus sign in the software version, 255 characters at most.
BANNER = re.compile(rb"SSH-2\.0-[!-,.-~]+( [ -~]*)?\r\n")


async def _connect(server: InstanceServer) -> trio.SocketStream:
    return await trio.open_tcp_stream(*server.address)


async def _read_line(stream: trio.SocketStream) -> bytes:
    line = b""
    while not line.endswith(b"\n"):
        chunk = await stream.receive_some(1)
        assert chunk, "closed before the end of the line"
        line += chunk
    return line


@given(
    scale_set=st.text(max_size=300),
    instance_id=st.integers(min_value=0, max_value=10**6),
    private_ip=st.text(max_size=50),
)
def test_ssh_banner_is_always_valid(scale_set: str, instance_id: int, private_ip: str) -> None:
    banner = ssh_banner(InstanceIdentity(scale_set, instance_id, private_ip))
    assert BANNER.fullmatch(banner)
    assert len(banner) <= 255


def test_ssh_banner_names_the_instance() -> None:
    banner = ssh_banner(InstanceIdentity("my-vmss", 3, "10.0.0.7"))
    assert banner == b"SSH-2.0-lbsim_my_vmss_3 lbsim instance my-vmss/3 at 10.0.0.7\r\n"


async def test_an_ssh_port_is_served_by_the_ssh_server_given(nursery: trio.Nursery) -> None:
    """The runtime's SSH host speaks SSH (tests/ssh); here, which connections it is given."""
    served: list[tuple[str, int]] = []

    async def ssh(stream: trio.SocketStream) -> None:
        served.append(stream.socket.getsockname()[:2])
        await stream.send_all(b"ssh\n")

    server = await start_tcp_instance(nursery, WEB_1, 22, host="127.0.0.2", port=0, ssh=ssh)
    assert server.address[0] == "127.0.0.2"
    assert server.port != 22
    stream = await _connect(server)
    assert await _read_line(stream) == b"ssh\n"
    await stream.aclose()
    assert served == [server.address]
    web = await start_tcp_instance(nursery, WEB_1, 22, port=0, probed=ProbeProtocol.HTTP, ssh=ssh)
    async with await _connect(web) as stream:
        request = h11.Request(method="GET", target="/", headers=[("Host", "x")])
        answers = await _http_exchange(stream, request)
    assert answers[0][0] == 200  # an HTTP probe's port answers HTTP, as any port
    assert len(served) == 1
    plain = await start_tcp_instance(nursery, WEB_1, 22, port=0)  # no SSH server given
    stream = await _connect(plain)
    assert await _read_line(stream) == b"lbsim instance web/1 at 10.0.0.5\n"
    await stream.aclose()


async def _http_exchange(
    stream: trio.abc.Stream, *requests: h11.Request
) -> list[tuple[int, bytes]]:
    client = h11.Connection(h11.CLIENT)
    answers = []
    for request in requests:
        await stream.send_all(
            (client.send(request) or b"") + (client.send(h11.EndOfMessage()) or b"")
        )
        status, body = 0, b""
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(bytes(await stream.receive_some(65536)))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        answers.append((status, body))
        client.start_next_cycle()
    return answers


@pytest.mark.parametrize("backend_port", [80, 8080])
async def test_http_ports_answer_json_naming_the_instance(
    nursery: trio.Nursery, backend_port: int
) -> None:
    server = await start_tcp_instance(nursery, WEB_1, backend_port, port=0)
    stream = await _connect(server)
    host = [("Host", "example")]
    answers = await _http_exchange(
        stream,
        h11.Request(method="GET", target="/hello?x=1", headers=host),
        h11.Request(method="HEAD", target="/", headers=host),
        h11.Request(method="GET", target="/again", headers=host),
    )
    client_host, client_port = stream.socket.getsockname()[:2]
    first = json.loads(answers[0][1])
    assert answers[0][0] == 200
    assert first == {
        "backend": "web/1",
        "scaleSet": "web",
        "instanceId": 1,
        "name": "web_1",
        "privateIp": "10.0.0.5",
        "backendPort": backend_port,
        "clientAddress": client_host,
        "clientPort": client_port,
        "method": "GET",
        "target": "/hello?x=1",
    }
    assert answers[1] == (200, b"")  # HEAD: headers only
    assert json.loads(answers[2][1])["target"] == "/again"  # kept alive
    await stream.aclose()


async def test_https_ports_answer_the_same_json_inside_tls(nursery: trio.Nursery) -> None:
    """Port 443, and any port an HTTPS probe checks, speak HTTP inside TLS, with a
    certificate an HTTPS probe accepts."""
    servers = [
        await start_tcp_instance(nursery, WEB_1, 443, port=0),
        await start_tcp_instance(nursery, WEB_1, 9443, port=0, probed=ProbeProtocol.HTTPS),
    ]
    for server in servers:
        secure = trio.SSLStream(await _connect(server), tls.client_context())
        request = h11.Request(method="GET", target="/secure", headers=[("Host", "example")])
        ((status, body),) = await _http_exchange(secure, request)
        assert status == 200
        assert json.loads(body)["name"] == "web_1"
        assert json.loads(body)["backendPort"] == server.backend_port
        assert tls.strong_signature(secure.getpeercert(binary_form=True))
        await secure.aclose()


async def test_an_https_instance_ends_its_connection_with_tls_close_notify(
    nursery: trio.Nursery,
) -> None:
    """A strict TLS client (one that takes an end without close_notify as an attack) reads
    the whole answer and a clean end of stream."""
    server = await start_tcp_instance(nursery, WEB_1, 443, port=0)
    secure = trio.SSLStream(await _connect(server), tls.client_context(), https_compatible=False)
    await secure.send_all(b"GET /bye HTTP/1.1\r\nHost: example\r\nConnection: close\r\n\r\n")
    reply = b""
    with trio.fail_after(5):
        while chunk := await secure.receive_some(65536):  # a ragged end would raise here
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200")
    assert b'"target": "/bye"' in reply
    await secure.aclose()


async def test_a_port_is_spoken_to_as_its_probe_speaks(nursery: trio.Nursery) -> None:
    """Port 5000 names the instance and echoes, unless an HTTP probe checks it: then it
    answers HTTP; a TCP probe changes nothing."""
    probed = await start_tcp_instance(nursery, WEB_1, 5000, port=0, probed=ProbeProtocol.HTTP)
    stream = await _connect(probed)
    request = h11.Request(method="GET", target="/health", headers=[("Host", "example")])
    ((status, body),) = await _http_exchange(stream, request)
    assert (status, json.loads(body)["target"]) == (200, "/health")
    await stream.aclose()
    for speaks in (None, ProbeProtocol.TCP):
        echo = await start_tcp_instance(nursery, WEB_1, 5000, port=0, probed=speaks)
        stream = await _connect(echo)
        assert (await _read_line(stream)).startswith(b"lbsim instance web/1 ")
        await stream.aclose()


async def test_http_garbage_gets_400_and_the_server_lives_on(nursery: trio.Nursery) -> None:
    server = await start_tcp_instance(nursery, WEB_1, 80, port=0)
    stream = await _connect(server)
    await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
    response = b""
    with trio.fail_after(2):
        while chunk := await stream.receive_some(4096):
            response += chunk
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b'"error": "bad request"' in response
    await stream.aclose()
    again = await _connect(server)
    ((status, body),) = await _http_exchange(
        again, h11.Request(method="GET", target="/", headers=[("Host", "x")])
    )
    assert status == 200
    assert json.loads(body)["name"] == "web_1"
    await again.aclose()


async def test_other_ports_name_the_instance_then_echo(nursery: trio.Nursery) -> None:
    server = await start_tcp_instance(nursery, WEB_1, 3389, port=0)
    stream = await _connect(server)
    assert await _read_line(stream) == b"lbsim instance web/1 at 10.0.0.5\n"
    payload = bytes(range(256)) * 1000
    async with trio.open_nursery() as inner:
        inner.start_soon(lambda: _send_then_eof(stream, payload))
        echoed = b""
        while chunk := await stream.receive_some(65536):
            echoed += chunk
    assert echoed == payload
    await stream.aclose()


async def _send_then_eof(stream: trio.SocketStream, payload: bytes) -> None:
    await stream.send_all(payload)
    await stream.send_eof()


async def test_a_client_that_resets_does_not_stop_the_server(nursery: trio.Nursery) -> None:
    server = await start_tcp_instance(nursery, WEB_1, 7000, port=0)
    rude = trio.socket.socket()
    await rude.connect(server.address)
    await rude.send(b"x" * 1000)
    reset_socket(rude)
    polite = await _connect(server)
    assert await _read_line(polite) == b"lbsim instance web/1 at 10.0.0.5\n"
    await polite.send_all(b"still here")
    assert await polite.receive_some(100) == b"still here"
    await polite.aclose()


async def test_udp_echo_prefixes_the_instance_name(nursery: trio.Nursery) -> None:
    server = await start_udp_instance(nursery, WEB_1, 53, port=0)
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    for message in (b"first", b"", b"third"):
        await sock.sendto(message, server.address)
        with trio.fail_after(2):
            assert await sock.recv(65536) == b"web/1: " + message
    sock.close()


async def test_all_starts_tcp_and_udp_on_one_port(nursery: trio.Nursery) -> None:
    servers = await start_instance(
        nursery, InstanceIdentity("dns", 0), TransportProtocol.ALL, 5353, port=0
    )
    assert [s.protocol for s in servers] == [TransportProtocol.TCP, TransportProtocol.UDP]
    assert servers[0].port == servers[1].port
    assert {s.backend_port for s in servers} == {5353}
    stream = await _connect(servers[0])
    assert await _read_line(stream) == b"lbsim instance dns/0\n"
    await stream.aclose()


JUMPBOX = InstanceIdentity("jumpbox", None, "10.0.0.4")


def test_a_standalone_vm_is_named_by_its_vm_name() -> None:
    assert (JUMPBOX.name, JUMPBOX.label, JUMPBOX.scale_set) == ("jumpbox", "jumpbox", None)
    assert (WEB_1.name, WEB_1.label, WEB_1.scale_set) == ("web_1", "web/1", "web")
    assert ssh_banner(JUMPBOX) == b"SSH-2.0-lbsim_jumpbox lbsim instance jumpbox at 10.0.0.4\r\n"


async def test_a_standalone_vm_answers_with_its_vm_name(nursery: trio.Nursery) -> None:
    http = await start_tcp_instance(nursery, JUMPBOX, 80, port=0)
    stream = await _connect(http)
    request = h11.Request(method="GET", target="/", headers=[("Host", "x")])
    ((status, body),) = await _http_exchange(stream, request)
    await stream.aclose()
    described = json.loads(body)
    assert status == 200
    assert {k: described[k] for k in ("backend", "scaleSet", "instanceId", "name")} == {
        "backend": "jumpbox",
        "scaleSet": None,
        "instanceId": None,
        "name": "jumpbox",
    }
    echo = await start_tcp_instance(nursery, JUMPBOX, 3389, port=0)
    stream = await _connect(echo)
    assert await _read_line(stream) == b"lbsim instance jumpbox at 10.0.0.4\n"
    await stream.aclose()
