"""The rules of one relayed TCP connection, written once: how it ends and what then happens to
its two sockets. No I/O: the engines (:mod:`lbsim.dataplane.socketflow` for the reactor,
:mod:`lbsim.dataplane.relay` for streams) report events and do what the answer says.

A connection has two directions. Each ends when its source sends an end of stream (a
half-close, forwarded); the connection is closed when both have. A failing side, an idle
timeout or an abort from outside closes it at once. The first event that closes it names why
(its :class:`CloseReason`); later events change nothing. How the two sockets end depends on
that reason alone, and on two settings of the rule that the flow came through:

====================  =================================  ===========================
event                 next state                          the sockets
====================  =================================  ===========================
client's EOF          CLIENT_DONE (from OPEN)             the FIN is forwarded
                      CLOSED (from BACKEND_DONE)          quiet close
backend's EOF         BACKEND_DONE (from OPEN)            the FIN is forwarded
                      CLOSED (from CLIENT_DONE)           quiet close
client fails          CLOSED                              reset both
backend fails         CLOSED                              reset both
idle timeout          CLOSED                              with ``enableTcpReset``: reset both;
                                                          else hold both silently for
                                                          ``idle_hold_s`` then reset (Azure
                                                          drops idle flows without a word);
                                                          0 s: quiet close
cancelled             CLOSED                              reset both
====================  =================================  ===========================

Azure's documentation of idle timeouts and TCP reset:
learn.microsoft.com/azure/load-balancer/load-balancer-tcp-reset.
"""

from __future__ import annotations

import enum

__all__ = [
    "BACKEND_CLOSED",
    "BACKEND_ERROR",
    "CANCELLED",
    "CLIENT_CLOSED",
    "CLIENT_ERROR",
    "HOLD",
    "IDLE_TIMEOUT",
    "QUIET",
    "RESET",
    "TRANSITIONS",
    "CloseReason",
    "Connection",
    "State",
]


class CloseReason(enum.StrEnum):
    """Why a relayed flow ended (stable strings, used in logs and metric labels)."""

    CLIENT_CLOSED = "client-closed"
    BACKEND_CLOSED = "backend-closed"
    CLIENT_ERROR = "client-error"
    BACKEND_ERROR = "backend-error"
    IDLE_TIMEOUT = "idle-timeout"
    EVICTED = "evicted"  # a UDP flow pushed out of a full flow table
    BACKEND_UNREACHABLE = "backend-unreachable"
    CANCELLED = "cancelled"
    FAULT = "fault"  # closed or reset by an injected fault (lbsim.dataplane.toxic)


# The hot paths compare these (StrEnum members are the strings themselves).
CLIENT_CLOSED = CloseReason.CLIENT_CLOSED
BACKEND_CLOSED = CloseReason.BACKEND_CLOSED
CLIENT_ERROR = CloseReason.CLIENT_ERROR
BACKEND_ERROR = CloseReason.BACKEND_ERROR
IDLE_TIMEOUT = CloseReason.IDLE_TIMEOUT
CANCELLED = CloseReason.CANCELLED


class State(enum.Enum):
    OPEN = "open"
    CLIENT_DONE = "client-done"  # the client's end of stream was forwarded
    BACKEND_DONE = "backend-done"  # the backend's end of stream was forwarded
    CLOSED = "closed"


# What to do with both sockets once the connection is closed.
QUIET, RESET, HOLD = "quiet", "reset", "hold"

_OPEN = (State.OPEN, State.CLIENT_DONE, State.BACKEND_DONE)
# (state, event) -> next state. The events are close reasons: an end of stream is reported
# as the reason it would give (CLIENT_CLOSED for the client's EOF). Pairs not listed leave
# the state as it is (a closed connection stays closed; an EOF twice counts once).
TRANSITIONS: dict[tuple[State, CloseReason], State] = {
    (State.OPEN, CLIENT_CLOSED): State.CLIENT_DONE,
    (State.OPEN, BACKEND_CLOSED): State.BACKEND_DONE,
    (State.BACKEND_DONE, CLIENT_CLOSED): State.CLOSED,
    (State.CLIENT_DONE, BACKEND_CLOSED): State.CLOSED,
    **{
        (state, event): State.CLOSED
        for state in _OPEN
        for event in (CLIENT_ERROR, BACKEND_ERROR, IDLE_TIMEOUT, CANCELLED)
    },
}
_ABORTS = frozenset({CLIENT_ERROR, BACKEND_ERROR, CANCELLED})
_EOFS = frozenset({CLIENT_CLOSED, BACKEND_CLOSED})


class Connection:
    """The state of one connection (a base of each engine's flow, so that it costs no
    object of its own). ``tcp_reset`` and ``idle_hold_s`` are the rule's."""

    __slots__ = ("first_eof", "idle_hold_s", "reason", "state", "tcp_reset")

    def __init__(self, tcp_reset: bool = False, idle_hold_s: float = 0.0) -> None:
        self.state = State.OPEN
        self.first_eof: CloseReason | None = None
        self.reason: CloseReason | None = None  # why it closed, once it has
        self.tcp_reset = tcp_reset
        self.idle_hold_s = idle_hold_s

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    def event(self, event: CloseReason) -> bool:
        """Take ``event``; True if it closed the connection (then ``reason`` says why and
        :meth:`sockets` what to do with them)."""
        state = self.state
        after = TRANSITIONS.get((state, event), state)
        if after is state:
            return False
        self.state = after
        if after is not State.CLOSED:  # one direction's end of stream
            self.first_eof = event
            return False
        self.reason = self.first_eof if event in _EOFS else event
        return True

    @property
    def outcome(self) -> CloseReason:
        """Why the connection ended: its reason, or ``cancelled`` if it never closed."""
        return self.reason or CANCELLED

    def sockets(self) -> str:
        """What the closing does to both sockets: ``QUIET`` (FIN), ``RESET`` or ``HOLD``."""
        reason = self.reason
        if reason in _ABORTS:
            return RESET
        if reason is IDLE_TIMEOUT:
            if self.tcp_reset:
                return RESET
            return HOLD if self.idle_hold_s > 0 else QUIET
        return QUIET
