"""What a change to a running lbsim did, as its handle and the control API report it."""

from __future__ import annotations

from typing import Any

from lbsim.api import views
from lbsim.api.handle import ChangeReport
from lbsim.control.diff import PlanChange, listen_table
from lbsim.control.types import BalancingEntry, NatEntry


def report_of(change: PlanChange) -> ChangeReport:
    """Entries added and removed (as ``lbsim ports -o json`` shows them), instances and NSGs."""
    before, after = listen_table(change.old), listen_table(change.new)
    return ChangeReport(
        added=tuple(_entry_json(after[k]) for k in change.listeners_added),
        removed=tuple(_entry_json(before[k]) for k in change.listeners_removed),
        instances_added=change.instances_added,
        instances_removed=change.instances_removed,
        instances_changed=change.instances_changed,
        nsgs_changed=change.nsgs_changed,
    )


def merged(*reports: ChangeReport) -> ChangeReport:
    """What several changes in a row did, as one report."""

    def joined(field: str) -> tuple[Any, ...]:
        items = [item for report in reports for item in getattr(report, field)]
        if field in ("added", "removed"):
            return tuple(items)
        return tuple(dict.fromkeys(items))

    return ChangeReport(
        added=joined("added"),
        removed=joined("removed"),
        instances_added=joined("instances_added"),
        instances_removed=joined("instances_removed"),
        instances_changed=joined("instances_changed"),
        nsgs_changed=joined("nsgs_changed"),
    )


def _entry_json(entry: NatEntry | BalancingEntry) -> dict[str, Any]:
    if isinstance(entry, NatEntry):
        return views.nat_json(entry)
    return views.balancing_json(entry)
