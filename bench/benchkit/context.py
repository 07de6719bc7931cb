"""What every workload needs: sizes (full or quick), ports, the tool, the temp dir, and the
comparison points that can run here."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from benchkit import targets
from benchkit.procs import BenchError, output
from benchkit.report import BEFORE, Section
from benchkit.targets import Endpoint, LbsimCode, Ports

T = TypeVar("T")


@dataclass(frozen=True)
class Sizes:
    bulk_bytes: int
    rr_count: int
    conn_seconds: float
    idle_conns: int
    scale_instances: int
    udp_seconds: float
    udp_rtt_count: int
    plan_repeats: int
    nsg_seconds: float
    apply_instances: int
    apply_step: int
    apply_repeats: int


FULL = Sizes(
    bulk_bytes=1 << 30,
    rr_count=20_000,
    conn_seconds=10.0,
    idle_conns=5_000,
    scale_instances=1_000,
    udp_seconds=3.0,
    udp_rtt_count=20_000,
    plan_repeats=5,
    nsg_seconds=1.0,
    apply_instances=900,  # + 100: 1,000, the most a scale set holds (Azure's limit, lbsim's too)
    apply_step=100,
    apply_repeats=5,
)
QUICK = Sizes(
    bulk_bytes=64 << 20,
    rr_count=2_000,
    conn_seconds=1.0,
    idle_conns=500,
    scale_instances=100,
    udp_seconds=0.5,
    udp_rtt_count=2_000,
    plan_repeats=1,
    nsg_seconds=0.2,
    apply_instances=100,
    apply_step=10,
    apply_repeats=2,
)


@dataclass
class Bench:
    tool: Path
    ports: Ports
    tmp: Path
    sizes: Sizes
    runs: int
    corpus: Path
    direct: Endpoint | None = None  # the backend, started once for the whole run
    baseline: LbsimCode | None = None  # --baseline: another commit's lbsim, the "before" point

    def client(self, *args: object, timeout_s: float = 120.0) -> dict[str, Any]:
        """Run one benchtool client command and return what it printed."""
        text = output([str(self.tool), *map(str, args)], timeout_s=timeout_s)
        try:
            result: dict[str, Any] = json.loads(text)
        except ValueError:
            raise BenchError(f"benchtool {args[0]}: {text[-400:]}") from None
        if result.get("error"):
            raise BenchError(f"benchtool {' '.join(map(str, args))}: {result['error']}")
        return result

    def rotate(self, points: list[T], run: int) -> list[T]:
        """The points in a different order on each run, so that drift hits all alike."""
        k = run % len(points)
        return points[k:] + points[:k]

    def section(
        self, name: str, title: str, columns: list[str], ratios: list[tuple[str, str]]
    ) -> Section:
        """A workload's table; with a baseline, a ``before`` column after ``lbsim`` and the
        ``lbsim/before`` ratio."""
        if self.baseline is None or "lbsim" not in columns:
            return Section(name, title, columns, ratios)
        at = columns.index("lbsim") + 1
        section = Section(name, title, [*columns[:at], "before", *columns[at:]], [*ratios, BEFORE])
        section.notes.append(
            f"before: lbsim from the --baseline checkout ({self.baseline.root}), run as lbsim is;"
            " lbsim/before is within noise at 0.95-1.05 for throughputs, 0.90-1.10 for"
            " latencies, times and memory (in bold when outside)."
        )
        return section

    @contextlib.contextmanager
    def tcp_points(self, *, lbsim: bool = True) -> Iterator[list[Endpoint]]:
        """direct, HAProxy (when installed), lbsim and the baseline's (with --baseline),
        started fresh for one workload."""
        assert self.direct is not None
        points = [self.direct]
        with contextlib.ExitStack() as stack:
            if targets.have_haproxy():
                points.append(stack.enter_context(targets.haproxy(self.ports, self.tmp))[0])
            if lbsim:
                points += self.lbsim_points(stack)
            yield points

    def lbsim_points(self, stack: contextlib.ExitStack) -> list[Endpoint]:
        """lbsim on the first port layout and, with a baseline, ``before`` on the second
        (both serve at once), stopped when ``stack`` closes."""
        layout = targets.bench_layout(self.ports)
        points = [stack.enter_context(targets.lbsim(layout, self.tmp)).endpoint]
        if self.baseline is not None:
            second = targets.bench_layout(self.ports, second=True)
            run = targets.lbsim(second, self.tmp, name="before", code=self.baseline)
            points.append(stack.enter_context(run).endpoint)
        return points


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)
