"""Scale, UDP, control plane, and the cost of metrics and flow logs."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchkit import targets
from benchkit.context import Bench, log
from benchkit.procs import BenchError, accepts, output, rss_kib
from benchkit.report import Section, above, at_least, below
from benchkit.targets import BENCH, Endpoint, LbsimLayout
from benchkit.tcp import HOST, measure_rate

# --- scale ---------------------------------------------------------------------------------


def scale(b: Bench) -> Section:
    n = b.sizes.scale_instances
    title = f"scale: {n} instances x 3 NAT pools = {3 * n:,} listeners"
    section = b.section("scale", title, ["haproxy", "lbsim"], [("lbsim", "haproxy")])
    ready = section.row("time to ready", "s", below(3, "s"))
    rss = section.row("RSS when ready", "MB", below(200, "MB"))
    count = section.row("listeners", "count")
    pools = b.ports.scale_pools()
    listens = [(start + i, b.ports.backend) for start in pools for i in range(n)]
    for run in range(b.runs):
        log(f"scale: run {run + 1}/{b.runs}")
        layout = LbsimLayout(
            tuple((f"p{k}", "Tcp", start, 22 + k) for k, start in enumerate(pools)),
            instances=n,
            pool_size=n,
            backend=f"127.0.0.1:{b.ports.backend}",
        )
        codes = [("lbsim", targets.THIS)] + ([("before", b.baseline)] if b.baseline else [])
        for name, code in b.rotate(codes, run):  # one at a time: they share the layout
            with targets.lbsim(layout, b.tmp, name=f"{name}-scale", code=code) as run_:
                _check_relays(listens[-1][0], name)
                ready.add(name, run_.ready_s)
                rss.add(name, rss_kib(run_.proc.pid) / 1024)
                count.add(name, run_.listeners)
        if targets.have_haproxy():
            with targets.haproxy(b.ports, b.tmp, listens) as (_, proc, ready_s):
                ready.add("haproxy", ready_s)
                rss.add("haproxy", rss_kib(proc.pid) / 1024)
                count.add("haproxy", len(listens))
    section.notes += [
        "Time to ready: from starting the process to its ready file (lbsim) or to its last"
        " listener accepting (HAProxy); lbsim's includes the interpreter's start, the"
        " template's load and plan.",
        "Every listener maps to the bench backend, so no built-in instance server is started.",
    ]
    return section


def _check_relays(port: int, name: str) -> None:
    if not accepts(port):
        raise BenchError(f"{name}: the last listener (port {port}) does not accept")


# --- UDP -----------------------------------------------------------------------------------


def udp(b: Bench) -> Section:
    title = "UDP: 64 B datagrams to an echo through a NAT port"
    columns, ratios = ["direct", "nginx", "lbsim"], [("lbsim", "direct"), ("lbsim", "nginx")]
    section = b.section("udp", title, columns, ratios)
    rate = section.row("datagrams, 32 in flight", "dgram/s")
    lost = section.row("datagrams lost, 32 in flight", "count")
    p50 = section.row("round trip p50, 1 in flight", "us")
    p99 = section.row("round trip p99, 1 in flight", "us")
    with _udp_points(b) as points:
        for run in range(b.runs):
            log(f"udp: run {run + 1}/{b.runs}")
            for point in b.rotate(points, run):
                port, s = point.udp, b.sizes
                flood = b.client("udp", HOST, port, s.udp_seconds, 64, 32, 50_000_000)
                rtt = b.client("udp", HOST, port, 2 * s.udp_seconds, 64, 1, s.udp_rtt_count)
                rate.add(point.name, flood["rate"])
                lost.add(point.name, flood["lost"])
                p50.add(point.name, rtt["p50_us"])
                p99.add(point.name, rtt["p99_us"])
    if not targets.have_nginx_udp():
        section.notes.append("nginx with its stream module is not installed: no nginx column.")
    section.notes.append("A window with no reply for 50 ms counts as lost and is sent anew.")
    return section


@contextlib.contextmanager
def _udp_points(b: Bench) -> Iterator[list[Endpoint]]:
    assert b.direct is not None
    points = [b.direct]
    with contextlib.ExitStack() as stack:
        if targets.have_nginx_udp():
            points.append(stack.enter_context(targets.nginx_udp(b.ports, b.tmp)))
        points += b.lbsim_points(stack)
        yield points


# --- control plane -------------------------------------------------------------------------


def control(b: Bench) -> Section:
    section = Section("control", "control plane (in a fresh interpreter)", ["lbsim"], [])
    largest = _largest_template(b.corpus)
    synthetic = _synthetic_args(b)
    if largest is not None:
        _plan_rows(b, section, f"largest corpus template ({largest[0].parent.name})", largest[1])
    else:
        section.notes.append(f"no corpus found at {b.corpus}: its rows are left out.")
    _plan_rows(b, section, f"synthetic {b.sizes.scale_instances}-instance, 3 pools", synthetic)
    decide = section.row("NSG verdicts, decide()", "/s", above(100_000, "/s"))
    runtime = section.row("NSG verdicts, runtime path (Flow from text + decide)", "/s")
    bench_args = [str(targets.TEMPLATE)]
    for run in range(b.runs):
        log(f"control: NSG run {run + 1}/{b.runs}")
        result = _control(b, "nsg", b.sizes.nsg_seconds, bench_args)
        decide.add("lbsim", result["decide_per_s"])
        runtime.add("lbsim", result["runtime_per_s"])
    section.notes += [
        "Load and plan: reading the files, the ARM loader and plan(), as `lbsim validate` and"
        " `lbsim up` do; cold is the first time in a fresh interpreter (imports excluded),"
        f" warm the median of {b.sizes.plan_repeats} more.",
        "NSG verdicts: the bench template's subnet NSG (three rules that do not match, then the"
        " allow rule), 1,000 different client addresses, one thread.",
    ]
    return section


def _plan_rows(b: Bench, section: Section, what: str, args: list[str]) -> None:
    cold = section.row(f"{what}: load+plan, cold", "ms", below(200, "ms"))
    warm = section.row(f"{what}: load+plan, warm", "ms")
    for run in range(b.runs):
        log(f"control: {what}: run {run + 1}/{b.runs}")
        result = _control(b, "plan", b.sizes.plan_repeats, args)
        cold.add("lbsim", result["cold_ms"])
        warm.add("lbsim", result["warm_ms"])


def _control(b: Bench, what: str, amount: float, args: list[str]) -> dict[str, Any]:
    return in_fresh_interpreter("benchkit.control", [what, str(amount), "--", *args])


def in_fresh_interpreter(module: str, args: list[str]) -> dict[str, Any]:
    """Run ``python -m module args`` (a benchkit module) and return the JSON object it
    printed last."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), env.get("PYTHONPATH")]))
    text = output([sys.executable, "-m", module, *args], timeout_s=300.0, env=env)
    try:
        result: dict[str, Any] = json.loads(text.splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(f"{module} {' '.join(args[:1])}: {text[-400:]}") from None
    if "error" in result:
        raise BenchError(f"{module} {' '.join(args)}: {result['error']}")
    return result


def _largest_template(corpus: Path) -> tuple[Path, list[str]] | None:
    """The largest azuredeploy.json of the corpus, with its parameters file if it has one."""
    found = sorted(corpus.glob("*/azuredeploy.json"), key=lambda p: p.stat().st_size)
    if not found:
        return None
    template = found[-1]
    params = template.with_name("azuredeploy.parameters.json")
    args = [str(template), "--fill-missing"]
    return template, args + (["-p", str(params)] if params.exists() else [])


def _synthetic_args(b: Bench) -> list[str]:
    n = b.sizes.scale_instances
    pools = [
        {"name": f"p{k}", "protocol": "Tcp", "start": start, "backendPort": 22 + k}
        for k, start in enumerate(b.ports.scale_pools())
    ]
    return [
        str(targets.TEMPLATE),
        *("--param", f"instanceCount={n}", "--param", f"poolSize={n}"),
        *("--param", "pools=" + json.dumps(pools)),
    ]


# --- metrics and logging -------------------------------------------------------------------


_BULK_PAIRS = 3  # bulk runs of each variant per round of the metrics workload
_LOGCOST_CONNECTIONS = 100_000


def metrics(b: Bench) -> Section:
    title = "metrics and flow logs: lbsim with them off, and on (scraped every second)"
    section = Section("metrics", title, ["off", "on"], [("on", "off")])
    bulk = section.row("bulk, 1 stream, client to backend", "GB/s", at_least("off", 0.95, "on"))
    rate = section.row("connections, concurrency 64", "conn/s", at_least("off", 0.95, "on"))
    cpu = section.row("relay CPU per connection, concurrency 64", "us")
    in_process = section.row("flow log lines, in-process: CPU per connection", "us")
    in_process_json = section.row("the same, --log-format json", "us")
    off = targets.bench_layout(b.ports)
    on = targets.bench_layout(b.ports, second=True, metrics_port=b.ports.metrics)
    on = LbsimLayout(on.pools, backend=on.backend, metrics_port=on.metrics_port, log_flows=True)
    with contextlib.ExitStack() as stack:
        runs = {
            "off": stack.enter_context(targets.lbsim(off, b.tmp, name="lbsim-off")),
            "on": stack.enter_context(targets.lbsim(on, b.tmp, name="lbsim-on")),
        }
        rounds = 2 * b.runs  # a difference of a few percent, measured on a shared machine
        for run in range(rounds):
            log(f"metrics: run {run + 1}/{rounds}")
            order = ["off", "on"] if run % 2 == 0 else ["on", "off"]
            for _ in range(_BULK_PAIRS):
                for name in order:
                    point, url = runs[name].endpoint, runs[name].metrics
                    with _scraping(url):
                        result = b.client("bulk", "up", HOST, point.sink, b.sizes.bulk_bytes, 1)
                    bulk.add(name, result["gbps"])
            for name in order:
                point, url = runs[name].endpoint, runs[name].metrics
                with _scraping(url):
                    conns, cpu_us = measure_rate(b, point, 64)
                rate.add(name, conns["rate"])
                cpu.add(name, cpu_us)
    for run in range(b.runs):
        log(f"metrics: in-process run {run + 1}/{b.runs}")
        result = _control(b, "logcost", _LOGCOST_CONNECTIONS, [str(targets.TEMPLATE)])
        in_process.add("on", result["us_per_connection"])
        in_process_json.add("on", result["json_us_per_connection"])
    section.notes.append(
        "In-process: what a connection's decision and close events and their text lines add"
        " to the runtime's own paths, with no traffic (benchkit.control logcost,"
        f" {_LOGCOST_CONNECTIONS:,} connections, the median of 5 off/on pairs per run)."
    )
    section.notes.append(
        "On: --metrics-port set and scraped once a second, --log-flows true (text lines to a"
        " file). Off: --metrics-port off --log-flows false. Both run the same template;"
        " off and on alternate, twice --runs each (medians). A bulk run lasts under half a"
        f" second, so each round runs {_BULK_PAIRS} off/on pairs of it back to back: the"
        " machine's other load drifts less within a pair."
    )
    return section


@contextlib.contextmanager
def _scraping(url: str | None) -> Iterator[None]:
    """Scrape ``url`` once a second in a thread while the block runs."""
    if url is None:
        yield
        return
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(1.0):
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, timeout=2) as reply,  # noqa: S310  (loopback)
            ):
                reply.read()

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5.0)
