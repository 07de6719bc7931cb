"""``lbsim up``: load, plan, and run the load balancer until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio
from prometheus_client import CollectorRegistry, start_http_server

from lbsim.api.config import UpConfig, resolve
from lbsim.api.files import Loaded, load
from lbsim.cli import render
from lbsim.dataplane import host
from lbsim.dataplane.events import RecordSink, as_events, fanout
from lbsim.dataplane.listeners import Listener
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import TcpEngine
from lbsim.errors import ConfigError, LbsimError
from lbsim.observe.flowlogs import FlowLogWriter
from lbsim.observe.logs import LogWriter
from lbsim.observe.metrics import RuntimeCollector

_GC_YOUNG_THRESHOLD = 10_000  # allocations between passes of the young generation (see _up)

UP_HEADERS = ("FRONTEND", "PROTOCOL", "RULE", "INSTANCE", "BACKEND PORT", "BACKEND IP", "SERVED BY")


def cmd_up(args: argparse.Namespace) -> int:
    config = resolve(args)
    loaded = load(args, frontends=dict(config.frontends), links=config.links)
    render.problems(loaded.warnings, prefix="warning: ")
    try:
        if config.runtime.tcp_engine is TcpEngine.REACTOR:
            host.run(_up, loaded, config)  # the reactor owns the thread, trio is its guest
        else:
            trio.run(_up, loaded, config)
    except BaseExceptionGroup as group:
        raise _lbsim_error(group) from None
    return 0


def _lbsim_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The lbsim error inside trio's exception groups (a bind failure, say), else the group."""
    error: BaseException | None = group.split(LbsimError)[0]
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error if error is not None else group


def _sinks(config: UpConfig) -> tuple[RecordSink, list[Callable[[], Awaitable[None]]]]:
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
    return fanout(*sinks), tasks


async def _up(loaded: Loaded, config: UpConfig) -> None:
    sink, writers = _sinks(config)
    runtime = Runtime(loaded.plan, config.runtime, sink)
    metrics = None
    try:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                for write in writers:
                    nursery.start_soon(write)
                await nursery.start(_run_until_drained, runtime, nursery.cancel_scope)
                # The template, plan and listeners live until the end: out of the cyclic
                # collector's way, its passes stay short while traffic flows. Relayed flows
                # leave no cycles (reference counting frees them), so the collector has only
                # the odd cycle of a slow path to find: it runs after 10,000 allocations
                # rather than 700 (at 700 it cost ~2 us a connection, finding nothing).
                gc.freeze()
                gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
                metrics = _start_metrics(runtime, config)
                _announce(runtime, config, metrics[0] if metrics else None)
                nursery.start_soon(_on_signals, signals, runtime, nursery.cancel_scope)
    finally:  # after the drain: metrics stay up while flows finish, and shutdown() blocks
        if metrics:
            metrics[1].shutdown()
            metrics[1].server_close()


async def _run_until_drained(
    runtime: Runtime, done: trio.CancelScope, *, task_status: trio.TaskStatus[Runtime]
) -> None:
    await runtime.run(task_status=task_status)
    done.cancel()  # drained: stop listening for signals too


async def _on_signals(
    signals: AsyncIterator[int], runtime: Runtime, everything: trio.CancelScope
) -> None:
    """The first SIGINT/SIGTERM drains; a second one stops at once (open flows are reset)."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if not runtime.stopping:
            print(f"lbsim: {name}: draining (again to stop at once)", file=sys.stderr)
            runtime.stop()
        else:
            print(f"lbsim: {name}: stopping now", file=sys.stderr)
            everything.cancel()
            return


def _start_metrics(runtime: Runtime, config: UpConfig) -> tuple[str, Any] | None:
    port, address = config.values["metrics_port"], config.values["metrics_address"]
    if port == 0:
        return None
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(runtime))
    try:
        server, _thread = start_http_server(port, addr=address, registry=registry)
    except OSError as error:
        raise ConfigError(
            "MetricsBindFailed", f"cannot serve metrics on {address}:{port}: {error.strerror}"
        ) from None
    host = f"[{address}]" if ":" in address else address
    return f"http://{host}:{server.server_port}/metrics", server


def _announce(runtime: Runtime, config: UpConfig, metrics_url: str | None) -> None:
    ready_file = config.values["ready_file"]
    if ready_file:  # first: a file that cannot be written is an error before "ready"
        _write_ready_file(Path(ready_file), runtime, metrics_url)
    listeners = runtime.listeners
    builtin = len({s.identity.name for s in runtime.instances})
    print(
        f"lbsim: ready listeners={len(listeners)} builtin_instances={builtin} "
        f"metrics={metrics_url or 'off'}",
        flush=True,
    )
    rows = [_row(listener) for listener in listeners]
    print(render.table(rows, UP_HEADERS), flush=True)


def _row(listener: Listener) -> list[Any]:
    route = listener.routes[0]
    instance = (
        route.backend.label if len(listener.routes) == 1 else f"{len(listener.routes)} backends"
    )
    return [
        listener.label,
        listener.protocol.value,
        listener.entry.rule_name,
        instance,
        route.backend_port,
        route.backend.private_ip_address if len(listener.routes) == 1 else "-",
        route.served_by or "(stopped)",
    ]


def listener_json(listener: Listener) -> dict[str, Any]:
    entry = listener.entry
    return {
        "loadBalancer": entry.load_balancer,
        "ruleName": entry.rule_name,
        "frontendIPConfiguration": entry.frontend.name,
        "frontendIPAddress": entry.frontend.address,
        "frontendPort": entry.frontend_port,
        "protocol": listener.protocol.value,
        "backendPort": entry.backend_port,
        "backends": [
            {
                "scaleSet": r.backend.scale_set,
                "instanceId": r.backend.instance_id,
                "name": r.backend.name,
                "backendIPAddress": r.backend.private_ip_address,
                "servedBy": r.served_by,
            }
            for r in listener.routes
        ],
    }


def _write_ready_file(path: Path, runtime: Runtime, metrics_url: str | None) -> None:
    data = {
        "pid": os.getpid(),
        "metrics": metrics_url,
        "listeners": [listener_json(listener) for listener in runtime.listeners],
    }
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        raise ConfigError("ReadyFileFailed", f"cannot write {path}: {error.strerror}") from None
