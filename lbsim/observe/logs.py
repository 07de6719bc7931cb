"""Flow events as log lines: text for people, JSON lines for machines."""

from __future__ import annotations

import json
import os
import select
import stat
import sys
import time
from collections.abc import Callable, Iterable
from typing import TextIO

import trio

from lbsim.dataplane.events import FlowEvent, FlowNames, FlowRecord, RecordSink

_MILLIS = [f"{n:03d}" for n in range(1000)]  # "000".."999": a list index is cheaper


def stamper() -> Callable[[float], str]:
    """A function from seconds since the epoch to ISO 8601 time stamps with milliseconds,
    UTC. Events mostly come in time order, so it keeps the last stamp: the seconds part is
    formatted once per second, the whole stamp once per millisecond (a busy run logs many
    events within one). A closure, not an object: its call is the cheaper."""
    last_second = last_millisecond = -1
    seconds_text = text = ""

    def stamp(seconds: float) -> str:
        nonlocal last_second, last_millisecond, seconds_text, text
        millisecond = int(seconds * 1000)
        if millisecond == last_millisecond:
            return text
        second = millisecond // 1000
        if second != last_second:
            seconds_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            last_second = second
        last_millisecond = millisecond
        text = f"{seconds_text}.{_MILLIS[millisecond % 1000]}Z"
        return text

    return stamp


_stamp = stamper()


def text_lines(events: Iterable[FlowRecord]) -> list[str]:
    """The text lines of a batch of events. Written for speed, a batch at a time: each
    event unpacked at once, one f-string per line, the stamp looked up only when the
    millisecond changes."""
    lines: list[str] = []
    add = lines.append
    last_millisecond, stamp = -1, ""
    for event in events:
        (kind, seconds, names, (address, port), source, access, nsg_rule, _,
         bytes_in, bytes_out, _, _, duration_s, reason) = event  # fmt: skip
        millisecond = int(seconds * 1000)
        if millisecond != last_millisecond:
            last_millisecond, stamp = millisecond, _stamp(seconds)
        if kind == "decision":
            add(
                f"{stamp} decision {names.head} client={address}:{port} source={source} "
                f"backend={names.backend} access={access} rule={nsg_rule or '-'}"
            )
        elif kind == "close":
            add(
                f"{stamp} close {names.head} client={address}:{port} source={source} "
                f"backend={names.backend} in={bytes_in}B out={bytes_out}B "
                f"duration={duration_s:.3f}s reason={reason}"
            )
        else:
            add(
                f"{stamp} {kind} {names.head} client={address}:{port} source={source} "
                f"backend={names.backend} target={names.target} reason={reason}"
            )
    return lines


def text_line(event: FlowEvent) -> str:
    return text_lines((event,))[0]


def json_lines(events: Iterable[FlowRecord]) -> list[str]:
    """The JSON lines of a batch of events, one object per line with FlowEvent's fields in
    order (the time as its stamp). Written for speed as ``text_lines`` is: each string is
    encoded once per batch and each route's names once, and a line is one f-string (about
    a tenth of what ``json.dumps`` of the event's dictionary costs)."""
    lines: list[str] = []
    add = lines.append
    quoted = _Quoted()
    parts: dict[FlowNames, tuple[str, str, str]] = {}
    last_millisecond, stamp = -1, ""
    for event in events:
        (kind, seconds, names, (address, port), source, access, nsg_rule, hits,
         bytes_in, bytes_out, packets_in, packets_out, duration_s, reason) = event  # fmt: skip
        millisecond = int(seconds * 1000)
        if millisecond != last_millisecond:
            last_millisecond, stamp = millisecond, _stamp(seconds)
        head, middle, tail = parts.get(names) or parts.setdefault(names, _name_parts(names))
        nsg_hits = ",".join(
            f'{{"network_security_group":{quoted[hit.network_security_group]},'
            f'"rule":{quoted[hit.rule]},"access":{quoted[hit.access]}}}'
            for hit in hits
        )
        # the client's address is the kernel's text of an IP address: nothing to escape
        add(
            f'{{"kind":{quoted[kind]},"time":"{stamp}",{head},"client":"{address}:{port}",'
            f'"source":{quoted[source]},{middle},"access":{quoted[access]},'
            f'"nsg_rule":{quoted[nsg_rule]},"bytes_in":{bytes_in},"bytes_out":{bytes_out},'
            f'"duration_s":{duration_s!r},"reason":{quoted[reason]},{tail},'
            f'"packets_in":{packets_in},"packets_out":{packets_out},"nsg_hits":[{nsg_hits}]}}'
        )
    return lines


def json_line(event: FlowEvent) -> str:
    return json_lines((event,))[0]


class _Quoted(dict[str, str]):
    """Strings as JSON strings, each encoded on first use."""

    def __missing__(self, text: str) -> str:
        quoted = self[text] = json.dumps(text)
        return quoted


def _name_parts(names: FlowNames) -> tuple[str, str, str]:
    """The JSON members of an event that come from its names, in the three runs in which
    they appear among the others."""

    def members(*pairs: tuple[str, str]) -> str:
        return ",".join(f"{json.dumps(key)}:{json.dumps(value)}" for key, value in pairs)

    return (
        members(("protocol", names.protocol), ("frontend", names.frontend), ("rule", names.rule)),
        members(("backend", names.backend), ("target", names.target)),
        members(("destination", names.destination), ("interface", names.interface)),
    )


class LogWriter:
    """Writes one line per flow event in ``fmt`` ("text" or "json").

    Its sink, ``take``, only keeps each event (a list's own ``append``: no Python call on
    the hot path). ``run`` writes what was kept every ``interval_s`` (a tenth of a second:
    prompt for a person watching), ``chunk_lines`` lines at a time with a checkpoint
    between. Formatting each line as it comes would cost the hot path far more than a
    batch of it does.

    A reader that stops reading (a paused pager, a harness that reads its pipe only at the
    end) holds up neither the traffic nor memory: ``run`` gives a pipe or a terminal only
    what it takes without blocking, and keeps the rest for later; events wait, up to
    ``max_waiting`` of them, and beyond that the oldest are dropped, counted in ``dropped``
    and said in the log where the gap is. A stream that fails (a closed pipe, a full disk)
    ends the log. (A thread that writes was tried: handing the interpreter's lock to it
    and back cost the relay 4% of its connection rate.)"""

    def __init__(
        self,
        fmt: str,
        out: TextIO | None = None,
        *,
        interval_s: float = 0.1,
        chunk_lines: int = 256,
        max_waiting: int = 100_000,
        final_wait_s: float = 5.0,
    ) -> None:
        self.render = json_lines if fmt == "json" else text_lines
        self.out = out
        self.interval_s = interval_s
        self.chunk_lines = chunk_lines
        self.max_waiting = max_waiting
        self.final_wait_s = final_wait_s
        self._events: list[FlowRecord] = []
        self.take: RecordSink = self._events.append  # the list is never replaced
        self.lost = False  # the stream failed: the log has ended
        self.dropped = 0  # events dropped because the reader fell behind
        self._unsaid = 0  # of those, the ones no line of the log mentions yet
        self._unsent = b""  # formatted, not yet taken by a reader that fell behind

    def flush(self, limit: int | None = None) -> None:
        """Format and write the oldest ``limit`` waiting lines (all by default), waiting for
        the reader if it must."""
        stream = self._stream()
        try:
            if self._unsent:
                _write_all(stream.fileno(), self._unsent)
                self._unsent = b""
            if text := self._text(limit):
                stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            self.lost = True

    async def run(self) -> None:
        """Write every ``interval_s`` until cancelled, then the rest, waiting up to
        ``final_wait_s`` for a reader that fell behind."""
        try:
            while True:
                await trio.sleep(self.interval_s)
                self._trim()
                while self._waiting():
                    if not self._send():
                        break  # the reader takes no more for now
                    await trio.lowlevel.checkpoint()
        finally:
            self._trim()
            with trio.CancelScope(shield=True), trio.move_on_after(self.final_wait_s):
                while self._waiting():
                    if not self._send():
                        await trio.sleep(0.01)

    def _waiting(self) -> bool:
        return not self.lost and bool(self._unsent or self._events)

    def _stream(self) -> TextIO:
        return self.out or sys.stderr  # looked up each time: it may have been replaced

    def _text(self, limit: int | None) -> str:
        """The oldest ``limit`` waiting events as lines, taken off the list."""
        events = self._events
        batch = events[:limit]
        del events[:limit]
        if self.lost or not batch:
            return ""
        lines = self.render(batch)
        if self._unsaid:
            lines.insert(0, _dropped_line(self._unsaid))
            self._unsaid = 0
        lines.append("")  # the last line's end, without copying the text once more
        return "\n".join(lines)

    def _send(self) -> bool:
        """Write the next chunk, as much of it as the reader takes without blocking; True
        if all of it went."""
        stream = self._stream()
        try:
            fd = stream.fileno()
        except (OSError, ValueError):  # no descriptor (a StringIO): it never blocks
            self.flush(self.chunk_lines)
            return True
        try:
            if not self._unsent:
                text = self._text(self.chunk_lines)
                stream.flush()  # what others wrote to it first goes first
                self._unsent = text.encode(stream.encoding or "utf-8", stream.errors or "strict")
            sent = _write_ready(fd, self._unsent)
        except (OSError, ValueError):
            self.lost = True
            return False
        self._unsent = self._unsent[sent:]
        return not self._unsent

    def _trim(self) -> None:
        """Drop the oldest waiting events beyond ``max_waiting``."""
        excess = len(self._events) - self.max_waiting
        if excess > 0:
            del self._events[:excess]
            self.dropped += excess
            self._unsaid += excess


def _write_ready(fd: int, data: bytes) -> int:
    """Write what ``fd`` takes now without blocking: all of it to a regular file (whose
    writes never wait for a reader), else whole lines up to a pipe's atomic size at a time
    while it has room for that much. The number of bytes written."""
    if stat.S_ISREG(os.fstat(fd).st_mode):
        return _write_all(fd, data)
    room = select.poll()
    room.register(fd, select.POLLOUT)
    sent, view = 0, memoryview(data)
    while sent < len(data) and room.poll(0):
        end = sent + select.PIPE_BUF
        if end < len(data):  # whole lines, so that others' writes fall between lines
            last = data.rfind(b"\n", sent, end)
            end = last + 1 if last >= 0 else end  # a longer line goes in pieces
        sent += os.write(fd, view[sent:end])
    return sent


def _write_all(fd: int, data: bytes) -> int:
    """Write all of ``data`` to ``fd``."""
    view, sent = memoryview(data), 0
    while sent < len(data):
        sent += os.write(fd, view[sent:])
    return sent


def _dropped_line(count: int) -> str:
    return (
        f"lbsim: warning: FlowLogLinesDropped: {count} flow log lines were dropped here:"
        " the log's reader fell behind"
    )
