"""lbsim up's notices: written by a task of their own, so a stderr nobody reads never holds
up the load balancer, and never keeps it from ending."""

from __future__ import annotations

import fcntl
import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

import trio
from waiting import eventually

from lbsim.cli.notices import Notices

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@contextmanager
def unread_pipe() -> Iterator[TextIO]:
    """The writing end of a small pipe that nobody reads, as a text stream."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, _F_SETPIPE_SZ, 4096)
    # (the reading end closes first: a write still blocked on the full pipe then fails)
    with os.fdopen(write_end, "w") as stream, os.fdopen(read_end, "rb"):
        yield stream


async def test_lines_are_written_in_order_each_prefixed() -> None:
    out = io.StringIO()
    notices = Notices(out)
    async with trio.open_nursery() as nursery:
        await nursery.start(notices.run)
        notices("vnet: one")
        notices("ssh: two")
        await eventually(lambda: out.getvalue().count("\n") == 2, within=10)
        nursery.cancel_scope.cancel()
    assert out.getvalue() == "lbsim: vnet: one\nlbsim: ssh: two\n"


async def test_a_pipe_nobody_reads_holds_up_neither_the_caller_nor_the_end() -> None:
    with unread_pipe() as stream:
        notices = Notices(stream, limit=50)
        with trio.fail_after(30):  # nothing here may wait on the pipe
            async with trio.open_nursery() as nursery:
                await nursery.start(notices.run)
                for n in range(2000):  # far more than the pipe holds
                    notices(f"line {n} " + "x" * 100)
                    if n % 100 == 0:
                        await trio.sleep(0.01)  # the writer takes a batch, and blocks
                assert notices.dropped > 0  # the queue stayed bounded
                nursery.cancel_scope.cancel()  # the blocked write is abandoned
            notices("one more")
            notices.flush()  # the pipe is full: left out, not waited for


async def test_flush_at_exit_writes_what_waits() -> None:
    out = io.StringIO()
    notices = Notices(out)
    notices("draining")
    notices.flush()
    assert out.getvalue() == "lbsim: draining\n"
