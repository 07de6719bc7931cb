"""Flow log lines are buffered: written together, promptly, and never lost at the end."""

from __future__ import annotations

import io

import trio
import trio.testing

from lbsim.dataplane.events import FlowEvent
from lbsim.observe.logs import LogWriter


def event(n: int) -> FlowEvent:
    return FlowEvent(
        kind="decision",
        time=0.0,
        protocol="Tcp",
        frontend="127.0.0.1:50000",
        rule="ssh.0",
        client=f"127.0.0.1:{40000 + n}",
        source="203.0.113.7",
        backend="web/0",
        target="127.1.0.1:22",
        access="Allow",
        nsg_rule="UserRule_allow-ssh",
    )


def test_lines_wait_for_a_flush_then_come_out_in_order() -> None:
    out = io.StringIO()
    writer = LogWriter("text", out)
    writer(event(1))
    writer(event(2))
    assert out.getvalue() == ""  # nothing written per line
    writer.flush()
    lines = out.getvalue().splitlines()
    assert [line.split()[5] for line in lines] == [
        "client=127.0.0.1:40001",
        "client=127.0.0.1:40002",
    ]


def test_a_full_buffer_is_written_at_once() -> None:
    out = io.StringIO()
    writer = LogWriter("json", out, max_lines=3)
    for n in range(3):
        writer(event(n))
    assert len(out.getvalue().splitlines()) == 3


async def test_run_flushes_every_interval_and_at_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    out = io.StringIO()
    writer = LogWriter("text", out, interval_s=0.1)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer(event(1))
        await trio.sleep(0.15)
        assert len(out.getvalue().splitlines()) == 1  # the periodic flush
        writer(event(2))
        nursery.cancel_scope.cancel()
    assert len(out.getvalue().splitlines()) == 2  # the last flush on the way out


class BrokenPipe(io.StringIO):
    """A stream whose reader has gone away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError("the reader has gone")


def test_a_stream_that_fails_ends_the_log_not_the_caller() -> None:
    writer = LogWriter("text", BrokenPipe(), max_lines=2)
    for n in range(5):
        writer(event(n))  # the second event fills the buffer: the write fails, quietly
    assert writer.lost
    writer.flush()
    assert writer._events == []  # nothing more is kept once the log has ended
