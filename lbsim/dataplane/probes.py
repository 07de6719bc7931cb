"""Health probes of load-balancing rules, as Azure runs them
(https://learn.microsoft.com/en-us/azure/load-balancer/load-balancer-custom-probe-overview).

A TCP probe is up when a connection completes within the interval; an HTTP probe when
``GET requestPath`` answers 200 within min(interval, 30 s); an HTTPS probe when the same
request answers 200 inside TLS, from a backend whose certificate is signed with SHA-256 or
stronger (:mod:`lbsim.dataplane.tls`). The first result sets the state; after that,
``probeThreshold`` (or the legacy ``numberOfProbes``) consecutive contrary results flip it.
A probed-down backend gets no new flows from a load-balancing rule; flows already open go on;
NAT entries are never gated by probes.
"""

from __future__ import annotations

import attrs
import trio

from lbsim.control.types import Backend, PlannedProbe
from lbsim.dataplane import tls
from lbsim.dataplane.connect import (
    BackendUnreachableError,
    connect_backend,
)
from lbsim.model import ProbeProtocol

_MAX_WAIT_S = 30.0
_REPLY_LIMIT = 4096


@attrs.define(eq=False)
class ProbeState:
    """What one probe knows of one backend."""

    probe: PlannedProbe
    backend: Backend
    target: tuple[str, int]
    up: bool | None = None  # None until the first result
    streak: int = 0  # consecutive results contrary to ``up``
    checks: int = 0
    failures: int = 0
    down: bool = False  # a ``down`` fault: the instance answers nothing, as a crashed VM

    @property
    def healthy(self) -> bool:
        return self.up is True

    def record(self, ok: bool) -> None:
        """One probe result; the state flips after ``threshold`` contrary results in a row."""
        self.checks += 1
        self.failures += 0 if ok else 1
        if self.up is None:
            self.up = ok
            return
        if ok == self.up:
            self.streak = 0
            return
        self.streak += 1
        if self.streak >= self.probe.threshold:
            self.up, self.streak = ok, 0


async def check(state: ProbeState) -> bool:
    """One probe of one backend: True when it answered as Azure requires (a stopped
    instance answers nothing)."""
    if not state.backend.running or state.down:
        return False
    wait = min(state.probe.interval_s, _MAX_WAIT_S)
    with trio.move_on_after(wait):
        try:
            stream = await _connect(state.target, wait)
        except BackendUnreachableError:
            return False
        protocol, path = state.probe.protocol, state.probe.request_path or "/"
        try:
            if protocol is ProbeProtocol.HTTP:
                return await _http_ok(stream, path, _host(state, 80))
            if protocol is ProbeProtocol.HTTPS:
                return await _https_ok(stream, path, _host(state, 443))
            return True
        finally:
            await trio.aclose_forcefully(stream)
    return False


def _host(state: ProbeState, default_port: int) -> str:
    """The Host header Azure's probe sends: the backend's own (private) address, and the
    port unless it is the scheme's default."""
    address = state.backend.private_ip_address or state.target[0]
    host = f"[{address}]" if ":" in address else address
    port = state.probe.port
    return host if port == default_port else f"{host}:{port}"


async def _https_ok(stream: trio.SocketStream, path: str, host: str) -> bool:
    """The HTTP probe inside TLS, from a backend whose certificate Azure would accept."""
    # (an HTTP client's view of the end: a response read whole needs no TLS close_notify)
    secure = trio.SSLStream(stream, tls.client_context(), https_compatible=True)
    try:
        await secure.do_handshake()
    except (trio.BrokenResourceError, OSError):  # not TLS, or a handshake refused
        return False
    if not tls.strong_signature(secure.getpeercert(binary_form=True)):
        return False
    return await _http_ok(secure, path, host)


async def _connect(target: tuple[str, int], timeout_s: float) -> trio.SocketStream:
    """A probe's connection, opened as the relay opens its backend connections: probes close
    first too, and their TIME_WAIT must not keep a NAT frontend port from being bound."""
    return trio.SocketStream(await connect_backend(target, timeout_s=timeout_s))


async def _http_ok(stream: trio.abc.Stream, path: str, host: str) -> bool:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: Load Balancer Agent\r\nConnection: close\r\n\r\n"
    )
    try:
        await stream.send_all(request.encode("ascii", "replace"))
        head = b""
        while b"\r\n" not in head and len(head) < _REPLY_LIMIT:
            chunk = await stream.receive_some(_REPLY_LIMIT)
            if not chunk:
                break
            head += chunk
    except (trio.BrokenResourceError, OSError):
        return False
    parts = head.split(b"\r\n", 1)[0].split()
    return len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1] == b"200"


async def run(
    state: ProbeState, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Probe every interval until cancelled; reports started after the first result."""
    state.record(await check(state))
    task_status.started()
    while True:
        await trio.sleep(state.probe.interval_s)
        state.record(await check(state))
