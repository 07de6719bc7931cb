"""Reaching a backend: a TCP connect that never blocks the run (begun at once, finished by a
task when it is in progress), and the resets lbsim sends when a backend cannot be had. A
backend that refuses, is unreachable or does not answer in time is
:class:`BackendUnreachableError`; no socket for want of descriptors or memory is
:class:`OutOfDescriptorsError` (lbsim's shortage, not the backend's)."""

from __future__ import annotations

import errno
import os
import socket

import trio

from lbsim.dataplane.socketflow import AnySocket, nodelay, reset_socket
from lbsim.dataplane.stats import RuleStats
from lbsim.errors import LbsimError

__all__ = [
    "BackendUnreachableError",
    "OutOfDescriptorsError",
    "begin_connect",
    "connect_backend",
    "connect_or_reset",
    "connect_raw",
    "finish_connect",
    "reset_soon",
    "reset_stream",
]


class BackendUnreachableError(LbsimError):
    """The backend refused, was unreachable, or did not answer in time."""

    reason = "backend-unreachable"  # what a flow's log line says

    def __init__(self, address: tuple[str, int], cause: str) -> None:
        """An error that names the backend address and the cause."""
        super().__init__("BackendUnreachable", f"backend {address[0]}:{address[1]}: {cause}")
        self.address = address


class OutOfDescriptorsError(BackendUnreachableError):
    """No socket could be made for the backend: lbsim (or the system) is out of file
    descriptors or memory, which says nothing about the backend."""

    reason = "out-of-descriptors"

    def __init__(self, address: tuple[str, int], cause: str) -> None:
        super().__init__(address, cause)
        self.code = "OutOfDescriptors"


# A socket() that fails with one of these: out of descriptors or memory, not the backend.
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


async def reset_stream(stream: trio.abc.AsyncResource) -> None:
    """Close ``stream`` at once: a RST for a ``trio.SocketStream``, an abrupt close otherwise."""
    if isinstance(stream, trio.SocketStream):
        reset_socket(stream.socket)
    await trio.aclose_forcefully(stream)


async def connect_backend(
    address: tuple[str, int], *, timeout_s: float = 5.0
) -> trio.socket.SocketType:
    """A TCP socket connected to ``address`` (numeric IP), or :class:`BackendUnreachableError`.

    Raises within ``timeout_s``; the attempt uses one raw non-blocking connect.
    """
    return trio.socket.from_stdlib_socket(await connect_raw(address, timeout_s=timeout_s))


async def connect_raw(address: tuple[str, int], *, timeout_s: float = 5.0) -> socket.socket:
    """As :func:`connect_backend`, but the standard library's non-blocking socket (lighter:
    for :func:`relay_sockets`)."""
    sock, connected = begin_connect(address)
    if connected:
        return sock
    return await finish_connect(sock, address, timeout_s=timeout_s)


def begin_connect(address: tuple[str, int]) -> tuple[socket.socket, bool]:
    """A non-blocking TCP socket (TCP_NODELAY) connecting to ``address`` and whether it is
    connected already (a loopback connect usually is when ``connect_ex`` returns); or
    :class:`BackendUnreachableError` if the attempt failed at once."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    except OSError as exc:  # out of descriptors: no connection can be made now
        if exc.errno in _EXHAUSTED:
            raise OutOfDescriptorsError(address, str(exc)) from exc
        raise BackendUnreachableError(address, str(exc)) from exc
    nodelay(sock)
    # lbsim usually sends the first FIN to a backend, so its side waits in TIME_WAIT; with
    # this, that does not stop a listener from binding the port (an ephemeral port may be a
    # NAT frontend port of lbsim's next run).
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        err = sock.connect_ex(address)
    except (OSError, OverflowError, TypeError) as exc:  # not an address lbsim can reach
        sock.close()
        raise BackendUnreachableError(address, str(exc)) from exc
    if err == 0 or (err == errno.EINPROGRESS and _connected(sock)):
        return sock, True
    if err != errno.EINPROGRESS:
        sock.close()
        raise BackendUnreachableError(address, os.strerror(err))
    return sock, False


async def finish_connect(
    sock: socket.socket, address: tuple[str, int], *, timeout_s: float = 5.0
) -> socket.socket:
    """``sock`` once its connect in progress (from :func:`begin_connect`) has completed;
    else ``sock`` is closed and :class:`BackendUnreachableError` raised, within
    ``timeout_s``. A failed loopback connect is still awaited once, as any connect in
    progress (the client's own connect completes before lbsim resets it)."""
    err = errno.ETIMEDOUT
    try:
        with trio.move_on_after(timeout_s):
            await trio.lowlevel.wait_writable(sock)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except BaseException:
        sock.close()
        raise
    if err:
        sock.close()
        raise BackendUnreachableError(address, os.strerror(err))
    return sock


def _connected(sock: socket.socket) -> bool:
    """Whether a connect in progress has completed."""
    try:
        sock.getpeername()
    except OSError:
        return False
    return True


async def connect_or_reset(
    client: AnySocket,
    address: tuple[str, int],
    *,
    timeout_s: float = 5.0,
    rule: RuleStats | None = None,
) -> socket.socket | None:
    """The backend socket (non-blocking, the standard library's); or None once ``client``
    has been reset because the backend is unreachable (then ``rule.backend_failures`` has
    gone up by one)."""
    try:
        return await connect_raw(address, timeout_s=timeout_s)
    except BackendUnreachableError:
        if rule is not None:
            rule.backend_failures += 1
    await reset_soon(client)
    return None


async def reset_soon(sock: AnySocket) -> None:
    """Reset ``sock`` after one checkpoint (even if cancelled): a client that has just
    connected sees its connect complete, then the reset."""
    try:
        await trio.lowlevel.checkpoint()
    finally:
        reset_socket(sock)
