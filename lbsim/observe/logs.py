"""Flow events as log lines: text for people, JSON lines for machines."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

import attrs
import trio

from lbsim.dataplane.events import FlowEvent


class _Stamps:
    """ISO 8601 time stamps with milliseconds, UTC. Events mostly come in time order, so the
    last stamp is kept: the seconds part is formatted once per second, the whole stamp once
    per millisecond (a busy run logs many events within one)."""

    __slots__ = ("millisecond", "second", "seconds_text", "text")

    def __init__(self) -> None:
        self.second = self.millisecond = -1
        self.seconds_text = self.text = ""

    def __call__(self, seconds: float) -> str:
        millisecond = int(seconds * 1000)
        if millisecond == self.millisecond:
            return self.text
        second = millisecond // 1000
        if second != self.second:
            self.seconds_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self.second = second
        self.millisecond = millisecond
        self.text = f"{self.seconds_text}.{millisecond % 1000:03d}Z"
        return self.text


_stamp = _Stamps()


def text_line(event: FlowEvent) -> str:
    head = f"{_stamp(event.time)} {event.kind} {event.protocol} {event.frontend} {event.rule}"
    who = f"client={event.client} source={event.source} backend={event.backend}"
    if event.kind == "decision":
        return f"{head} {who} access={event.access} rule={event.nsg_rule or '-'}"
    if event.kind == "close":
        return (
            f"{head} {who} in={event.bytes_in}B out={event.bytes_out}B "
            f"duration={event.duration_s:.3f}s reason={event.reason}"
        )
    return f"{head} {who} target={event.target} reason={event.reason}"


def json_line(event: FlowEvent) -> str:
    data = attrs.asdict(event)
    data["time"] = _stamp(event.time)
    return json.dumps(data, separators=(",", ":"))


class LogWriter:
    """An event sink writing one line per event in ``fmt`` ("text" or "json").

    Events are kept as they come and written together: by ``run`` every ``interval_s`` (a
    tenth of a second: prompt for a person watching), whenever ``max_lines`` are waiting,
    and once more when ``run`` ends. Writing, and even formatting, each line as it comes
    would cost the hot path far more: a system call per event, and formatting interleaved
    with the relay's own work runs several times slower than a batch of it."""

    def __init__(
        self,
        fmt: str,
        out: TextIO | None = None,
        *,
        interval_s: float = 0.1,
        max_lines: int = 256,
    ) -> None:
        self.render = json_line if fmt == "json" else text_line
        self.out = out
        self.interval_s = interval_s
        self.max_lines = max_lines
        self._events: list[FlowEvent] = []
        self.lost = False  # the stream failed: the log has ended

    def __call__(self, event: FlowEvent) -> None:
        if self.lost:
            return
        self._events.append(event)
        if len(self._events) >= self.max_lines:
            self.flush()

    def flush(self) -> None:
        """Write the waiting lines. A stream that can no longer be written (a closed pipe, a
        full disk) ends the log, never the traffic: later events are dropped."""
        if not self._events:
            return
        lines = "\n".join(map(self.render, self._events))
        self._events.clear()
        stream = self.out or sys.stderr  # looked up now: the stream may have been replaced
        try:
            stream.write(lines + "\n")
            stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            self.lost = True

    async def run(self) -> None:
        """Flush every ``interval_s`` until cancelled, then once more."""
        try:
            while True:
                await trio.sleep(self.interval_s)
                self.flush()
        finally:
            self.flush()
