"""Control-plane timings, run in a fresh interpreter by the bench (``python -m
benchkit.control``) so that the first load is a cold one; prints one JSON object.

    plan REPEATS -- LBSIM_TEMPLATE_ARGS...   load and plan as ``lbsim validate`` reads them
    nsg SECONDS -- LBSIM_TEMPLATE_ARGS...    NSG verdicts per second on the template's backends
    logcost CONNECTIONS -- LBSIM_TEMPLATE_ARGS...
                                             the flow log's cost per connection, in-process
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import trio

from lbsim.api.files import Loaded, load
from lbsim.cli import build_parser
from lbsim.control.check import Guard
from lbsim.control.nsg import Flow, decide
from lbsim.control.types import Backend, Plan
from lbsim.dataplane.events import discard
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import BackendPattern, RuntimeSettings
from lbsim.model import SecurityRuleDirection, SecurityRuleProtocol, TransportProtocol
from lbsim.observe.logs import LogWriter


def _load(template_args: Sequence[str]) -> Loaded:
    return load(build_parser().parse_args(["validate", *template_args]))


def plan_times(repeats: int, template_args: Sequence[str]) -> dict[str, Any]:
    """Milliseconds to read, load and plan: the first time, then the median of repeats."""
    times = []
    loaded = None
    for _ in range(1 + repeats):
        start = time.perf_counter()
        loaded = _load(template_args)
        times.append((time.perf_counter() - start) * 1000)
    assert loaded is not None
    return {
        "cold_ms": times[0],
        "warm_ms": statistics.median(times[1:]) if repeats else times[0],
        "nat_entries": len(loaded.plan.nat),
        "backends": len(loaded.plan.backends),
    }


def _rate(call: Callable[[int], object], seconds: float) -> float:
    """Calls per second of ``call(i)``, in batches of 1000, for about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for i in range(1000):
            call(i)
        count += 1000
    return count / (time.perf_counter() - start)


def nsg_rates(seconds: float, template_args: Sequence[str]) -> dict[str, Any]:
    """Verdicts per second: ``decide`` on prepared flows, and the runtime's per-connection
    path (``Guard.flow`` from the client's address text, then ``Guard.decide``)."""
    plan = _load(template_args).plan
    backend = _guarded_backend(plan.backends)
    guard = Guard(plan)
    ctx = guard.context(backend.virtual_network_prefixes)
    subnet, nic = backend.subnet_nsg, backend.nic_nsg
    flows = [
        Flow(
            SecurityRuleProtocol.TCP,
            SecurityRuleDirection.INBOUND,
            f"203.0.{i // 250}.{i % 250 + 1}",
            40000 + i,
            backend.private_ip_address,
            22,
        )
        for i in range(1000)
    ]
    rules = sum(len(n.security_rules) for n in (subnet, nic) if n is not None)

    def runtime_path(i: int) -> object:
        flow = guard.flow(TransportProtocol.TCP, "127.0.0.1", 40000 + i, backend, 22)
        return guard.decide(flow, backend)

    return {
        "decide_per_s": _rate(lambda i: decide(flows[i], subnet, nic, ctx), seconds),
        "runtime_per_s": _rate(runtime_path, seconds),
        "user_rules": rules,
        "verdict": decide(flows[0], subnet, nic, ctx).access.value,
    }


def _guarded_backend(backends: Sequence[Backend]) -> Backend:
    """The first backend behind an NSG (the first backend if none is)."""
    for backend in backends:
        if backend.subnet_nsg is not None or backend.nic_nsg is not None:
            return backend
    return backends[0]


def log_cost(connections: int, template_args: Sequence[str]) -> dict[str, Any]:
    """Microseconds per connection that flow log lines add to the runtime's own paths: a
    connection's decision (``_admit``) and close events, with the lines (text, then JSON)
    written to a file every 128 connections, against the same calls with logging off (the
    median of 5 alternating pairs)."""
    plan = _load(template_args).plan
    names = {(b.scale_set or b.name).lower() for b in plan.backends}
    settings = RuntimeSettings(backends={n: BackendPattern("127.0.0.1:9") for n in names})
    with tempfile.TemporaryFile("w") as out:
        return trio.run(_log_cost, plan, settings, connections, out)


async def _log_cost(
    plan: Plan, settings: RuntimeSettings, connections: int, out: TextIO
) -> dict[str, Any]:
    async def per_connection(writer: LogWriter | None) -> float:
        runtime = Runtime(plan, settings, discard if writer is None else writer.take)
        async with trio.open_nursery() as nursery:  # the backends' addresses, no server
            await runtime.backends.start(nursery)
        listener = next(iter(runtime.backends.listeners()))
        route = listener.routes[0]
        stats = listener.stats.open_flow(trio.current_time())
        stats.close("client-closed")
        start = time.perf_counter()
        for i in range(connections):
            peer = ("127.0.0.1", 40000 + i % 1000)
            _, hits = runtime.admit(listener, route, "203.0.113.7", peer)
            runtime.reports.close(listener, (route, "203.0.113.7", peer, hits), stats)
            if writer is not None and i % 128 == 127:
                writer.flush()
        if writer is not None:
            writer.flush()
        return (time.perf_counter() - start) * 1e6 / connections

    costs: dict[str, list[float]] = {"text": [], "json": []}
    for _ in range(5):
        for fmt, each in costs.items():
            off = await per_connection(None)
            each.append(await per_connection(LogWriter(fmt, out)) - off)
    return {
        "us_per_connection": statistics.median(costs["text"]),
        "json_us_per_connection": statistics.median(costs["json"]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchkit.control")
    parser.add_argument("what", choices=("plan", "nsg", "logcost"))
    parser.add_argument(
        "amount", type=float, help="repeats (plan), seconds (nsg) or connections (logcost)"
    )
    parser.add_argument("template_args", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    rest = [a for a in args.template_args if a != "--"]
    if args.what == "plan":
        result = plan_times(int(args.amount), rest)
    elif args.what == "logcost":
        result = log_cost(int(args.amount), rest)
    else:
        result = nsg_rates(args.amount, rest)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
