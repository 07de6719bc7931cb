"""Built-in instance servers: small servers that stand in for scale-set VMs in a demo.

One server per (instance, backend port, transport). Each says which instance answered:

- an SSH port (22, and any port ``SshSettings.ports`` names), when the caller gives an
  ``ssh`` server (the runtime's :class:`~lbsim.dataplane.ssh.SshHost`): real SSH, whose
  identification line (:func:`ssh_banner`) names the instance, so ``ssh -v`` shows it;
- TCP ports 80 and 8080, and any port an HTTP health probe checks: HTTP/1.1 (parsed by
  h11), every request answered with a JSON body naming the instance, its private IP and
  the connection's client address;
- TCP port 443, and any port an HTTPS health probe checks: the same inside TLS, with a
  self-signed certificate (:mod:`lbsim.dataplane.tls`);
- any other TCP port: one line naming the instance, then every byte echoed back;
- UDP: every datagram echoed back, prefixed with the instance (``web/1: ``).

Servers run in a nursery the caller gives, on the address and port the caller gives (port
0 picks a free one: the bound address is returned). A misbehaving client ends its own
connection only.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Awaitable, Callable, Mapping
from functools import partial

import attrs
import h11
import trio

from lbsim.dataplane import tls
from lbsim.model.common import ProbeProtocol, TransportProtocol

__all__ = [
    "HTTPS_PORTS",
    "HTTP_PORTS",
    "SSH_PORT",
    "InstanceIdentity",
    "InstanceServer",
    "ssh_banner",
    "start_instance",
    "start_tcp_instance",
    "start_udp_instance",
]

SSH_PORT = 22
HTTP_PORTS = frozenset({80, 8080})
HTTPS_PORTS = frozenset({443})
_TLS_CLOSE_S = 1.0  # how long a TLS close waits for the client to take its last bytes
_MAX_BANNER = 255  # RFC 4253 4.2: the identification line, CR LF included


@attrs.frozen
class InstanceIdentity:
    """Which instance a built-in server stands in for: a scale-set instance (``resource``
    is the scale set's name and ``instance_id`` its instance id) or a standalone VM
    (``resource`` is the VM's name, or the NIC's when no VM uses it; no instance id)."""

    resource: str
    instance_id: int | None = None
    private_ip: str = ""

    @property
    def scale_set(self) -> str | None:
        """The scale set's name; None for a standalone VM."""
        return self.resource if self.instance_id is not None else None

    @property
    def name(self) -> str:
        """The instance's name as Azure shows it: ``<scale set>_<instance id>`` for a
        scale-set instance (its ``name`` in Azure's API), the VM's name otherwise."""
        if self.instance_id is None:
            return self.resource
        return f"{self.resource}_{self.instance_id}"

    @property
    def label(self) -> str:
        """The instance as lbsim spells it everywhere else (NAT table, ``--instance``, flow
        logs, JSON ``backend``): ``<scale set>/<instance id>``, or the VM's name."""
        if self.instance_id is None:
            return self.resource
        return f"{self.resource}/{self.instance_id}"


@attrs.frozen
class InstanceServer:
    """A running built-in server and the address it is bound to."""

    identity: InstanceIdentity
    protocol: TransportProtocol
    backend_port: int
    address: tuple[str, int]

    @property
    def port(self) -> int:
        """The port actually bound (differs from ``backend_port`` when started on port 0)."""
        return self.address[1]


def _printable(text: str, *, spaces: bool) -> str:
    """``text`` with every character outside printable ASCII (and, unless ``spaces``, every
    space or minus sign) replaced by an underscore."""
    low = 32 if spaces else 33
    return "".join(c if low <= ord(c) <= 126 and (spaces or c != "-") else "_" for c in text)


def ssh_banner(identity: InstanceIdentity) -> bytes:
    """An RFC 4253 identification line: ``SSH-2.0-lbsim_<name> <comment>\\r\\n``, printable
    ASCII, no space or minus in the software version, at most 255 bytes.

    The software version keeps the name Azure gives the instance (``lbsim_web_1``,
    ``lbsim_jumpbox``), where every other lbsim text says ``web/1``: it is the one token
    ``ssh -v`` shows of the server, scripts and users grep for it, and Azure's own name is
    the one a user sees in the portal. The comment spells the instance as the rest of lbsim
    does (``lbsim instance web/1 at 10.0.0.5``)."""
    version = _printable(f"lbsim_{identity.name}", spaces=False)
    line = f"SSH-2.0-{version} {_printable(_greeting(identity), spaces=True)}"
    return line[: _MAX_BANNER - 2].encode("ascii") + b"\r\n"


def _greeting(identity: InstanceIdentity) -> str:
    """``lbsim instance web/1 at 10.0.0.5``: which instance answered, and its address."""
    where = f" at {identity.private_ip}" if identity.private_ip else ""
    return f"lbsim instance {identity.label}{where}"


def _peer(stream: trio.SocketStream) -> tuple[str, int]:
    """The client address of a connection."""
    host, port = stream.socket.getpeername()[:2]
    return host, port


async def _echo(identity: InstanceIdentity, backend_port: int, stream: trio.SocketStream) -> None:
    """Send one line naming the instance, then echo until the peer's end of stream."""
    await stream.send_all(f"{_greeting(identity)}\n".encode())
    while data := await stream.receive_some(65536):
        await stream.send_all(data)
    await stream.send_eof()


async def _http(identity: InstanceIdentity, backend_port: int, stream: trio.SocketStream) -> None:
    """Answer HTTP/1.1 requests on one connection until either side closes it."""
    await _serve_http(identity, backend_port, stream, _peer(stream))


async def _https(identity: InstanceIdentity, backend_port: int, stream: trio.SocketStream) -> None:
    """HTTP/1.1 inside TLS (a client that fails the handshake ends its own connection)."""
    client = _peer(stream)
    context = tls.instance_context()
    # (not https_compatible: that would leave out the close_notify that ends the stream; a
    # client that just drops the connection ends its own connection, as any broken client)
    secure = trio.SSLStream(stream, context, server_side=True)
    try:
        await _serve_http(identity, backend_port, secure, client)
        with trio.move_on_after(_TLS_CLOSE_S):
            await secure.aclose()  # with TLS's close_notify
    finally:
        await trio.aclose_forcefully(secure)


async def _serve_http(
    identity: InstanceIdentity,
    backend_port: int,
    stream: trio.abc.Stream,
    client: tuple[str, int],
) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            request = await _read_request(conn, stream)
            if request is None:
                return
            body = _describe(identity, backend_port, client, request)
            await _respond(conn, stream, request, 200, body)
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()
    except h11.RemoteProtocolError as exc:
        if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            error = {"error": "bad request", "detail": str(exc)}
            await _respond(conn, stream, None, exc.error_status_hint, error)


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream) -> h11.Request | None:
    """The next request, its body read and dropped; None once the client is gone."""
    request: h11.Request | None = None
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


def _describe(
    identity: InstanceIdentity,
    backend_port: int,
    client: tuple[str, int],
    request: h11.Request,
) -> dict[str, object]:
    """The JSON body that names the instance that answered ``request``."""
    return {
        "backend": identity.label,
        "scaleSet": identity.scale_set,
        "instanceId": identity.instance_id,
        "name": identity.name,
        "privateIp": identity.private_ip,
        "backendPort": backend_port,
        "clientAddress": client[0],
        "clientPort": client[1],
        "method": request.method.decode("ascii", "replace"),
        "target": request.target.decode("ascii", "replace"),
    }


async def _respond(
    conn: h11.Connection,
    stream: trio.abc.Stream,
    request: h11.Request | None,
    status: int,
    body: Mapping[str, object],
) -> None:
    """Send one JSON response (no body bytes for HEAD, as HTTP requires)."""
    data = json.dumps(body, indent=2).encode() + b"\n"
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(data))),
        ("Server", "lbsim"),
    ]
    out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    if request is None or request.method != b"HEAD":
        out += conn.send(h11.Data(data=data)) or b""
    out += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(out)


Handler = Callable[[InstanceIdentity, int, trio.SocketStream], Awaitable[None]]
SshServe = Callable[[trio.SocketStream], Awaitable[None]]  # speaks SSH on one connection


def _handler_for(
    backend_port: int, probed: ProbeProtocol | None = None, ssh: SshServe | None = None
) -> Handler:
    """Which behaviour a TCP backend port gets: what its health probe speaks, else SSH where
    the caller serves it, else what the port's number usually means."""
    if probed is ProbeProtocol.HTTPS:
        return _https
    if probed is ProbeProtocol.HTTP:
        return _http
    if ssh is not None:
        return partial(_ssh, ssh)
    if backend_port in HTTPS_PORTS:
        return _https
    if backend_port in HTTP_PORTS:
        return _http
    return _echo


async def _ssh(
    ssh: SshServe, identity: InstanceIdentity, backend_port: int, stream: trio.SocketStream
) -> None:
    await ssh(stream)


async def _serve_connection(
    handler: Handler, identity: InstanceIdentity, backend_port: int, stream: trio.SocketStream
) -> None:
    """Run one connection; a peer that breaks it ends only this connection."""
    try:
        await handler(identity, backend_port, stream)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def start_tcp_instance(
    nursery: trio.Nursery,
    identity: InstanceIdentity,
    backend_port: int,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    probed: ProbeProtocol | None = None,
    ssh: SshServe | None = None,
) -> InstanceServer:
    """Start a TCP instance server in ``nursery`` on (host, port), port defaulting to
    ``backend_port``; returns once it listens. The protocol of the health probe that checks
    the port (``probed``), else ``ssh`` (given for an SSH port), else ``backend_port``,
    picks the behaviour."""
    listeners = await trio.open_tcp_listeners(backend_port if port is None else port, host=host)
    behaviour = _handler_for(backend_port, probed, ssh)
    if behaviour is _https:
        tls.instance_context()  # made now: the first client should not wait for the key
    handler = partial(_serve_connection, behaviour, identity, backend_port)
    await nursery.start(trio.serve_listeners, handler, listeners)
    host_bound, port_bound = listeners[0].socket.getsockname()[:2]
    return InstanceServer(identity, TransportProtocol.TCP, backend_port, (host_bound, port_bound))


async def _udp_echo(
    identity: InstanceIdentity,
    address: tuple[str, int],
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Echo each datagram prefixed with ``<name>: `` until cancelled; reports the address."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
        await sock.bind(address)
        host, port = sock.getsockname()[:2]
        task_status.started((host, port))
        prefix = f"{identity.label}: ".encode()
        while True:
            data, client = await sock.recvfrom(65536)
            with contextlib.suppress(OSError):  # too long with the prefix, or client gone
                await sock.sendto(prefix + data, client)


async def start_udp_instance(
    nursery: trio.Nursery,
    identity: InstanceIdentity,
    backend_port: int,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> InstanceServer:
    """Start a UDP echo instance server in ``nursery``; returns once it is bound."""
    address = (host, backend_port if port is None else port)
    bound: tuple[str, int] = await nursery.start(_udp_echo, identity, address)
    return InstanceServer(identity, TransportProtocol.UDP, backend_port, bound)


async def start_instance(
    nursery: trio.Nursery,
    identity: InstanceIdentity,
    protocol: TransportProtocol,
    backend_port: int,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    probed: ProbeProtocol | None = None,
    ssh: SshServe | None = None,
) -> list[InstanceServer]:
    """Start a server for each transport of ``protocol`` (two for ``All``, both on the
    same port number: with port 0, the one the first server was given); ``probed`` and
    ``ssh`` as for :func:`start_tcp_instance`."""
    servers: list[InstanceServer] = []
    for transport in protocol.transports():
        if transport is TransportProtocol.UDP:
            server = await start_udp_instance(nursery, identity, backend_port, host=host, port=port)
        else:
            server = await start_tcp_instance(
                nursery, identity, backend_port, host=host, port=port, probed=probed, ssh=ssh
            )
        servers.append(server)
        port = servers[0].port
    return servers
