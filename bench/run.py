"""lbsim's benchmark suite: direct vs HAProxy (splice) vs lbsim on loopback (issue 4).

Usage: python bench/run.py [--quick] [--only NAME[,NAME...]] [--runs N] [--json FILE]
                           [--baseline DIR]

Run bench/setup.sh first (HAProxy, nginx with its stream module, and the C benchtool).
See bench/README.md for what each workload measures and how to read the tables.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit import live, other, targets, tcp
from benchkit.context import FULL, QUICK, Bench, log
from benchkit.procs import BenchError, check_free, output
from benchkit.report import Section, summary

BENCH = Path(__file__).resolve().parent
TOOL = BENCH / ".build" / "benchtool"
CORPUS = BENCH.parent.parent / "shared" / "corpus" / "arm"

WORKLOADS: dict[str, Callable[[Bench], Section]] = {
    "bulk": tcp.bulk,
    "rr": tcp.request_response,
    "connrate": tcp.connection_rate,
    "idle": tcp.idle,
    "scale": other.scale,
    "udp": other.udp,
    "control": other.control,
    "metrics": other.metrics,
    "apply": live.apply,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced sizes, one run each")
    parser.add_argument("--only", help="comma-separated workloads: " + ", ".join(WORKLOADS))
    parser.add_argument("--runs", type=int, help="runs per workload (default 3, quick 1)")
    parser.add_argument("--port-base", type=int, default=30000, help="see README (ports)")
    parser.add_argument("--corpus", type=Path, default=CORPUS, help="ARM corpus folder")
    parser.add_argument("--json", type=Path, help="also write every sample here")
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="a checkout of another lbsim commit (git worktree add DIR REV): a 'before' point",
    )
    args = parser.parse_args(argv)
    chosen = args.only.split(",") if args.only else list(WORKLOADS)
    unknown = [name for name in chosen if name not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    if not 11024 <= args.port_base <= 31000:
        parser.error("--port-base must be within 11024-31000 (below the ephemeral range)")
    args.chosen = chosen
    return args


def machine(baseline: Path | None) -> list[str]:
    """What the numbers were measured on, and the baseline's commit."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
    import trio  # noqa: PLC0415  (only for its version)

    import lbsim  # noqa: PLC0415

    return [
        f"date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"machine: {platform.node()}, {cpu}, {_cores()} cores, {int(mem) // 1024} MiB,"
        f" Linux {platform.release()}",
        f"lbsim {lbsim.__version__}, Python {platform.python_version()}, trio {trio.__version__}",
        "haproxy: "
        + (
            output(["haproxy", "-v"]).splitlines()[0] if targets.have_haproxy() else "not installed"
        ),
        "nginx: "
        + (output(["nginx", "-v"]) if targets.have_nginx_udp() else "not installed (stream)"),
        "benchtool: " + output(["cc", "--version"]).splitlines()[0],
        f"load average at the start: {_load()} (other work on the machine skews the figures)",
        f"lbsim: {_commit(BENCH.parent)}",
        *([f"before (--baseline {baseline}): {_commit(baseline)}"] if baseline else []),
    ]


def _commit(checkout: Path) -> str:
    return output(["git", "-C", str(checkout), "log", "-1", "--format=%h %s"])[:100]


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cores() -> int:
    import os  # noqa: PLC0415

    return len(os.sched_getaffinity(0))


def run(args: argparse.Namespace) -> list[Section]:
    if not TOOL.exists():
        raise BenchError(f"{TOOL} is missing: run bash bench/setup.sh first")
    sizes = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)
    ports = targets.Ports(args.port_base)
    check_free(ports.all_fixed())
    sections = []
    with tempfile.TemporaryDirectory(prefix="lbsim-bench-") as tmp:
        bench = Bench(TOOL, ports, Path(tmp), sizes, runs, args.corpus)
        if args.baseline:
            bench.baseline = targets.baseline(args.baseline)
        with targets.backend(TOOL, ports, Path(tmp)) as direct:
            bench.direct = direct
            for name in args.chosen:
                started = time.monotonic()
                section = WORKLOADS[name](bench)
                log(f"{name}: done in {time.monotonic() - started:.0f} s")
                print(section.render(), flush=True)
                sections.append(section)
    return sections


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    header = machine(args.baseline)
    print("\n".join(["## lbsim bench", "", *(f"- {line}" for line in header), ""]), flush=True)
    started = time.monotonic()
    try:
        sections = run(args)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    lines = summary(sections)
    print("### targets\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
    print(f"- load average at the end: {_load()}")
    print(f"- total: {time.monotonic() - started:.0f} s")
    if args.json:
        data = {"machine": header, "sections": [s.as_json() for s in sections]}
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
