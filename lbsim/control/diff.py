"""What changes between two plans: the value the data plane applies in one place
(:meth:`lbsim.dataplane.runtime.Runtime.apply`).

Everything is keyed by a stable identity, never by a position in a list: a listener is its
(frontend address, transport, frontend port), a backend its ipConfiguration id, an instance
its label (``web/3``), a network security group its resource id. So scaling one scale set
never shows as a change to another.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from lbsim.control.types import Backend, BalancingEntry, NatEntry, Plan
from lbsim.model import NetworkSecurityGroup, TransportProtocol

ListenKey = tuple[str, TransportProtocol, int]  # (frontend address, transport, frontend port)
Entry = NatEntry | BalancingEntry


def listen_table(plan: Plan) -> dict[ListenKey, Entry]:
    """The listeners a plan needs: every NAT entry that has a backend and every
    load-balancing rule that has backends, by identity, in plan order."""
    table: dict[ListenKey, Entry] = {}
    for nat in plan.nat:
        if nat.backend is not None:
            table.setdefault(nat.listen_key, nat)
    for rule in plan.balancing:
        if rule.backends:
            table.setdefault(rule.listen_key, rule)
    return table


@attrs.frozen
class PlanChange:
    """The difference from ``old`` to ``new``: listeners added, removed and changed (same
    identity, another entry: routes, timeouts or NSGs), instances added, removed and changed
    (power state or address), and network security groups whose rules changed (an NSG that
    starts or stops guarding a backend changes that backend's listeners, not the NSG)."""

    old: Plan = attrs.field(eq=False, repr=False)
    new: Plan = attrs.field(eq=False, repr=False)
    listeners_added: tuple[ListenKey, ...] = ()
    listeners_removed: tuple[ListenKey, ...] = ()
    listeners_changed: tuple[ListenKey, ...] = ()
    instances_added: tuple[str, ...] = ()
    instances_removed: tuple[str, ...] = ()
    instances_changed: tuple[str, ...] = ()
    nsgs_changed: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        """True when the two plans run the same listeners, instances and NSGs."""
        return not (
            self.listeners_added
            or self.listeners_removed
            or self.listeners_changed
            or self.instances_added
            or self.instances_removed
            or self.instances_changed
            or self.nsgs_changed
        )


def diff(old: Plan, new: Plan) -> PlanChange:
    """The change that turns a runtime running ``old`` into one running ``new``."""
    before, after = listen_table(old), listen_table(new)
    instances = _instances(old), _instances(new)
    nsgs = _nsgs(old), _nsgs(new)
    return PlanChange(
        old,
        new,
        listeners_added=tuple(k for k in after if k not in before),
        listeners_removed=tuple(k for k in before if k not in after),
        listeners_changed=tuple(k for k, e in after.items() if k in before and before[k] != e),
        instances_added=_added(*instances),
        instances_removed=_added(instances[1], instances[0]),
        instances_changed=_changed(*instances),
        nsgs_changed=tuple(
            sorted(k for k in nsgs[0].keys() & nsgs[1].keys() if nsgs[0][k] != nsgs[1][k])
        ),
    )


def _instances(plan: Plan) -> dict[str, tuple[Backend, ...]]:
    """Backends grouped by instance label (an instance with two NICs has two backends)."""
    found: dict[str, tuple[Backend, ...]] = {}
    for backend in plan.backends:
        found[backend.label] = (*found.get(backend.label, ()), backend)
    return found


def _added(
    before: dict[str, tuple[Backend, ...]], after: dict[str, tuple[Backend, ...]]
) -> tuple[str, ...]:
    return tuple(label for label in after if label not in before)


def _changed(
    before: dict[str, tuple[Backend, ...]], after: dict[str, tuple[Backend, ...]]
) -> tuple[str, ...]:
    return tuple(
        label
        for label, backends in after.items()
        if label in before and _facts(before[label]) != _facts(backends)
    )


def _facts(backends: tuple[Backend, ...]) -> tuple[tuple[str, str, bool, int], ...]:
    """What makes an instance different to its users: addresses, power state, and its
    reimages (each a new OS disk)."""
    return tuple((b.key, b.private_ip_address, b.running, b.generation) for b in backends)


def _nsgs(plan: Plan) -> dict[str, NetworkSecurityGroup]:
    return {nsg.id.lower(): nsg for nsg in _all_nsgs(plan)}


def _all_nsgs(plan: Plan) -> Iterator[NetworkSecurityGroup]:
    for backend in plan.backends:
        if backend.subnet_nsg is not None:
            yield backend.subnet_nsg
        if backend.nic_nsg is not None:
            yield backend.nic_nsg
