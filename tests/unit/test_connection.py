"""The connection's rules (lbsim.dataplane.connection), pure: the transition table, why a
connection closed, and what closing does to its sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lbsim.dataplane.connection import (
    BACKEND_CLOSED,
    BACKEND_ERROR,
    CANCELLED,
    CLIENT_CLOSED,
    CLIENT_ERROR,
    HOLD,
    IDLE_TIMEOUT,
    QUIET,
    RESET,
    CloseReason,
    Connection,
    State,
)

EVENTS = [CLIENT_CLOSED, BACKEND_CLOSED, CLIENT_ERROR, BACKEND_ERROR, IDLE_TIMEOUT, CANCELLED]


def test_both_ends_of_stream_close_it_named_by_the_first() -> None:
    conn = Connection()
    assert conn.event(BACKEND_CLOSED) is False
    assert conn.state is State.BACKEND_DONE
    assert conn.event(BACKEND_CLOSED) is False  # the same end twice counts once
    assert conn.event(CLIENT_CLOSED) is True
    assert (conn.state, conn.reason, conn.sockets()) == (State.CLOSED, BACKEND_CLOSED, QUIET)


@pytest.mark.parametrize("failure", [CLIENT_ERROR, BACKEND_ERROR, CANCELLED])
def test_a_failure_or_an_abort_closes_at_once_and_resets(failure: CloseReason) -> None:
    conn = Connection()
    conn.event(CLIENT_CLOSED)  # half-closed first: still open
    assert conn.event(failure) is True
    assert (conn.reason, conn.sockets()) == (failure, RESET)


@pytest.mark.parametrize(
    ("tcp_reset", "hold_s", "expected"),
    [(True, 0.0, RESET), (True, 30.0, RESET), (False, 30.0, HOLD), (False, 0.0, QUIET)],
)
def test_an_idle_timeout_resets_holds_or_closes_as_the_rule_says(
    tcp_reset: bool, hold_s: float, expected: str
) -> None:
    conn = Connection(tcp_reset=tcp_reset, idle_hold_s=hold_s)
    assert conn.event(IDLE_TIMEOUT) is True
    assert (conn.reason, conn.sockets()) == (IDLE_TIMEOUT, expected)


def test_a_connection_never_closed_ends_as_cancelled() -> None:
    assert Connection().outcome is CANCELLED


@given(st.lists(st.sampled_from(EVENTS), max_size=12))
def test_the_first_closing_event_wins_and_closes_once(events: list[CloseReason]) -> None:
    conn = Connection()
    closings = [e for e in events if conn.event(e)]
    assert len(closings) <= 1
    eofs: set[CloseReason] = set()
    expected: CloseReason | None = None
    first_eof: CloseReason | None = None
    for event in events:  # the rules, restated
        if event in (CLIENT_CLOSED, BACKEND_CLOSED):
            first_eof = first_eof or event
            eofs.add(event)
            if len(eofs) == 2:
                expected = first_eof
                break
        else:
            expected = event
            break
    assert conn.reason == expected
    assert conn.closed == (expected is not None)
