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
        ok = a in m and b in m and m[b] != 0
        cells.append(f"{m[a] / m[b]:.2f}" if ok else "-")
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
    return out
