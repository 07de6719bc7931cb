"""SOCKS5 (RFC 1928), the server's side, sans-IO: bytes in, events out, bytes to send back.

Written here rather than taken from a library: the SOCKS packages on PyPI are clients (or
servers tied to asyncio or to blocking sockets), and the server's side of the handshake is
small. Like h11, this module does no I/O: :class:`ServerConnection` takes the bytes a peer
sent (:meth:`~ServerConnection.receive_data`) and hands back what they mean
(:meth:`~ServerConnection.next_event`: a :class:`Greeting`, a :class:`Request`, or
:data:`NEED_DATA`), and makes the bytes to answer with. The endpoint (``socks.py``) owns the
socket.

The handshake is short and bounded (a greeting is at most 257 bytes, a request 262), so the
connection holds at most :data:`MAX_BUFFER` bytes until the request is complete: a peer that
sends more, or anything that is not SOCKS5, gets a :class:`SocksError`, the only exception
this module raises on input. Bytes after the request (a client that sends before the reply)
stay in :attr:`ServerConnection.trailing`, to be relayed.
"""

from __future__ import annotations

import ipaddress
import struct
from enum import Enum, IntEnum

import attrs

__all__ = [
    "MAX_BUFFER",
    "NEED_DATA",
    "NO_ACCEPTABLE_METHODS",
    "NO_AUTHENTICATION",
    "AddressType",
    "Command",
    "Greeting",
    "Reply",
    "Request",
    "ServerConnection",
    "SocksError",
]

VERSION = 5
NO_AUTHENTICATION = 0x00
NO_ACCEPTABLE_METHODS = 0xFF
MAX_BUFFER = 1024  # bytes held before the request is complete (a handshake takes <= 519)


class Command(IntEnum):
    CONNECT = 1
    BIND = 2
    UDP_ASSOCIATE = 3


class AddressType(IntEnum):
    IPV4 = 1
    DOMAIN = 3
    IPV6 = 4


class Reply(IntEnum):
    """The REP field of a reply (RFC 1928 section 6)."""

    SUCCEEDED = 0
    GENERAL_FAILURE = 1
    NOT_ALLOWED = 2  # connection not allowed by ruleset
    NETWORK_UNREACHABLE = 3
    HOST_UNREACHABLE = 4
    CONNECTION_REFUSED = 5
    TTL_EXPIRED = 6
    COMMAND_NOT_SUPPORTED = 7
    ADDRESS_TYPE_NOT_SUPPORTED = 8


class SocksError(Exception):
    """What the peer sent is not SOCKS5 as this server speaks it. ``reply`` is the code to
    answer with before closing, when the handshake has come as far as a request (None:
    close without a word)."""

    def __init__(self, message: str, reply: Reply | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reply = reply


@attrs.frozen
class Greeting:
    """The client's version identifier/method selection message: the methods it offers."""

    methods: bytes


@attrs.frozen
class Request:
    """A request: ``command`` as sent (an unknown one too), where to, and how it was named
    (``address`` is an IP address's text, or the domain name as sent)."""

    command: int
    address_type: AddressType
    address: str
    port: int


class _NeedData(Enum):
    NEED_DATA = "need data"


NEED_DATA = _NeedData.NEED_DATA
Event = Greeting | Request | _NeedData


class _State(Enum):
    GREETING = "greeting"  # waiting for the method selection message
    CHOOSING = "choosing"  # the server has to choose a method
    REQUEST = "request"  # waiting for the request
    REPLYING = "replying"  # the server has to answer the request
    DONE = "done"  # replied (or refused the methods): no more SOCKS bytes


class ServerConnection:
    """One client's handshake, from its greeting to the reply to its request."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._state = _State.GREETING

    @property
    def trailing(self) -> bytes:
        """Bytes received after the request (to be relayed once connected)."""
        return bytes(self._buffer) if self._state in (_State.REPLYING, _State.DONE) else b""

    def receive_data(self, data: bytes) -> None:
        """Take bytes from the peer; more than :data:`MAX_BUFFER` before the request is
        complete is an error."""
        self._buffer += data
        waiting = self._state in (_State.GREETING, _State.CHOOSING, _State.REQUEST)
        if waiting and len(self._buffer) > MAX_BUFFER:
            raise SocksError(f"more than {MAX_BUFFER} bytes before a complete request")

    def next_event(self) -> Event:
        """The next thing the peer said, or :data:`NEED_DATA`."""
        if self._state is _State.GREETING:
            return self._greeting()
        if self._state is _State.REQUEST:
            return self._request()
        return NEED_DATA

    def choose(self, methods: bytes) -> bytes:
        """The method selection reply to a greeting: no authentication if offered, else
        "no acceptable methods" (the connection is then done)."""
        if self._state is not _State.CHOOSING:
            raise RuntimeError(f"no greeting to answer ({self._state.value})")
        chosen = NO_AUTHENTICATION if NO_AUTHENTICATION in methods else NO_ACCEPTABLE_METHODS
        self._state = _State.REQUEST if chosen == NO_AUTHENTICATION else _State.DONE
        return bytes((VERSION, chosen))

    def reply(self, code: Reply, bound: tuple[str, int] = ("0.0.0.0", 0)) -> bytes:  # noqa: S104
        """The reply to the request (or to a request that could not be read, when the
        :class:`SocksError` carries a code), with the bound address."""
        self._state = _State.DONE
        return bytes((VERSION, code, 0)) + encode_address(*bound)

    def _greeting(self) -> Event:
        buffer = self._buffer
        if len(buffer) < 2:
            return NEED_DATA
        _version(buffer[0], "greeting")
        end = 2 + buffer[1]
        if len(buffer) < end:
            return NEED_DATA
        methods = bytes(buffer[2:end])
        del buffer[:end]
        self._state = _State.CHOOSING
        return Greeting(methods)

    def _request(self) -> Event:
        buffer = self._buffer
        if len(buffer) < 5:
            return NEED_DATA
        _version(buffer[0], "request")
        if buffer[2] != 0:
            raise SocksError(f"request: reserved byte is {buffer[2]}, not 0", Reply.GENERAL_FAILURE)
        parsed = _address(buffer)
        if parsed is None:
            return NEED_DATA
        kind, address, end = parsed
        request = Request(buffer[1], kind, address, int.from_bytes(buffer[end - 2 : end], "big"))
        del buffer[:end]
        self._state = _State.REPLYING
        return request


def _version(byte: int, what: str) -> None:
    if byte != VERSION:
        raise SocksError(f"{what}: version {byte}, not SOCKS5 (5)")


def _address(buffer: bytearray) -> tuple[AddressType, str, int] | None:
    """(type, address text, end of the port) of a request in ``buffer``, None if it is
    not all there yet (``buffer`` holds at least 5 bytes)."""
    try:
        kind = AddressType(buffer[3])
    except ValueError:
        message = f"request: address type {buffer[3]} is not IPv4 (1), a domain (3) or IPv6 (4)"
        raise SocksError(message, Reply.ADDRESS_TYPE_NOT_SUPPORTED) from None
    size = {AddressType.IPV4: 4, AddressType.IPV6: 16}.get(kind)
    start = 4 if size is not None else 5
    size = buffer[4] if size is None else size
    end = start + size + 2
    if len(buffer) < end:
        return None
    raw = bytes(buffer[start : start + size])
    if kind is AddressType.DOMAIN:
        return kind, _domain(raw), end
    return kind, str(ipaddress.ip_address(raw)), end


def _domain(raw: bytes) -> str:
    """A domain name as sent: ASCII (IDNA's form on the wire), at least one byte."""
    if not raw or not raw.isascii() or not raw.decode().isprintable():
        raise SocksError(
            f"request: domain name {raw!r} is not printable ASCII", Reply.GENERAL_FAILURE
        )
    return raw.decode()


def encode_address(host: str, port: int) -> bytes:
    """ATYP, address and port as a reply carries them (IPv4 or IPv6; anything else as the
    IPv4 address 0.0.0.0)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        address = ipaddress.IPv4Address(0)
    kind = AddressType.IPV4 if address.version == 4 else AddressType.IPV6
    return bytes((kind,)) + address.packed + struct.pack("!H", port)
