"""The fast path of lbsim's TCP relay: raw non-blocking sockets, awaited only on EAGAIN.

On Linux, bytes move with ``os.splice`` from the source socket into a pipe and from the pipe
into the destination socket, never entering Python. A direction holds a pipe only while the
pipe has bytes in it, so idle flows hold none; pipes come from a pool and are enlarged with
``F_SETPIPE_SZ``. Elsewhere (or on request) a direction reads into one buffer shared by all
flows of the trio run and writes from it before any other task runs; only bytes that the
destination does not take at once are copied aside. Either way at most one pipe's or one
buffer's worth of bytes per direction is held by lbsim: that is the relay's backpressure.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import weakref
from typing import TYPE_CHECKING

import trio

from lbsim.errors import LbsimError

if TYPE_CHECKING:
    from lbsim.dataplane.relay import AnySocket, Flow, Way

__all__ = ["HAVE_SPLICE", "FastPath", "default"]

HAVE_SPLICE = sys.platform == "linux" and hasattr(os, "splice")
_SPLICE_FLAGS = os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK if HAVE_SPLICE else 0

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
        self._buffer = bytearray(buffer_size)
        self._buffers = [self._buffer]
        self._view = memoryview(self._buffer)

    @property
    def idle_pipes(self) -> int:
        """How many empty pipes wait in the pool."""
        return len(self._idle)

    def take_pipe(self) -> Pipe:
        """An empty non-blocking pipe (read end, write end), from the pool or new."""
        if self._idle:
            return self._idle.pop()
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

    async def splice_pump(self, flow: Flow[AnySocket], way: Way) -> None:
        """Splice src to dst until src's end of stream, then half-close dst.

        Holds one pipe (at most ``pipe_size`` bytes) only while bytes are in it; a failing
        side ends the flow with that side's error reason; a stopped flow returns at its next
        wait. After a short splice the source is drained: it waits at once rather than try
        again. Never awaits inside an ``except`` (a waiting task would keep the exception
        and its traceback alive).
        """
        src, dst = flow.sides[way.src], flow.sides[way.dst]
        mine, agg = flow.traffic(way)
        sfd, dfd, size = src.fileno(), dst.fileno(), self.pipe_size
        pipe: Pipe | None = None
        dirty = False
        try:
            while not flow.stopped:
                try:
                    pipe = pipe or self.take_pipe()
                except OSError:  # out of descriptors: this direction copies instead
                    break
                n = _splice_in(sfd, pipe[1], size)
                if n in _DONE:
                    _source_done(flow, way, dst, n)
                    return
                if n > 0:
                    moved = _splice_some(pipe[0], dfd, n)
                    if moved != n:
                        dirty = True  # until drained the pipe holds bytes: never pool it
                        if moved < 0 or not await _drain(pipe[0], dst, n - moved):
                            flow.end(way.dst_error)
                            return
                        dirty = False
                    flow.moved(mine, agg, n)
                    if n == size:  # more may be waiting: go on, letting other tasks run
                        await trio.lowlevel.checkpoint()
                        continue
                self.give_pipe(pipe)
                pipe = None
                try:
                    await trio.lowlevel.wait_readable(src)
                except trio.ClosedResourceError:  # the flow was stopped
                    return
            if not flow.stopped:  # starved of pipes
                await self._copy(flow, way)
        except BaseException:
            flow.abort()
            raise
        finally:
            if pipe is not None:
                self.give_pipe(pipe, empty=not dirty)
            flow.left(way)

    async def copy_pump(self, flow: Flow[AnySocket], way: Way) -> None:
        """Copy src to dst through the shared buffer until src's end of stream, then
        half-close dst; what dst does not take at once (at most one read) is set aside.
        A failing side ends the flow with that side's error reason; a stopped flow returns
        at its next wait."""
        try:
            await self._copy(flow, way)
        except BaseException:
            flow.abort()
            raise
        finally:
            flow.left(way)

    async def _copy(self, flow: Flow[AnySocket], way: Way) -> None:
        """The copying loop of :meth:`copy_pump`."""
        src, dst = flow.sides[way.src], flow.sides[way.dst]
        mine, agg = flow.traffic(way)
        sfd, dfd, buffers, view = src.fileno(), dst.fileno(), self._buffers, self._view
        size = len(view)
        while not flow.stopped:
            try:
                n = os.readv(sfd, buffers)
            except BlockingIOError:
                n = -1
            except OSError:
                flow.end(way.src_error)
                return
            if n == 0:
                _half_close(flow, way, dst)
                return
            if n > 0:
                sent = _write_some(dfd, view[:n])
                if sent < n and (sent < 0 or not await _write_rest(dst, view[sent:n].tobytes())):
                    flow.end(way.dst_error)
                    return
                flow.moved(mine, agg, n)
                if n == size:  # more may be waiting: go on, letting other tasks run
                    await trio.lowlevel.checkpoint()
                    continue
            try:
                await trio.lowlevel.wait_readable(src)
            except trio.ClosedResourceError:  # the flow was stopped
                return


_FAILED = -2


def _splice_in(src_fd: int, write_fd: int, size: int) -> int:
    """Bytes spliced from a socket into a pipe: 0 at end of stream, -1 if it would block,
    ``_FAILED`` if the socket failed."""
    try:
        return os.splice(src_fd, write_fd, size, flags=_SPLICE_FLAGS)
    except BlockingIOError:
        return -1
    except OSError:
        return _FAILED


_DONE = frozenset({0, _FAILED})


def _source_done(flow: Flow[AnySocket], way: Way, dst: AnySocket, n: int) -> None:
    """After src's end of stream (``n`` 0) forward it to dst; after its failure, end the flow."""
    if n == 0:
        _half_close(flow, way, dst)
    else:
        flow.end(way.src_error)


def _splice_some(read_fd: int, dst_fd: int, count: int) -> int:
    """Bytes spliced from a pipe into a socket without blocking (0 if it would block), or
    -1 if the socket failed."""
    try:
        return os.splice(read_fd, dst_fd, count, flags=_SPLICE_FLAGS)
    except BlockingIOError:
        return 0
    except OSError:
        return -1


async def _drain(read_fd: int, dst: AnySocket, left: int) -> bool:
    """Splice the ``left`` bytes still in a pipe into dst, waiting as needed; False if dst
    failed."""
    dfd = dst.fileno()
    while left:
        try:
            await trio.lowlevel.wait_writable(dst)
        except trio.ClosedResourceError:  # the flow was stopped
            return False
        moved = _splice_some(read_fd, dfd, left)
        if moved < 0:
            return False
        left -= moved
    return True


def _write_some(fd: int, data: memoryview) -> int:
    """Bytes written to a socket without blocking: 0 if it would block, -1 if it failed."""
    try:
        return os.write(fd, data)
    except BlockingIOError:
        return 0
    except OSError:
        return -1


def _half_close(flow: Flow[AnySocket], way: Way, dst: AnySocket) -> None:
    """Forward an end of stream as a FIN (SHUT_WR) on dst and count the direction done."""
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        flow.end(way.dst_error)
        return
    flow.eof(way.closed)


async def _write_rest(dst: AnySocket, data: bytes) -> bool:
    """Write all of ``data`` to dst, waiting as needed; False if dst failed."""
    rest, fd = memoryview(data), dst.fileno()
    while rest:
        try:
            await trio.lowlevel.wait_writable(dst)
        except trio.ClosedResourceError:  # the flow was stopped
            return False
        sent = _write_some(fd, rest)
        if sent < 0:
            return False
        rest = rest[sent:]
    return True


_DEFAULT: trio.lowlevel.RunVar[FastPath] = trio.lowlevel.RunVar("lbsim_fast_path")


def default() -> FastPath:
    """The fast path of the current trio run, made on first use; its pipes close with it."""
    try:
        return _DEFAULT.get()
    except LookupError:
        path = FastPath()
        _DEFAULT.set(path)
        return path
