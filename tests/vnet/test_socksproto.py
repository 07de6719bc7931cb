"""The SOCKS5 parser (sans-IO): greetings, requests of each address type, every reply code,
input in any slicing, malformed input, and arbitrary bytes (Hypothesis)."""

from __future__ import annotations

import contextlib
import socket
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lbsim.dataplane.socksproto import (
    MAX_BUFFER,
    NEED_DATA,
    AddressType,
    Greeting,
    Reply,
    Request,
    ServerConnection,
    SocksError,
    encode_address,
)

GREETING = b"\x05\x01\x00"
CONNECT_V4 = b"\x05\x01\x00\x01" + socket.inet_aton("10.0.0.5") + struct.pack("!H", 80)
CONNECT_V6 = b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, "fd00::5") + b"\x00\x16"
CONNECT_NAME = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb"


def negotiated() -> ServerConnection:
    """A connection past its greeting, no authentication chosen."""
    connection = ServerConnection()
    connection.receive_data(GREETING)
    event = connection.next_event()
    assert event == Greeting(b"\x00")
    assert connection.choose(b"\x00") == b"\x05\x00"
    return connection


def request_of(data: bytes) -> Request:
    connection = negotiated()
    connection.receive_data(data)
    event = connection.next_event()
    assert isinstance(event, Request)
    return event


def test_a_greeting_offering_no_authentication_is_answered_with_method_0() -> None:
    connection = ServerConnection()
    connection.receive_data(b"\x05\x03\x02\x01\x00")
    event = connection.next_event()
    assert event == Greeting(b"\x02\x01\x00")
    assert connection.choose(b"\x02\x01\x00") == b"\x05\x00"
    assert connection.next_event() is NEED_DATA


@pytest.mark.parametrize("methods", [b"\x02", b"\x01\x02", b""])
def test_a_greeting_without_method_0_is_answered_ff_and_ends(methods: bytes) -> None:
    connection = ServerConnection()
    connection.receive_data(bytes((5, len(methods))) + methods)
    assert connection.next_event() == Greeting(methods)
    assert connection.choose(methods) == b"\x05\xff"
    connection.receive_data(CONNECT_V4)  # nothing more is read as SOCKS
    assert connection.next_event() is NEED_DATA


@pytest.mark.parametrize(
    ("data", "kind", "address", "port"),
    [
        (CONNECT_V4, AddressType.IPV4, "10.0.0.5", 80),
        (CONNECT_V6, AddressType.IPV6, "fd00::5", 22),
        (CONNECT_NAME, AddressType.DOMAIN, "example.com", 443),
    ],
)
def test_requests_of_each_address_type(
    data: bytes, kind: AddressType, address: str, port: int
) -> None:
    assert request_of(data) == Request(1, kind, address, port)


@pytest.mark.parametrize("command", [2, 3, 9])
def test_other_commands_are_read_for_the_server_to_refuse(command: int) -> None:
    data = bytes((5, command)) + CONNECT_V4[2:]
    assert request_of(data).command == command


def test_byte_by_byte_gives_the_same_events() -> None:
    connection = ServerConnection()
    events = []
    for byte in GREETING + CONNECT_NAME + b"GET":
        connection.receive_data(bytes((byte,)))
        event = connection.next_event()
        if isinstance(event, Greeting):
            connection.choose(event.methods)
        if event is not NEED_DATA:
            events.append(event)
    assert events == [Greeting(b"\x00"), Request(1, AddressType.DOMAIN, "example.com", 443)]
    assert connection.trailing == b"GET"


def test_greeting_and_request_in_one_read_and_the_bytes_after_them() -> None:
    connection = ServerConnection()
    connection.receive_data(GREETING + CONNECT_V4 + b"hello")
    event = connection.next_event()
    assert isinstance(event, Greeting)
    assert connection.trailing == b""  # still negotiating: nothing is data yet
    connection.choose(event.methods)
    assert isinstance(connection.next_event(), Request)
    assert connection.trailing == b"hello"


@pytest.mark.parametrize(
    ("code", "bound", "expected"),
    [
        (Reply.SUCCEEDED, ("10.0.255.254", 40000), b"\x05\x00\x00\x01\x0a\x00\xff\xfe\x9c\x40"),
        (Reply.GENERAL_FAILURE, ("0.0.0.0", 0), b"\x05\x01\x00\x01\x00\x00\x00\x00\x00\x00"),
        (Reply.NOT_ALLOWED, ("0.0.0.0", 0), b"\x05\x02\x00\x01" + bytes(6)),
        (Reply.NETWORK_UNREACHABLE, ("0.0.0.0", 0), b"\x05\x03\x00\x01" + bytes(6)),
        (Reply.HOST_UNREACHABLE, ("0.0.0.0", 0), b"\x05\x04\x00\x01" + bytes(6)),
        (Reply.CONNECTION_REFUSED, ("0.0.0.0", 0), b"\x05\x05\x00\x01" + bytes(6)),
        (Reply.TTL_EXPIRED, ("0.0.0.0", 0), b"\x05\x06\x00\x01" + bytes(6)),
        (Reply.COMMAND_NOT_SUPPORTED, ("0.0.0.0", 0), b"\x05\x07\x00\x01" + bytes(6)),
        (Reply.ADDRESS_TYPE_NOT_SUPPORTED, ("0.0.0.0", 0), b"\x05\x08\x00\x01" + bytes(6)),
        (Reply.SUCCEEDED, ("::1", 22), b"\x05\x00\x00\x04" + bytes(15) + b"\x01\x00\x16"),
    ],
)
def test_every_reply_code(code: Reply, bound: tuple[str, int], expected: bytes) -> None:
    connection = negotiated()
    connection.receive_data(CONNECT_V4)
    connection.next_event()
    assert connection.reply(code, bound) == expected


def test_a_bound_name_is_reported_as_the_ipv4_any_address() -> None:
    assert encode_address("localhost", 1080) == b"\x01\x00\x00\x00\x00\x04\x38"


@pytest.mark.parametrize(
    ("greeting", "request_", "message", "reply"),
    [
        (b"\x04\x01\x00", b"", "greeting: version 4, not SOCKS5", None),
        (b"GET / HTTP/1.1\r\n", b"", "greeting: version 71", None),
        (GREETING, b"\x04\x01\x00\x01" + bytes(6), "request: version 4", None),
        (GREETING, b"\x05\x01\x07\x01" + bytes(6), "reserved byte is 7", Reply.GENERAL_FAILURE),
        (GREETING, b"\x05\x01\x00\x02" + bytes(6), "address type 2", Reply(8)),
        (GREETING, b"\x05\x01\x00\x03\x00\x00\x50", "domain name b''", Reply(1)),
        (GREETING, b"\x05\x01\x00\x03\x02a\x00\x00\x50", "not printable ASCII", Reply(1)),
        (GREETING, b"\x05\x01\x00\x03\x02\xc3\xa9\x00\x50", "not printable ASCII", Reply(1)),
    ],
)
def test_malformed_input_is_a_socks_error_with_the_reply_owed(
    greeting: bytes, request_: bytes, message: str, reply: Reply | None
) -> None:
    with pytest.raises(SocksError) as raised:
        drive([greeting, request_])
    assert message in raised.value.message
    assert raised.value.reply == reply


def test_truncated_input_needs_more_and_never_guesses() -> None:
    for cut in range(len(CONNECT_NAME)):
        connection = negotiated()
        connection.receive_data(CONNECT_NAME[:cut])
        assert connection.next_event() is NEED_DATA, cut


def test_too_many_bytes_before_a_request_is_complete_are_refused() -> None:
    connection = ServerConnection()
    connection.receive_data(b"\x05")  # a greeting that never completes its header
    with pytest.raises(SocksError, match=f"more than {MAX_BUFFER} bytes"):
        connection.receive_data(b"\x00" * MAX_BUFFER)


def test_bytes_after_the_request_are_data_whatever_their_size() -> None:
    connection = negotiated()
    connection.receive_data(CONNECT_V4)
    assert isinstance(connection.next_event(), Request)
    connection.receive_data(b"x" * (4 * MAX_BUFFER))
    assert connection.trailing == b"x" * (4 * MAX_BUFFER)


def test_choose_without_a_greeting_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="no greeting"):
        ServerConnection().choose(b"\x00")


def drive(chunks: list[bytes]) -> None:
    """Feed ``chunks`` as a server would, answering each greeting."""
    connection = ServerConnection()
    for chunk in chunks:
        connection.receive_data(chunk)
        while (event := connection.next_event()) is not NEED_DATA:
            if isinstance(event, Greeting):
                connection.choose(event.methods)
            else:
                connection.reply(Reply.SUCCEEDED)


@given(st.lists(st.binary(max_size=600), max_size=8))
def test_arbitrary_bytes_raise_nothing_but_socks_error(chunks: list[bytes]) -> None:
    with contextlib.suppress(SocksError):
        drive(chunks)


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=40))
def test_valid_prefixes_then_garbage_raise_nothing_but_socks_error(
    garbage: bytes, size: int
) -> None:
    data = GREETING + b"\x05" + garbage
    with contextlib.suppress(SocksError):
        drive([data[i : i + size] for i in range(0, len(data), size)])
