"""Flow events as log lines: text for people, JSON lines for machines."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

import attrs

from lbsim.dataplane.events import EventSink, FlowEvent


def _stamp(seconds: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
        + f".{int(seconds * 1000) % 1000:03d}Z"
    )


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


def sink(fmt: str, out: TextIO | None = None) -> EventSink:
    """An event sink writing one line per event in ``fmt`` ("text" or "json")."""
    stream = out or sys.stderr
    render = json_line if fmt == "json" else text_line

    def write(event: FlowEvent) -> None:
        stream.write(render(event) + "\n")
        stream.flush()

    return write
