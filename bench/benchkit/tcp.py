"""TCP workloads: bulk streams, request/response, connection rate, idle connections."""

from __future__ import annotations

import socket
import time

from benchkit.context import Bench, log
from benchkit.procs import BenchError, cpu_seconds, rss_kib
from benchkit.report import Section, at_least, at_most, below
from benchkit.targets import Endpoint

VS_DIRECT_HAPROXY = [("lbsim", "direct"), ("lbsim", "haproxy")]
COLUMNS = ["direct", "haproxy", "lbsim"]
HOST = "127.0.0.1"


def bulk(b: Bench) -> Section:
    """One stream of bulk_bytes each way, then four streams of bulk_bytes each at once."""
    size = b.sizes.bulk_bytes
    amount = f"{size >> 30} GiB" if size >= 1 << 30 else f"{size >> 20} MiB"
    section = b.section("bulk", f"bulk: {amount} per stream", COLUMNS, VS_DIRECT_HAPROXY)
    cases = [
        ("1 stream, client to backend", "up", 1),
        ("1 stream, backend to client", "down", 1),
        ("4 streams, client to backend", "up", 4),
        ("4 streams, backend to client", "down", 4),
    ]
    rows = [section.row(name, "GB/s", at_least("haproxy")) for name, _, _ in cases]
    runs = 2 * b.runs  # cheap, and the noisiest figures of the suite
    with b.tcp_points() as points:
        for run in range(runs):
            log(f"bulk: run {run + 1}/{runs}")
            for point in b.rotate(points, run):
                for row, (_, way, streams) in zip(rows, cases, strict=True):
                    port = point.sink if way == "up" else point.source
                    result = b.client("bulk", way, HOST, port, b.sizes.bulk_bytes, streams)
                    row.add(point.name, result["gbps"])
    section.notes.append(
        f"GB/s = 10^9 bytes per second, all streams together, end to end; median of {runs} runs"
        " (twice --runs)."
    )
    return section


def request_response(b: Bench) -> Section:
    n = b.sizes.rr_count
    title = f"request/response: one connection, {n:,} round trips of 64 B"
    section = b.section("rr", title, COLUMNS, VS_DIRECT_HAPROXY)
    rows = {
        "p50_us": section.row("round trip p50", "us", at_most("haproxy")),
        "p99_us": section.row("round trip p99", "us", at_most("haproxy")),
        "p999_us": section.row("round trip p99.9", "us"),
    }
    with b.tcp_points() as points:
        for run in range(b.runs):
            log(f"rr: run {run + 1}/{b.runs}")
            for point in b.rotate(points, run):
                result = b.client("rr", HOST, point.echo, n, 64)
                for key, row in rows.items():
                    row.add(point.name, result[key])
    section.notes.append("TCP_NODELAY on the client; the first 5% of round trips are warm-up.")
    return section


def connection_rate(b: Bench) -> Section:
    seconds = b.sizes.conn_seconds
    title = f"connection rate: connect, 64 B echoed, close; {seconds:g} s per run"
    section = b.section("connrate", title, COLUMNS, VS_DIRECT_HAPROXY)
    with b.tcp_points() as points:
        for concurrency in (1, 64):
            _rate_rows(b, section, points, concurrency)
    section.notes += [
        "CPU per connection: user+system time of the relay process (/proc/PID/stat, all"
        " threads) over the run, divided by the connections completed; in the direct column,"
        " the bench backend's own.",
        "The direct column is the load generator's own ceiling on this machine.",
    ]
    return section


def _rate_rows(b: Bench, section: Section, points: list[Endpoint], concurrency: int) -> None:
    c = f"concurrency {concurrency}"
    rate = section.row(f"{c}: connections", "conn/s", at_least("haproxy", 0.7))
    p50 = section.row(f"{c}: latency p50", "us")
    p99 = section.row(f"{c}: latency p99", "us")
    cpu = section.row(f"{c}: relay CPU per connection", "us")
    errors = section.row(f"{c}: failed connections", "count")
    for run in range(b.runs):
        log(f"connrate c={concurrency}: run {run + 1}/{b.runs}")
        for point in b.rotate(points, run):
            result, cpu_us = measure_rate(b, point, concurrency)
            rate.add(point.name, result["rate"])
            p50.add(point.name, result["p50_us"])
            p99.add(point.name, result["p99_us"])
            cpu.add(point.name, cpu_us)
            errors.add(point.name, result["errors"] + result["stuck"])


def measure_rate(b: Bench, point: Endpoint, concurrency: int) -> tuple[dict[str, float], float]:
    """One connection-rate run and the relay's CPU microseconds per connection."""
    seconds = b.sizes.conn_seconds
    before = cpu_seconds(point.pid)
    result = b.client("connrate", HOST, point.echo, concurrency, seconds, 64, 2_000_000)
    used = cpu_seconds(point.pid) - before
    time.sleep(0.5)  # let the closing handshakes finish before the next run
    return result, used * 1e6 / max(result["count"], 1)


def idle(b: Bench) -> Section:
    n = b.sizes.idle_conns
    title = f"idle connections: {n:,} held open through the relay"
    section = b.section("idle", title, ["haproxy", "lbsim"], [("lbsim", "haproxy")])
    per_conn = section.row("RSS per connection", "KiB", below(8, "KiB"))
    rest = section.row("RSS at rest, before", "MB")
    held = section.row("RSS while holding them", "MB")
    for run in range(b.runs):
        log(f"idle: run {run + 1}/{b.runs}")
        with b.tcp_points() as points:  # fresh processes: no memory left from a prior run
            for point in points[1:]:
                before, during = hold_idle(point, n)
                per_conn.add(point.name, (during - before) / n)
                rest.add(point.name, before / 1024)
                held.add(point.name, during / 1024)
    section.notes.append(
        "Each connection echoes one byte before it is counted, so its backend leg is open too."
    )
    return section


def hold_idle(point: Endpoint, n: int) -> tuple[int, int]:
    """Open n connections through the point, check each with a one-byte echo, and return
    the relay's RSS (KiB) before and while they are held."""
    time.sleep(0.3)
    before = rss_kib(point.pid)
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            sock = socket.create_connection((HOST, point.echo), timeout=10)
            socks.append(sock)
            sock.sendall(b"x")
        for sock in socks:
            if sock.recv(1) != b"x":
                raise BenchError(f"{point.name}: an idle connection was not relayed")
        time.sleep(0.3)
        return before, rss_kib(point.pid)
    finally:
        for sock in socks:
            sock.close()
        time.sleep(0.5)
