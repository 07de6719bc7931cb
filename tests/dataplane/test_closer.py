"""lbsim.dataplane.closer: quiet closes of ended flows, done by a thread of their own."""

from __future__ import annotations

import os
import socket
import threading
import types

import pytest

from lbsim.dataplane import closer as closer_module
from lbsim.dataplane.closer import Closer


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every descriptor the closer closes, with the name of the thread that closed it."""
    seen: list[tuple[str, int]] = []

    def close(fd: int) -> None:
        seen.append((threading.current_thread().name, fd))
        os.close(fd)

    monkeypatch.setattr(closer_module, "os", types.SimpleNamespace(close=close))
    return seen


def _pairs(count: int) -> list[tuple[socket.socket, socket.socket]]:
    return [socket.socketpair() for _ in range(count)]


def _at_eof(peer: socket.socket) -> bool:
    peer.settimeout(5)
    return peer.recv(1) == b""


def test_a_deferred_socket_is_closed_by_the_thread_at_the_next_flush(
    closes: list[tuple[str, int]],
) -> None:
    closer = Closer()
    mine, peer = socket.socketpair()
    with mine, peer:
        fd = mine.fileno()
        closer.defer(mine)
        assert mine.fileno() == -1  # detached: its object can no longer close it
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):  # still open until the flush
            peer.recv(1)
        closer.flush()
        assert _at_eof(peer)
    closer.stop()
    assert closes == [("lbsim closer", fd)]


def test_stop_closes_everything_deferred_then_later_closes_happen_in_place(
    closes: list[tuple[str, int]],
) -> None:
    closer = Closer()
    pairs = _pairs(5)
    for mine, _ in pairs[:4]:
        closer.defer(mine)
    closer.flush()
    closer.stop()  # joins: every close handed over is done when it returns
    assert len(closes) == 4
    assert all(name == "lbsim closer" for name, _ in closes)
    assert all(_at_eof(peer) for _, peer in pairs[:4])
    closer.defer(pairs[4][0])
    closer.flush()  # the thread has ended: closed here, at once
    assert closes[-1][0] == threading.current_thread().name
    assert _at_eof(pairs[4][1])
    closer.stop()  # again: nothing left, no error
    for mine, peer in pairs:
        mine.close()
        peer.close()


def test_a_descriptor_that_is_already_gone_does_not_stop_the_thread() -> None:
    closer = Closer()
    mine, peer = socket.socketpair()
    gone, other = socket.socketpair()
    fd = gone.detach()
    os.close(fd)  # closed behind the closer's back (nothing opens a descriptor until it runs)
    closer.batch.append(fd)  # its close fails with EBADF
    with mine, peer, other:
        closer.defer(mine)
        closer.flush()
        assert _at_eof(peer)  # the batch went on past the failed close
    closer.stop()
