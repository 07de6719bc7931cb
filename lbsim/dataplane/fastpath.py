"""The resources of lbsim's socket relay (:mod:`lbsim.dataplane.reactor`) for one trio run.

A direction first reads into one buffer shared by all flows of the run and writes from it
before anything else runs; only bytes that the destination does not take at once are copied
aside. On Linux, once such a read fills the (small) first-read buffer, the direction moves
bytes with ``os.splice`` from the source socket into a pipe and from the pipe into the
destination socket, never entering Python, until the source is drained. A direction holds a
pipe only while it is splicing, so idle flows hold none; pipes come from a pool and are
enlarged with ``F_SETPIPE_SZ``. Without splice (elsewhere, or on request) every read goes
through the full shared buffer. Either way at most one pipe's or one buffer's worth of bytes
per direction is held by lbsim: that is the relay's backpressure.
"""

from __future__ import annotations

import contextlib
import os
import sys
import weakref

from lbsim.errors import LbsimError

__all__ = ["HAVE_SPLICE", "SPLICE_FLAGS", "FastPath"]

HAVE_SPLICE = sys.platform == "linux" and hasattr(os, "splice")
SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if HAVE_SPLICE else 0

Pipe = tuple[int, int]


def _close_pipes(pipes: list[Pipe]) -> None:
    """Close every pipe in ``pipes`` and empty the list."""
    while pipes:
        for fd in pipes.pop():
            os.close(fd)


class FastPath:
    """Resources of the socket relay for one trio run: a pool of pipes and a read buffer."""

    def __init__(
        self,
        *,
        use_splice: bool | None = None,
        pipe_size: int = 1 << 20,
        max_idle_pipes: int = 64,
        buffer_size: int = 1 << 18,
        first_read_size: int = 1 << 14,
    ) -> None:
        """A fast path that splices when the platform can, unless ``use_splice`` says no."""
        if use_splice and not HAVE_SPLICE:
            raise LbsimError("SpliceUnavailable", "os.splice is not available on this system")
        self.use_splice = HAVE_SPLICE if use_splice is None else use_splice
        self.pipe_size = pipe_size
        self.max_idle_pipes = max_idle_pipes
        self.pipes_created = 0
        self._idle: list[Pipe] = []
        self._finalizer = weakref.finalize(self, _close_pipes, self._idle)
        view = memoryview(bytearray(buffer_size))
        if self.use_splice:
            view = view[: min(first_read_size, buffer_size)]
        # What a direction reads into first: the view and the list that os.readv fills.
        self.first_read: tuple[memoryview, list[memoryview]] = (view, [view])

    @property
    def idle_pipes(self) -> int:
        """How many empty pipes wait in the pool."""
        return len(self._idle)

    def take_pipe(self) -> Pipe:
        """An empty non-blocking pipe (read end, write end), from the pool or new."""
        if self._idle:
            return self._idle.pop()
        import fcntl  # noqa: PLC0415  (Unix only; pipes are taken only where splice works)

        read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        with contextlib.suppress(OSError):  # over the user's pipe budget: default size works
            fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, self.pipe_size)
        self.pipes_created += 1
        return read_fd, write_fd

    def give_pipe(self, pipe: Pipe, *, empty: bool = True) -> None:
        """Return a pipe: kept for reuse if empty and the pool has room, else closed."""
        if empty and len(self._idle) < self.max_idle_pipes:
            self._idle.append(pipe)
        else:
            _close_pipes([pipe])

    def close(self) -> None:
        """Close the pooled pipes (pipes in use are closed when their flows give them back)."""
        self._finalizer()
