"""Closing ended connections in a thread of their own (``lbsim up``).

Closing a TCP socket that has finished is mostly the kernel's work: it sends the FIN, and on
loopback the peer's side of that exchange runs inside the same call. At a high connection
rate that was about a sixth of the relay thread's time. The call releases Python's
interpreter lock, so a second thread can do it while the relay goes on: at the start of each
round (before it may wait), the reactor hands over in one batch the descriptors of the flows
that ended since the last one, and this thread closes them in order.

Only quiet closes go this way. A reset (SO_LINGER 0) and a socket held open after an idle
timeout are handled by the reactor itself, at once.
"""

from __future__ import annotations

import os
import queue
import socket
import threading

__all__ = ["Closer"]


class Closer:
    """A thread that closes the descriptors :meth:`defer`-red to it, a batch per
    :meth:`flush`, until :meth:`stop`."""

    def __init__(self) -> None:
        """Starts the thread."""
        self.batch: list[int] = []
        self._stopped = False
        self._queue: queue.SimpleQueue[list[int] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="lbsim closer", daemon=True)
        self._thread.start()

    def defer(self, sock: socket.socket) -> None:
        """Close ``sock`` at the next :meth:`flush` (its object is detached now: it reports
        descriptor -1, and nothing else closes the descriptor)."""
        self.batch.append(sock.detach())

    def flush(self) -> None:
        """Hand the deferred descriptors to the thread (closed here once it has stopped)."""
        if self.batch:
            batch, self.batch = self.batch, []
            if self._stopped:
                _close_all(batch)
            else:
                self._queue.put(batch)

    def stop(self) -> None:
        """Close everything deferred so far, then end the thread; idempotent."""
        self.flush()
        if not self._stopped:
            self._stopped = True
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        get = self._queue.get
        while (batch := get()) is not None:
            _close_all(batch)


def _close_all(fds: list[int]) -> None:
    close = os.close
    for fd in fds:
        try:  # noqa: SIM105  (per descriptor: a try costs less than contextlib.suppress)
            close(fd)
        except OSError:  # the peer is gone: the descriptor is released anyway
            pass
