"""Results: samples per comparison point, medians, ratios, the issue's targets, and the
Markdown tables the bench prints."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Check = Callable[[dict[str, float]], bool | None]

_FORMATS = {
    "GB/s": "{:.2f}",
    "us": "{:.1f}",
    "conn/s": "{:.0f}",
    "dgram/s": "{:.0f}",
    "KiB": "{:.1f}",
    "MB": "{:.1f}",
    "s": "{:.2f}",
    "ms": "{:.1f}",
    "/s": "{:.0f}",
    "count": "{:.0f}",
}


BEFORE = ("lbsim", "before")  # this checkout's lbsim over the --baseline checkout's


def noise_band(unit: str) -> tuple[float, float] | None:
    """How far ``lbsim/before`` may stray and still be within noise on a shared machine: 5%
    for throughputs, 10% for latencies, times and memory (noisier); none for counts."""
    if unit in ("GB/s", "conn/s", "dgram/s", "/s"):
        return (0.95, 1.05)
    if unit in ("us", "KiB", "MB", "s", "ms"):
        return (0.90, 1.10)
    return None


def within_noise(row: Row) -> bool | None:
    """Whether this row's lbsim/before ratio is within its noise band (None: no ratio)."""
    m, band = row.medians(), noise_band(row.unit)
    ratio = _ratio(m, *BEFORE)
    if band is None or ratio is None:
        return None
    return band[0] <= ratio <= band[1]


def _ratio(m: dict[str, float], a: str, b: str) -> float | None:
    return m[a] / m[b] if a in m and b in m and m[b] != 0 else None


@dataclass(frozen=True)
class Target:
    """A target of issue 4, checked against the medians of one row."""

    text: str
    check: Check


def at_least(column: str, factor: float = 1.0, of: str = "lbsim") -> Target:
    """``of`` at least ``factor`` times ``column`` (a throughput)."""
    name = f"{factor:g}x {column}" if factor != 1.0 else column
    return Target(f">= {name}", lambda m: _cmp(m, of, column, lambda a, b: a >= factor * b))


def at_most(column: str, of: str = "lbsim") -> Target:
    """``of`` no more than ``column`` (a latency)."""
    return Target(f"<= {column}", lambda m: _cmp(m, of, column, lambda a, b: a <= b))


def below(limit: float, unit: str, of: str = "lbsim") -> Target:
    return Target(f"<= {limit:g} {unit}", lambda m: m[of] <= limit if of in m else None)


def above(limit: float, unit: str, of: str = "lbsim") -> Target:
    return Target(f">= {limit:g} {unit}", lambda m: m[of] >= limit if of in m else None)


def _cmp(m: dict[str, float], a: str, b: str, test: Callable[[float, float], bool]) -> bool | None:
    return test(m[a], m[b]) if a in m and b in m else None


@dataclass
class Row:
    metric: str
    unit: str
    samples: dict[str, list[float]] = field(default_factory=dict)
    target: Target | None = None

    def add(self, column: str, value: float) -> None:
        self.samples.setdefault(column, []).append(value)

    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.samples.items() if v}


@dataclass
class Section:
    """One workload's table: its columns, the ratios shown, and its rows."""

    name: str
    title: str
    columns: list[str]
    ratios: list[tuple[str, str]]
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, metric: str, unit: str, target: Target | None = None) -> Row:
        found = Row(metric, unit, target=target)
        self.rows.append(found)
        return found

    def render(self) -> str:
        head = ["metric", *self.columns, *(f"{a}/{b}" for a, b in self.ratios), "target", "met"]
        lines = [f"### {self.title}", "", _line(head), _line(["---"] * len(head))]
        lines += [_line(_cells(self, row)) for row in self.rows]
        lines += ["", *(f"- {n}" for n in self.notes)] if self.notes else []
        return "\n".join(lines) + "\n"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "notes": self.notes,
            "rows": [
                {
                    "metric": r.metric,
                    "unit": r.unit,
                    "samples": r.samples,
                    "medians": r.medians(),
                    "target": r.target.text if r.target else None,
                    "met": _verdict(r),
                    "within_noise_of_before": within_noise(r),
                }
                for r in self.rows
            ],
        }


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return _FORMATS.get(unit, "{:.3g}").format(value)


def _verdict(row: Row) -> bool | None:
    return row.target.check(row.medians()) if row.target else None


def _cells(section: Section, row: Row) -> list[str]:
    m = row.medians()
    cells = [f"{row.metric} ({row.unit})"]
    cells += [_fmt(m.get(c), row.unit) for c in section.columns]
    for a, b in section.ratios:
        ratio = _ratio(m, a, b)
        text = "-" if ratio is None else f"{ratio:.2f}"
        cells.append(f"**{text}**" if (a, b) == BEFORE and within_noise(row) is False else text)
    verdict = _verdict(row)
    cells.append(row.target.text if row.target else "-")
    cells.append({True: "yes", False: "**no**", None: "-"}[verdict])
    return cells


def summary(sections: Sequence[Section]) -> list[str]:
    """One line per target: met or missed, and the figures."""
    out = []
    for section in sections:
        for row in section.rows:
            verdict = _verdict(row)
            if verdict is None:
                continue
            m = row.medians()
            figures = ", ".join(f"{k} {_fmt(v, row.unit)}" for k, v in m.items())
            word = "met" if verdict else "MISSED"
            target = row.target.text if row.target else ""
            out.append(f"{word}: {section.name}: {row.metric} {target} ({figures} {row.unit})")
    return out + _before_lines(sections)


def _before_lines(sections: Sequence[Section]) -> list[str]:
    """With a baseline: how many rows are within noise of it, and each row that is not."""
    within, outside = 0, []
    for section in sections:
        for row in section.rows:
            ratio, band = _ratio(row.medians(), *BEFORE), noise_band(row.unit)
            if ratio is None or band is None:
                continue
            if band[0] <= ratio <= band[1]:
                within += 1
                continue
            noise = f"within noise: {band[0]:.2f}-{band[1]:.2f}"
            outside.append(
                f"outside noise: {section.name}: {row.metric}: lbsim/before {ratio:.2f} ({noise})"
            )
    if not within and not outside:
        return []
    return [f"lbsim/before: {within} rows within noise, {len(outside)} outside", *outside]
