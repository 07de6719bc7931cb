"""One idle-timeout watcher per trio run, for every relayed TCP flow.

A task or a timer per flow would cost each idle connection a few KiB; instead each watched
flow has one entry in a heap ordered by the time it would expire. The watcher's task
(:meth:`IdleReaper.run`, started by its owner in a nursery: the reactor, or the streams
engine) wakes at the earliest such time, expires the flows that have not moved a byte since,
and files the others again under their new time. Copy loops only store
the time of their last byte: ``flow.last = trio.current_time()``.
"""

from __future__ import annotations

import heapq
import math
from typing import Protocol

import trio

__all__ = ["Expirable", "IdleReaper"]


class Expirable(Protocol):
    """What the watcher needs of a flow."""

    last: float
    idle_timeout_s: float
    done: bool

    def expire(self) -> None:
        """End the flow because it was idle."""


class IdleReaper:
    """Expires each watched flow once ``idle_timeout_s`` has passed without activity."""

    def __init__(self) -> None:
        """An empty watcher; :meth:`run` expires its flows."""
        self._heap: list[tuple[float, int, Expirable]] = []
        self._live = 0
        self._wake: trio.CancelScope | None = None

    @property
    def watched(self) -> int:
        """How many flows are watched and not yet forgotten."""
        return self._live

    @property
    def pending(self) -> int:
        """How many entries the heap holds (watched flows, plus forgotten ones not yet
        reclaimed: never more than twice the watched ones plus 64)."""
        return len(self._heap)

    def watch(self, flow: Expirable) -> None:
        """Watch ``flow`` until :meth:`forget`; it expires ``idle_timeout_s`` after ``last``."""
        self._live += 1
        self._push(flow, flow.last + flow.idle_timeout_s)

    def forget(self, flow: Expirable) -> None:
        """Stop watching ``flow``; memory of forgotten flows is reclaimed in bulk."""
        flow.done = True
        self._live -= 1
        if len(self._heap) > 2 * self._live + 64:
            self._heap = [entry for entry in self._heap if not entry[2].done]
            heapq.heapify(self._heap)

    def _push(self, flow: Expirable, deadline: float) -> None:
        """File ``flow`` under ``deadline`` and wake the watcher earlier if needed."""
        heapq.heappush(self._heap, (deadline, id(flow), flow))
        if self._wake is not None and deadline < self._wake.deadline:
            self._wake.deadline = deadline

    async def run(self) -> None:
        """Expire due flows, then sleep until the next one is due; until cancelled."""
        while True:
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:
                _, _, flow = heapq.heappop(self._heap)
                if flow.done:
                    continue
                deadline = flow.last + flow.idle_timeout_s
                if deadline <= now:
                    flow.expire()
                else:
                    heapq.heappush(self._heap, (deadline, id(flow), flow))
            next_due = self._heap[0][0] if self._heap else math.inf
            with trio.CancelScope(deadline=next_due) as self._wake:
                await trio.sleep_forever()
            self._wake = None
