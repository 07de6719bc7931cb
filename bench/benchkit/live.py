"""The live load balancer: how long a change to a running lbsim takes (``lb.scale``)."""

from __future__ import annotations

from benchkit.context import Bench, log
from benchkit.other import in_fresh_interpreter
from benchkit.report import Section, below

# Azure takes minutes to scale a scale set; here a change should cost a test no more than a
# blink, and stay far from growing with the square of the fleet: 250 ms is about five times
# what 100 more on 900 takes today, room for a shared machine's noise.
_CHANGE_MS = 250


def apply(b: Bench) -> Section:
    """Scale-out by apply_step on apply_instances and back, in a fresh interpreter running
    ``lbsim.serve`` (``benchkit.applytimes``); each run reports the median of apply_repeats."""
    n, step, repeats = b.sizes.apply_instances, b.sizes.apply_step, b.sizes.apply_repeats
    title = f"apply: scale a running lbsim from {n:,} to {n + step:,} instances and back"
    section = Section("apply", title, ["lbsim"], [])
    out = section.row(f"scale-out {n:,} -> {n + step:,}: lb.scale", "ms", below(_CHANGE_MS, "ms"))
    plan = section.row("the same scale-out: plan() alone", "ms")
    diff = section.row("the same scale-out: diff() alone", "ms")
    into = section.row(f"scale-in {n + step:,} -> {n:,}: lb.scale", "ms", below(_CHANGE_MS, "ms"))
    listeners = section.row("listeners after the scale-out", "count")
    args = [str(n), str(step), str(repeats), "--pool-start", str(b.ports.scale_pools()[0])]
    args += ["--backend", f"127.0.0.1:{b.ports.backend}"]
    for run in range(b.runs):
        log(f"apply: run {run + 1}/{b.runs}")
        result = in_fresh_interpreter("benchkit.applytimes", args)
        out.add("lbsim", result["scale_out_ms"])
        plan.add("lbsim", result["plan_ms"])
        diff.add("lbsim", result["diff_ms"])
        into.add("lbsim", result["scale_in_ms"])
        listeners.add("lbsim", result["listeners_grown"])
    section.notes += [
        f"In-process: lbsim.serve on the bench template with {n:,} instances behind one TCP"
        f" NAT pool of {n + step:,} ports, every instance mapped to the bench backend (no"
        f" built-in instance server); then `await lb.scale(...)` out and back in, {repeats}"
        " times per run (medians), after each scale-out an echo through a new instance's"
        " port. One interpreter per run; its start and the first load are not timed.",
        "lb.scale is the whole change: the fleet, plan() with the running plan as previous,"
        " diff(), and the runtime's apply (binding or closing listeners). plan() and diff()"
        " alone are timed on the same scale-out without applying it.",
    ]
    return section
