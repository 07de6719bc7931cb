"""Lines a running ``lbsim up`` has for its operator (a refused connection inside the
virtual network, a peer that spoke garbage to an SSH or SOCKS endpoint), written to stderr
by a task of their own.

The data plane hands a line over and goes on: a terminal that is slow, or a pipe that nobody
reads (a test that starts lbsim and reads only stdout), never holds up a flow. The writes
happen in a worker thread; at most ``limit`` lines wait, and lines beyond that are counted
and told as one line once there is room again.
"""

from __future__ import annotations

import os
import select
import sys
from collections import deque
from typing import TextIO

import trio

__all__ = ["Notices"]


class Notices:
    """``notices(line)`` queues ``lbsim: <line>`` for ``stream``; :meth:`run` writes them."""

    def __init__(self, stream: TextIO | None = None, limit: int = 1000) -> None:
        self._stream = stream
        self._waiting: deque[str] = deque()
        self._limit = limit
        self.dropped = 0  # lines left out since the last write, the queue being full
        self._wake = trio.Event()

    def __call__(self, line: str) -> None:
        if len(self._waiting) >= self._limit:
            self.dropped += 1
        else:
            self._waiting.append(line)
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write queued lines until cancelled (a write stuck on a full pipe is abandoned)."""
        task_status.started()
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            lines = [*self._waiting]
            self._waiting.clear()
            if self.dropped:
                lines.append(
                    f"{self.dropped} more lines left out (stderr was not read fast enough)"
                )
                self.dropped = 0
            await trio.to_thread.run_sync(self._write, lines, abandon_on_cancel=True)

    def flush(self) -> None:
        """Write what still waits, at exit, as far as the stream takes it without waiting
        (a pipe nobody reads must not keep lbsim from ending)."""
        stream = self._stream or sys.stderr
        while self._waiting and _writable(stream):
            self._write([self._waiting.popleft()])
        self._waiting.clear()

    def _write(self, lines: list[str]) -> None:
        """Write ``lines`` through the stream's descriptor, not its buffer: a write that
        blocks on a full pipe then holds no lock that anything else (a print, the
        interpreter's flush of stderr at exit) would wait for."""
        stream = self._stream or sys.stderr
        text = "".join(f"lbsim: {line}\n" for line in lines)
        fd = _descriptor(stream)
        if fd is None:
            stream.write(text)
            return
        data = text.encode("utf-8", "replace")
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:  # the reader went away: nobody is left to tell
            pass


def _descriptor(stream: TextIO) -> int | None:
    """The stream's file descriptor, flushed of what its buffer holds; None for a stream
    with none (io.StringIO) or a closed one."""
    try:
        fd = stream.fileno()
        stream.flush()
    except (OSError, ValueError):
        return None
    return fd


def _writable(stream: TextIO) -> bool:
    """Whether a line can be written to ``stream`` now (a stream with no descriptor: yes)."""
    fd = _descriptor(stream)
    if fd is None:
        return not stream.closed
    return bool(select.select([], [fd], [], 0)[1])
