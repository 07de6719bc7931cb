"""Handing an accepted connection from trio to the SSH loop, so that exactly one side closes
its socket whatever happens first: the connection's end, the instance stopping, or lbsim
stopping before the loop ever started on it.

The socket handed over is a duplicate of trio's (:meth:`HandedSocket.duplicate`); asyncio
owns it from when it makes it non-blocking (``create_connection`` does that first, and closes
the socket on any later failure). Until then, whoever ends the connection closes it."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["HandedSocket", "Handoff"]


class HandedSocket(socket.socket):
    """A socket that knows whether asyncio took it (made it non-blocking)."""

    taken = False

    @classmethod
    def duplicate(cls, sock: Any) -> HandedSocket:
        """A duplicate of ``sock``'s descriptor (``sock`` is closed on its own, as usual)."""
        return cls(sock.family, sock.type, sock.proto, os.dup(sock.fileno()))

    def setblocking(self, flag: bool) -> None:
        if not flag:
            self.taken = True
        super().setblocking(flag)

    def release(self) -> None:
        """Close it unless asyncio took it (then asyncio closes it)."""
        if not self.taken:
            self.close()


class Handoff:
    """One connection on the SSH loop (every method runs on the loop's thread): ``start``
    runs ``serve`` in a task, ``abort`` ends it, started or not; ``done`` is called once."""

    def __init__(
        self,
        sock: HandedSocket,
        serve: Callable[[HandedSocket], Awaitable[None]],
        done: Callable[[], None],
        registry: set[Handoff],
    ) -> None:
        self.sock = sock
        self._serve = serve
        self._done = done
        self._registry = registry
        self.task: asyncio.Task[None] | None = None
        self._started = self._ended = False

    def start(self) -> None:
        if self._ended:
            return
        self._registry.add(self)
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        self._started = True
        try:
            await self._serve(self.sock)
        finally:
            self.sock.release()
            self._end()

    def abort(self) -> None:
        """End the connection: a task not yet started never will, so its socket is closed
        here; a running one is cancelled (asyncssh aborts the connection)."""
        if self.task is not None:
            self.task.cancel()
        if not self._started:
            self.sock.close()
            self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._registry.discard(self)
            self._done()
