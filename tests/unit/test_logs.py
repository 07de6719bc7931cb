"""Flow log lines are buffered: written together, promptly, and never lost at the end."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

import attrs
import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st
from waiting import eventually

from lbsim.dataplane.events import FlowEvent, FlowNames, FlowRecord, NsgHit
from lbsim.observe.logs import LogWriter, _write_ready, json_lines, stamper, text_lines

NAMES = FlowNames("Tcp", "127.0.0.1:50000", "ssh.0", "web/0", "127.1.0.1:22")


def event(n: int) -> FlowEvent:
    return FlowEvent(
        "decision",
        0.0,
        NAMES,
        ("127.0.0.1", 40000 + n),
        "203.0.113.7",
        access="Allow",
        nsg_rule="UserRule_allow-ssh",
    )


def test_lines_wait_for_a_flush_then_come_out_in_order() -> None:
    out = io.StringIO()
    writer = LogWriter("text", out)
    writer.take(event(1))
    writer.take(event(2))
    assert out.getvalue() == ""  # nothing written per line
    writer.flush()
    lines = out.getvalue().splitlines()
    assert [line.split()[5] for line in lines] == [
        "client=127.0.0.1:40001",
        "client=127.0.0.1:40002",
    ]


async def test_a_burst_is_written_in_chunks_with_others_running_between() -> None:
    out = io.StringIO()
    writer = LogWriter("json", out, interval_s=0.0, chunk_lines=3)
    for n in range(8):
        writer.take(event(n))
    seen: list[int] = []  # lines written, as another task sees them between its steps

    async def watch() -> None:
        while not seen or seen[-1] < 8:
            seen.append(len(out.getvalue().splitlines()))
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        with trio.fail_after(5):
            await watch()
        nursery.cancel_scope.cancel()
    assert set(seen) & {3, 6}  # another task ran between two chunks
    assert set(seen) <= {0, 3, 6, 8}  # whole chunks only
    clients = [json.loads(line)["client"] for line in out.getvalue().splitlines()]
    assert clients == [f"127.0.0.1:{40000 + n}" for n in range(8)]  # the oldest first


async def test_run_writes_every_interval_and_at_the_end() -> None:
    out = io.StringIO()
    writer = LogWriter("text", out, interval_s=0.05)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer.run)
        writer.take(event(1))
        await eventually(lambda: out.getvalue().count("\n") == 1)  # the periodic write
        writer.take(event(2))
        nursery.cancel_scope.cancel()
    assert len(out.getvalue().splitlines()) == 2  # the last write on the way out


@contextlib.contextmanager
def unread_pipe() -> Iterator[tuple[TextIO, int]]:
    """A text stream into a pipe, and the pipe's other end, which nobody reads yet."""
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with open(write_end, "w", encoding="utf-8") as out:
        try:
            yield out, read_end
        finally:
            os.close(read_end)


async def _read_until(read_end: int, wanted: str) -> str:
    """All the pipe gives until ``wanted`` is among it (the writer goes on meanwhile)."""
    got = b""
    with trio.fail_after(5):
        while wanted.encode() not in got:
            try:
                got += os.read(read_end, 1 << 16)
            except BlockingIOError:
                await trio.sleep(0.01)
    return got.decode()


async def test_a_reader_that_stops_reading_holds_up_neither_traffic_nor_memory() -> None:
    with unread_pipe() as (out, read_end):
        writer = LogWriter("text", out, interval_s=0.01, chunk_lines=10, max_waiting=50)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            with trio.fail_after(5):  # a blocked write would stop this task too
                for n in range(2000):  # ~300 KB of lines: several times what a pipe holds
                    writer.take(event(n))
                    if n % 10 == 9:
                        await trio.sleep(0.002)
                await trio.sleep(0.05)
            assert len(writer._events) <= 50  # the backlog is bounded
            assert writer.dropped > 500
            writer.take(event(2000))
            text = await _read_until(read_end, "client=127.0.0.1:42000 ")  # reading again
            nursery.cancel_scope.cancel()
    seen, said = 0, 0  # events written, and dropped as the log says, line by line
    for line in text.splitlines():
        if "FlowLogLinesDropped" in line:
            said += int(line.split("FlowLogLinesDropped: ")[1].split()[0])
        else:  # each event is in order, after the events said to be dropped before it
            assert line.split()[5] == f"client=127.0.0.1:{40000 + seen + said}"
            seen += 1
    assert said == writer.dropped
    assert seen + said == 2001  # the last event, taken after the reader came back, is there


def test_a_pipe_is_given_whole_lines_only() -> None:
    """What a pipe takes ends at a line's end, so whatever else writes to it (lbsim's own
    notices) lands between two lines, never inside one."""
    read_end, write_end = os.pipe()
    try:
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, 8192)  # two pages
        data = b"".join(f"{n:099d}\n".encode() for n in range(200))  # 100-byte lines
        sent = _write_ready(write_end, data)
        assert 0 < sent < len(data)  # it took what it holds, and no more
        assert data[:sent].endswith(b"\n")
    finally:
        os.close(read_end)
        os.close(write_end)


async def test_run_writes_a_file_in_order(tmp_path: Path) -> None:
    path = tmp_path / "flows.log"
    with path.open("w", encoding="utf-8") as out:
        writer = LogWriter("text", out, interval_s=0.01, chunk_lines=64)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            for n in range(600):
                writer.take(event(n))
            await eventually(lambda: path.read_text().count("\n") == 600)
            nursery.cancel_scope.cancel()
    clients = [line.split()[5] for line in path.read_text().splitlines()]
    assert clients == [f"client=127.0.0.1:{40000 + n}" for n in range(600)]


async def test_the_end_waits_a_bounded_time_for_a_reader_that_never_reads() -> None:
    with unread_pipe() as (out, _):
        writer = LogWriter("text", out, interval_s=0.01, final_wait_s=0.2)
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            for n in range(2000):
                writer.take(event(n))
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
        assert 0.2 <= trio.current_time() - started < 2


class BrokenPipe(io.StringIO):
    """A stream whose reader has gone away."""

    def write(self, text: str) -> int:
        raise BrokenPipeError("the reader has gone")


def test_a_stream_that_fails_ends_the_log_not_the_caller() -> None:
    writer = LogWriter("text", BrokenPipe())
    writer.take(event(1))
    writer.flush()  # the write fails, quietly
    assert writer.lost
    for n in range(5):
        writer.take(event(n))
    writer.flush()
    assert writer._events == []  # nothing more is kept once the log has ended


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_plain_records_are_written_as_their_events_are(fmt: str) -> None:
    """The runtime hands sinks plain tuples of an event's fields (FlowRecord)."""
    closed = event(2)._replace(kind="close", bytes_in=10, duration_s=0.25, reason="client-closed")
    events = [event(1), closed]
    records = [cast(FlowRecord, tuple(e)) for e in events]
    written = []
    batches: list[list[FlowRecord]] = [list(events), records]
    for items in batches:
        out = io.StringIO()
        writer = LogWriter(fmt, out)
        for item in items:
            writer.take(item)
        writer.flush()
        written.append(out.getvalue())
    assert written[1] == written[0]
    assert len(written[0].splitlines()) == 2
    assert "in=10B" in written[0] or '"bytes_in":10' in written[0]


def test_each_line_of_a_batch_has_its_own_time_stamp() -> None:
    times = [0.0005, 0.0009, 0.0012, 61.001, 1.5]
    lines = text_lines([event(n)._replace(time=t) for n, t in enumerate(times)])
    assert [line.split()[0] for line in lines] == [
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:00.000Z",
        "1970-01-01T00:00:00.001Z",
        "1970-01-01T00:01:01.001Z",
        "1970-01-01T00:00:01.500Z",
    ]
    assert [line.split()[5] for line in lines] == [
        f"client=127.0.0.1:{40000 + n}" for n in range(5)
    ]


def test_stamps_are_iso_8601_utc_with_milliseconds() -> None:
    stamp = stamper()
    assert stamp(0.0) == "1970-01-01T00:00:00.000Z"
    assert stamp(1.2345) == "1970-01-01T00:00:01.234Z"
    assert stamp(1.2349) == "1970-01-01T00:00:01.234Z"  # the same millisecond
    assert stamp(61.001) == "1970-01-01T00:01:01.001Z"
    assert stamp(1.5) == "1970-01-01T00:00:01.500Z"  # an earlier one after a later one


@given(st.lists(st.floats(min_value=0, max_value=4e9), min_size=1, max_size=20))
def test_stamps_match_the_calendar_in_any_order(times: list[float]) -> None:
    stamp = stamper()
    for seconds in times:
        millisecond = int(seconds * 1000)
        moment = datetime.datetime.fromtimestamp(millisecond // 1000, datetime.UTC)
        expected = f"{moment:%Y-%m-%dT%H:%M:%S}.{millisecond % 1000:03d}Z"
        assert stamp(seconds) == expected


_text = st.text(max_size=12)
_count = st.integers(min_value=0, max_value=1 << 40)


@given(
    names=st.builds(FlowNames, _text, _text, _text, _text, _text, _text, _text),
    peer=st.tuples(st.ip_addresses().map(str), st.integers(0, 65535)),
    texts=st.tuples(_text, _text, _text, _text, _text),
    counts=st.tuples(_count, _count, _count, _count),
    duration_s=st.floats(min_value=0, max_value=1e6),
    hits=st.lists(st.builds(NsgHit, _text, _text, _text), max_size=2).map(tuple),
)
def test_json_lines_are_the_events_fields_in_order(
    *,
    names: FlowNames,
    peer: tuple[str, int],
    texts: tuple[str, str, str, str, str],
    counts: tuple[int, int, int, int],
    duration_s: float,
    hits: tuple[NsgHit, ...],
) -> None:
    kind, source, access, nsg_rule, reason = texts
    bytes_in, bytes_out, packets_in, packets_out = counts
    event = FlowEvent(
        kind, 61.5, names, peer, source, access, nsg_rule, hits,
        bytes_in, bytes_out, packets_in, packets_out, duration_s, reason,
    )  # fmt: skip
    (line,) = json_lines([cast(FlowRecord, tuple(event))])
    assert "\n" not in line
    members = json.loads(line, object_pairs_hook=list)
    expected = {
        "kind": kind,
        "time": "1970-01-01T00:01:01.500Z",
        "protocol": names.protocol,
        "frontend": names.frontend,
        "rule": names.rule,
        "client": f"{peer[0]}:{peer[1]}",
        "source": source,
        "backend": names.backend,
        "target": names.target,
        "access": access,
        "nsg_rule": nsg_rule,
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "duration_s": duration_s,
        "reason": reason,
        "destination": names.destination,
        "interface": names.interface,
        "packets_in": packets_in,
        "packets_out": packets_out,
        "nsg_hits": [attrs.asdict(hit) for hit in hits],
    }
    assert [key for key, _ in members] == list(expected)  # FlowEvent's order
    assert json.loads(line) == json.loads(json.dumps(expected))
