"""The Grafana dashboards query only metrics that lbsim exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lbsim.control.types import Plan
from lbsim.dataplane.runtime import Runtime
from lbsim.observe.metrics import RuntimeCollector

DASHBOARDS = sorted((Path(__file__).parents[2] / "dashboards").glob("*.json"))
METRIC = re.compile(r"\blbsim_[a-z_]+\b")


def exported_names() -> set[str]:
    """Every sample name the collector can expose (counters with their _total suffix)."""
    names: set[str] = set()
    for family in RuntimeCollector(Runtime(Plan())).collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
    return names


def queries(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    found += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return found


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS, "dashboards/ holds at least one Grafana dashboard"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_names_an_exported_metric(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    exported = exported_names()
    used = {name for query in queries(dashboard) for name in METRIC.findall(query)}
    assert used, "the dashboard queries lbsim metrics"
    assert used <= exported, f"unknown metrics: {sorted(used - exported)}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_do_not_overlap(path: Path) -> None:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        g = panel["gridPos"]
        mine = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not cells & mine, f"panel {panel['title']!r} overlaps another"
        assert g["x"] + g["w"] <= 24
        cells |= mine
