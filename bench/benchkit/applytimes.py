"""Time to change a running load balancer, run in a fresh interpreter by the bench (``python
-m benchkit.applytimes``) so that the bench process stays clean; prints one JSON object.

    applytimes INSTANCES STEP REPEATS --pool-start PORT --backend HOST:PORT

``lbsim.serve`` runs the bench template in-process with INSTANCES instances behind one TCP
NAT pool of INSTANCES+STEP ports, every instance mapped to the same backend (the bench's echo),
so no built-in instance server starts. Then, REPEATS times: ``await lb.scale`` out by STEP
(checking that a new instance's NAT port relays), and back in. The plan and the diff of that
same scale-out are timed alone too: the control plane's part of a change, the rest being the
runtime's ``apply`` (binding and closing listeners, the backends' bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import trio

import lbsim
from lbsim.api.session import Session
from lbsim.control import fleet as fleets
from lbsim.control.diff import diff
from lbsim.control.plan import plan
from lbsim.errors import LbsimError

TEMPLATE = Path(__file__).resolve().parents[1] / "templates" / "bench.json"
SCALE_SET = "bench"
_RELAY_TIMEOUT_S = 5.0


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Milliseconds (medians of ``repeats``) to scale out by ``step`` and back in, and to
    plan and diff the scale-out alone."""
    n, step = args.instances, args.step
    pools = [{"name": "tcp", "protocol": "Tcp", "start": args.pool_start, "backendPort": 22}]
    params = {"instanceCount": n, "poolSize": n + step, "pools": pools}
    times: dict[str, list[float]] = {"scale_out": [], "scale_in": [], "plan": [], "diff": []}
    async with lbsim.serve(
        TEMPLATE, params=params, config={"backends": {SCALE_SET: args.backend}}
    ) as lb:
        listeners = len(lb.runtime.listeners)
        for _ in range(args.repeats):
            plan_ms, diff_ms = plan_and_diff(lb, n + step, step)
            times["plan"].append(plan_ms)
            times["diff"].append(diff_ms)
            start = time.perf_counter()
            report = await lb.scale(SCALE_SET, n + step)
            times["scale_out"].append(_ms_since(start))
            _expect(report.instances_added, step, "scale-out: instances added")
            _expect(report.added, step, "scale-out: listeners opened")
            grown = len(lb.runtime.listeners)
            await _check_relays(lb, report.instances_added[-1])
            start = time.perf_counter()
            report = await lb.scale(SCALE_SET, n)
            times["scale_in"].append(_ms_since(start))
            _expect(report.instances_removed, step, "scale-in: instances removed")
            _expect(report.removed, step, "scale-in: listeners closed")
    medians = {f"{k}_ms": statistics.median(v) for k, v in times.items()}
    return {**medians, "listeners": listeners, "listeners_grown": grown}


def plan_and_diff(lb: Session, capacity: int, step: int) -> tuple[float, float]:
    """Milliseconds of plan() (with the live fleet scaled, the running plan as previous) and
    of diff(), as ``lb.scale`` computes them, without applying anything."""
    vmss = next(v for v in lb.deployment.virtual_machine_scale_sets if v.name == SCALE_SET)
    fleet = fleets.scale(lb.fleet, vmss, capacity)
    start = time.perf_counter()
    planned = plan(lb.deployment, dict(lb.config.frontends), fleet=fleet, previous=lb.plan)
    middle = time.perf_counter()
    change = diff(lb.plan, planned)
    end = time.perf_counter()
    _expect(change.instances_added, step, "plan and diff: instances added")
    return (middle - start) * 1000, (end - middle) * 1000


async def _check_relays(lb: Session, label: str) -> None:
    """A new instance's NAT port takes a connection and relays an echo: the change is live."""
    host, port = lb.endpoint(SCALE_SET, int(label.rpartition("/")[2]), 22)
    got = b""
    try:
        with trio.fail_after(_RELAY_TIMEOUT_S):
            async with await trio.open_tcp_stream(host, port) as stream:
                await stream.send_all(b"ping")
                while len(got) < 4 and (chunk := await stream.receive_some(4 - len(got))):
                    got += chunk
    except (OSError, trio.BrokenResourceError, trio.TooSlowError) as error:
        got = f"{type(error).__name__}: {error}".encode()
    if got != b"ping":  # a LbsimError: lbsim.serve hands it out of its nursery as it is
        raise LbsimError("BenchRelayFailed", f"{label} at {host}:{port}: {got.decode()}")


def _expect(items: Sequence[Any], count: int, what: str) -> None:
    if len(items) != count:
        raise LbsimError("BenchUnexpectedChange", f"{what}: {len(items)}, expected {count}")


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchkit.applytimes")
    parser.add_argument("instances", type=int)
    parser.add_argument("step", type=int)
    parser.add_argument("repeats", type=int)
    parser.add_argument("--pool-start", type=int, required=True)
    parser.add_argument("--backend", required=True, help="HOST:PORT every instance maps to")
    args = parser.parse_args(argv)
    try:
        result = trio.run(measure, args)
    except LbsimError as error:
        result = {"error": str(error)}
    print(json.dumps(result))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
