"""A SOCKS5 endpoint standing for a VM inside the virtual network (``--socks``).

A client's CONNECT to an instance's private address and port is judged by that instance's
NSGs with the endpoint's own private address as source (``socks_source``, else an address
of the virtual network that no NIC holds: :meth:`VirtualNetwork.default_source`), then
relayed to what serves the port. So ``curl --socks5 127.0.0.1:1080 http://10.0.0.5/`` and
``ssh -o ProxyCommand='nc -X 5 -x 127.0.0.1:1080 %h %p' azureuser@10.0.0.5`` reach the
instance as a VM of the same virtual network would.

No authentication, CONNECT only (BIND and UDP ASSOCIATE: reply 7). Replies say why a
connection is not made: 4 (host unreachable) for an address no instance has, a stopped
instance or a domain name (instances are reached by private address; an IP address written
as a name is taken), 2 (not allowed by ruleset) for an NSG's deny, 5 (connection refused)
when nothing listens. A peer that does not speak SOCKS5, or says nothing within
``connect_timeout_s``, ends its own connection: counted (``malformed``) and one notice.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections import Counter
from collections.abc import Callable

import trio

from lbsim.control.vnet import Outcome
from lbsim.dataplane.relay import relay_streams
from lbsim.dataplane.socksproto import (
    NEED_DATA,
    AddressType,
    Command,
    Greeting,
    Reply,
    Request,
    ServerConnection,
    SocksError,
)
from lbsim.dataplane.vnet import Refused, Throttle, VirtualNetwork, VnetError, listen

__all__ = ["SocksEndpoint"]

_CHUNK = 512  # bytes read per receive during the handshake (it fits in one)
MAX_HANDSHAKES = 256  # clients mid-handshake at once; beyond, new ones are closed (busy)


class _Malformed(Exception):
    """The peer ended or stalled the handshake; ``reply`` is the code owed, if any."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reply = reply


class SocksEndpoint:
    """Serves SOCKS5 CONNECT into the virtual network of one runtime; ``counts`` by outcome:
    ``connected``, ``denied``, ``unreachable``, ``refused``, ``unsupported`` (a command or
    method it does not take), ``failed`` (no source address), ``malformed``, ``busy`` (closed
    at once: ``max_handshakes`` clients were mid-handshake). Notices: at most one a second
    per kind."""

    def __init__(
        self,
        vnet: VirtualNetwork,
        notice: Callable[[str], None] | None = None,
        *,
        handshake_timeout_s: float | None = None,
        max_handshakes: int = MAX_HANDSHAKES,
    ) -> None:
        self.vnet = vnet
        self.counts: Counter[str] = Counter()
        self._notice = notice
        self._handshake_timeout_s = handshake_timeout_s
        self._max_handshakes = max_handshakes
        self._handshakes = 0
        self.tell = Throttle(self.notice)

    @property
    def handshakes(self) -> int:
        """Clients mid-handshake now."""
        return self._handshakes

    def notice(self, line: str) -> None:
        """One line for the operator (the runtime's, as ``lbsim up`` prints them)."""
        (self._notice or self.vnet.notice)(f"socks: {line}")

    @property
    def handshake_timeout_s(self) -> float:
        default = self.vnet.settings.connect_timeout_s
        return default if self._handshake_timeout_s is None else self._handshake_timeout_s

    async def serve(
        self,
        address: tuple[str, int],
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``address`` until cancelled; reports the bound (host, port)."""
        listeners = await listen(address, "SocksBindFailed", "the SOCKS endpoint")
        bound: tuple[str, int] = listeners[0].socket.getsockname()[:2]
        async with trio.open_nursery() as nursery:
            task_status.started(bound)
            await trio.serve_listeners(self.handle, listeners, handler_nursery=nursery)

    async def handle(self, stream: trio.SocketStream) -> None:
        """One client: handshake, judge, connect, relay. Whatever it sends ends only it."""
        connection = ServerConnection()
        try:
            request = await self._handshake_if_free(stream, connection)
            if request is not None:
                await self._connect(stream, connection, request)
        except _Malformed as error:
            self.counts["malformed"] += 1
            self.tell("malformed", f"{_peer(stream)}: {error.message}; connection closed")
            if error.reply is not None:
                await _send(stream, connection.reply(error.reply))
        finally:
            await trio.aclose_forcefully(stream)

    async def _handshake_if_free(
        self, stream: trio.SocketStream, connection: ServerConnection
    ) -> Request | None:
        """The handshake, unless ``max_handshakes`` are under way: then None (busy)."""
        if self._handshakes >= self._max_handshakes:
            self.counts["busy"] += 1
            self.tell("busy", f"{_peer(stream)}: {self._handshakes} handshakes under way; closed")
            return None
        self._handshakes += 1
        try:
            return await self._handshake(stream, connection)
        finally:
            self._handshakes -= 1

    async def _handshake(
        self, stream: trio.SocketStream, connection: ServerConnection
    ) -> Request | None:
        """The request, or None when the methods offered leave nothing to do."""
        with trio.move_on_after(self.handshake_timeout_s):
            while True:
                event = await _next_event(stream, connection)
                if isinstance(event, Request):
                    return event
                assert isinstance(event, Greeting)
                await _send(stream, connection.choose(event.methods))
                if not _accepts(event):
                    self.counts["unsupported"] += 1
                    self.tell(
                        "unsupported", f"{_peer(stream)}: offers no method without authentication"
                    )
                    return None
        raise _Malformed(f"no complete request within {self.handshake_timeout_s:g} s")

    async def _connect(
        self, stream: trio.SocketStream, connection: ServerConnection, request: Request
    ) -> None:
        code, backend = await self._open(request)
        if backend is None:
            await _send(stream, connection.reply(code))
            return
        source = self.vnet.default_source() or "0.0.0.0"  # noqa: S104 (an address to report)
        bound = (source, backend.socket.getsockname()[1])
        try:
            await stream.send_all(connection.reply(Reply.SUCCEEDED, bound))
            if connection.trailing:
                await backend.send_all(connection.trailing)
        except (trio.BrokenResourceError, OSError):
            await trio.aclose_forcefully(backend)
            return
        await relay_streams(stream, backend)

    async def _open(self, request: Request) -> tuple[Reply, trio.SocketStream | None]:
        """The reply code and, on success, the connection to the instance's server."""
        where = f"{request.address}:{request.port}"
        if request.command != Command.CONNECT:
            self.counts["unsupported"] += 1
            return Reply.COMMAND_NOT_SUPPORTED, None
        destination = _ip_of(request)
        if destination is None:
            self.counts["unreachable"] += 1
            self.tell("name", f"CONNECT {where}: a name; instances are reached by private address")
            return Reply.HOST_UNREACHABLE, None
        source = self.vnet.default_source()
        if source is None:
            self.counts["failed"] += 1
            self.tell("failed", f"CONNECT {where}: no source address (set socks_source)")
            return Reply.GENERAL_FAILURE, None
        return await self._reach(source, destination, request.port)

    async def _reach(
        self, source: str, destination: str, port: int
    ) -> tuple[Reply, trio.SocketStream | None]:
        try:
            backend, _ = await self.vnet.open(source, destination, port)
        except Refused as refused:
            self.counts["refused"] += 1
            self.tell("refused", f"CONNECT from {source}: {refused.message}")
            return Reply.CONNECTION_REFUSED, None
        except VnetError as error:
            denied = error.reach.outcome is Outcome.DENIED
            self.counts["denied" if denied else "unreachable"] += 1
            return (Reply.NOT_ALLOWED if denied else Reply.HOST_UNREACHABLE), None
        self.counts["connected"] += 1
        return Reply.SUCCEEDED, backend


async def _next_event(
    stream: trio.SocketStream, connection: ServerConnection
) -> Greeting | Request:
    """Read until the peer has said something whole; its end or its garbage is malformed."""
    while True:
        try:
            event = connection.next_event()
        except SocksError as error:
            raise _Malformed(error.message, error.reply) from None
        if event is not NEED_DATA:
            assert isinstance(event, Greeting | Request)
            return event
        try:
            data = await stream.receive_some(_CHUNK)
        except (trio.BrokenResourceError, OSError) as error:
            raise _Malformed(f"connection failed during the handshake ({error})") from None
        if not data:
            raise _Malformed("closed before a complete request")
        try:
            connection.receive_data(data)
        except SocksError as error:
            raise _Malformed(error.message) from None


def _accepts(greeting: Greeting) -> bool:
    return 0 in greeting.methods


def _ip_of(request: Request) -> str | None:
    """The destination as an IP address: a domain name only when it is one."""
    if request.address_type is not AddressType.DOMAIN:
        return request.address
    try:
        return str(ipaddress.ip_address(request.address.strip("[]")))
    except ValueError:
        return None


async def _send(stream: trio.SocketStream, data: bytes) -> None:
    """Send a reply; a peer that went away meanwhile is no error of ours."""
    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        await stream.send_all(data)


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "a client"
    return f"client {host}:{port}"
