"""Running trio as a guest of lbsim's reactor (``lbsim up``).

Inside an ordinary ``trio.run`` the reactor is a task: each time its epoll set is ready,
trio's own loop wakes, re-arms the set and schedules the reactor. That pass of trio's
scheduler is most of what a relayed round trip costs in Python. Here the roles are swapped:
the reactor's loop owns the thread and waits on its epoll set directly, so a byte relayed
costs one ``epoll_wait``, a read and a write; trio runs alongside in guest mode (its
documented way of living inside another event loop: trio's own waits happen in a helper
thread, its tasks run here, between the reactor's rounds). UDP flows are relayed by the
reactor too; everything else (probes, built-in instances, the log writers, signals) stays in
trio tasks. The hosted reactor hands the sockets of flows that end quietly to a closing
thread (:mod:`lbsim.dataplane.closer`).

Both loops share one thread: handlers and trio tasks never run at the same time, and trio's
synchronous functions called by a handler (setting an event, starting a task) are safe; trio
wakes for them by itself.
"""

from __future__ import annotations

import collections
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import outcome
import trio

from lbsim.dataplane import fastpath
from lbsim.dataplane.reactor import HOSTED, Reactor
from lbsim.dataplane.socketflow import EPOLLIN

__all__ = ["run"]

T = TypeVar("T")


class _HostLoop:
    """The reactor's rounds, plus the callbacks trio asks the host to run."""

    __slots__ = ("_calls", "_wakeup", "outcome", "queued", "reactor")

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.outcome: outcome.Outcome[Any] | None = None
        self.queued = False
        self._calls: collections.deque[Callable[[], object]] = collections.deque()
        # Trio's helper thread posts its callbacks here: the eventfd wakes the epoll wait.
        self._wakeup = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        reactor.watch(self._wakeup, self, EPOLLIN)

    def call_soon(self, call: Callable[[], object]) -> None:
        """Run ``call`` after the current round (from this thread)."""
        self._calls.append(call)

    def call_soon_threadsafe(self, call: Callable[[], object]) -> None:
        """Run ``call`` after the current round (from any thread)."""
        self._calls.append(call)
        os.eventfd_write(self._wakeup, 1)

    def done(self, result: outcome.Outcome[Any]) -> None:
        """Trio's main task returned (or raised): the loop stops after this round."""
        self.outcome = result

    # The reactor's handler protocol, for the eventfd.
    def ready(self, events: int) -> None:
        with contextlib.suppress(BlockingIOError):  # drained by an earlier round
            os.eventfd_read(self._wakeup)

    def resume(self) -> None:  # never queued
        pass

    def serve(self) -> outcome.Outcome[Any]:
        """Rounds until trio's main task is done: handlers first, then trio's callbacks
        (those posted meanwhile wait for the next round, so neither side starves)."""
        calls, dispatch = self._calls, self.reactor.dispatch
        try:
            while self.outcome is None:
                dispatch(block=not calls)
                for _ in range(len(calls)):
                    calls.popleft()()
        finally:
            self.reactor.unwatch(self._wakeup)
            os.close(self._wakeup)
        return self.outcome


def run(async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``trio.run(async_fn, *args)``, with TCP relayed by a reactor that owns the thread
    (see the module's docstring); its flows still open at the end are reset."""
    reactor = Reactor(fastpath.FastPath(), hosted=True)
    loop = _HostLoop(reactor)
    try:
        trio.lowlevel.start_guest_run(
            _guest_main,
            reactor,
            async_fn,
            *args,
            run_sync_soon_threadsafe=loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=loop.call_soon,
            done_callback=loop.done,
        )
        result = loop.serve()
    finally:
        reactor.close()
        reactor.fast.close()
    value: T = result.unwrap()
    return value


async def _guest_main(reactor: Reactor, async_fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    HOSTED.set(reactor)
    try:
        async with trio.open_nursery() as timers:  # the reactor's own tasks (see attach)
            reactor.attach(timers)
            result = await outcome.acapture(async_fn, *args)  # raised as trio.run would
            timers.cancel_scope.cancel()
    finally:
        reactor.abort_all()  # inside the run: the close events of what is left still go out
    return result.unwrap()
