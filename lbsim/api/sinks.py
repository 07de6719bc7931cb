"""Where a running lbsim's flow events go: the log lines, and the NSG flow logs when asked
for, with the tasks that write them out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from lbsim.api.config import UpConfig
from lbsim.dataplane.events import RecordSink, as_events, discard, fanout
from lbsim.observe.flowlogs import FlowLogWriter
from lbsim.observe.logs import LogWriter

__all__ = ["flow_sinks"]


def flow_sinks(config: UpConfig) -> tuple[RecordSink, list[Callable[[], Awaitable[None]]]]:
    """Where flow events go (the log lines, and the NSG flow logs if asked for), and the
    tasks that write them out."""
    values = config.values
    sinks: list[RecordSink] = []
    tasks: list[Callable[[], Awaitable[None]]] = []
    if values["log_flows"]:
        log = LogWriter(values["log_format"])
        sinks.append(log.take)
        tasks.append(log.run)
    if values["flow_log_dir"] is not None:
        interval = values["flow_log_interval_seconds"]
        flow_logs = FlowLogWriter(Path(values["flow_log_dir"]), interval)
        sinks.append(as_events(flow_logs))
        tasks.append(flow_logs.run)
    return (fanout(*sinks) if sinks else discard), tasks
