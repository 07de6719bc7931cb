"""Waiting in tests for what another task, thread or process does."""

from __future__ import annotations

from collections.abc import Callable

import trio


async def eventually(condition: Callable[[], bool], within: float = 3.0) -> None:
    with trio.fail_after(within):
        while not condition():  # noqa: ASYNC110  (polling plain counters)
            await trio.sleep(0.02)
