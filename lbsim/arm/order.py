"""Deployment order, and what it decides: which definition of a resource deployed more than
once is the one that stays.

A template may not declare one resource twice, but a nested or linked deployment may deploy a
resource that an earlier deployment (or the root template) already deployed: that is how
templates update a resource in place, such as a NIC's DNS servers set once the VMs exist
(https://learn.microsoft.com/azure/architecture/guide/azure-resource-manager/advanced-templates/update-resource).
In incremental mode a redeployed resource gets the later definition's properties, which
replace the earlier ones rather than being merged into them
(https://learn.microsoft.com/azure/azure-resource-manager/templates/deployment-modes).

Deployment order follows ``dependsOn`` within each template, and a nested deployment's
resources are deployed when that deployment is. Azure deploys resources that do not depend on
each other in parallel, in no defined order; lbsim takes them in template order, so of two
independent definitions the one written later wins.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lbsim.arm.deepeval import evaluate_value
from lbsim.errors import LbsimError, Problem

if TYPE_CHECKING:
    from lbsim.arm.resources import ExpandedResource
    from lbsim.arm.scope import TemplateState


def settle(
    resources: Sequence[ExpandedResource],
) -> tuple[list[ExpandedResource], list[Problem]]:
    """One definition per deployed resource id: the last in deployment order, in the place of
    the first; and an error for each resource one template defines twice, which Azure
    rejects. ``existing`` resources are references, not deployments, and are kept as they
    are."""
    groups: dict[str, list[ExpandedResource]] = {}
    for resource in resources:
        if not resource.existing:
            groups.setdefault(resource.id.lower(), []).append(resource)
    if all(len(group) == 1 for group in groups.values()):
        return list(resources), []
    problems = [_twice(group) for group in groups.values() if _in_one_template(group)]
    keys = DeploymentOrder(resources)
    placed: dict[int, ExpandedResource] = {}  # id() of the first definition -> the last
    for group in groups.values():
        if len(group) > 1:
            ordered = sorted(group, key=keys.key)
            placed[id(ordered[0])] = ordered[-1]
    dropped = {id(r) for g in groups.values() if len(g) > 1 for r in g} - set(placed)
    return [placed.get(id(r), r) for r in resources if id(r) not in dropped], problems


def _in_one_template(group: list[ExpandedResource]) -> bool:
    states = [id(r.scope.state) for r in group]
    return len(states) != len(set(states))


def _twice(group: list[ExpandedResource]) -> Problem:
    """The error at the second definition a template makes of one resource."""
    seen: set[int] = set()
    again = group[-1]
    for resource in group:
        if id(resource.scope.state) in seen:
            again = resource
            break
        seen.add(id(resource.scope.state))
    return Problem(
        "InvalidTemplate",
        f"The resource '{again.type}/{again.name}' is defined multiple times in a template; "
        "a nested or linked deployment may deploy it again, a template may not.",
        again.at,
        again.file,
    )


class DeploymentOrder:
    """Sort keys in deployment order: for each resource, its rank within its own template,
    preceded by the ranks of the deployments that deploy that template, outermost first."""

    def __init__(self, resources: Sequence[ExpandedResource]) -> None:
        self._owner = {id(r.nested): r for r in resources if r.nested is not None}
        self._rank: dict[int, int] = {}
        templates: dict[int, list[ExpandedResource]] = {}
        for resource in resources:
            templates.setdefault(id(resource.scope.state), []).append(resource)
        for members in templates.values():
            for rank, index in enumerate(_ordered(members)):
                self._rank[id(members[index])] = rank

    def key(self, resource: ExpandedResource) -> tuple[int, ...]:
        ranks: list[int] = []
        current: ExpandedResource | None = resource
        while current is not None:
            ranks.append(self._rank[id(current)])
            current = self._owner.get(id(current.scope.state))
        return tuple(reversed(ranks))


def _ordered(members: list[ExpandedResource]) -> list[int]:
    """Indexes of one template's resources in deployment order: a resource comes after what
    it depends on, and otherwise in template order (a dependency cycle, which Azure rejects,
    falls back to template order)."""
    names = _names(members)
    after: list[set[int]] = [set() for _ in members]  # after[i]: what i must wait for
    for i, resource in enumerate(members):
        for entry in _depends_on(resource):
            after[i].update(j for j in names.get(entry.lower(), ()) if j != i)
    waiting = [len(deps) for deps in after]
    unblocks: list[list[int]] = [[] for _ in members]
    for i, deps in enumerate(after):
        for j in deps:
            unblocks[j].append(i)
    ready = [i for i, count in enumerate(waiting) if count == 0]
    heapq.heapify(ready)
    out: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        out.append(i)
        for k in unblocks[i]:
            waiting[k] -= 1
            if waiting[k] == 0:
                heapq.heappush(ready, k)
    seen = set(out)
    return out + [i for i in range(len(members)) if i not in seen]


def _names(members: Iterable[ExpandedResource]) -> dict[str, list[int]]:
    """Every way ``dependsOn`` may name a resource of the template: its id, name, type/name,
    symbolic name, or the name of the copy loop that made it."""
    out: dict[str, list[int]] = {}
    for i, resource in enumerate(members):
        loop = resource.raw.get("copy")
        keys = {resource.id, resource.name, f"{resource.type}/{resource.name}", resource.symbolic}
        if isinstance(loop, Mapping) and isinstance(loop.get("name"), str):
            keys.add(loop["name"])
        for key in keys:
            if key:
                out.setdefault(key.lower(), []).append(i)
    return out


def _depends_on(resource: ExpandedResource) -> list[str]:
    """The resource's ``dependsOn`` entries as text. They only order deployments here, so an
    entry that cannot be evaluated orders nothing rather than failing the load."""
    raw: Any = resource.raw.get("dependsOn")
    if not isinstance(raw, (list, str)):
        return []
    try:
        value = evaluate_value(raw, resource.scope, resource.at / "dependsOn")
    except LbsimError:
        return []
    values = value if isinstance(value, list) else [value]
    return [v for v in values if isinstance(v, str)]


def chain(state: TemplateState | None) -> list[str]:
    """The names of the deployments that deploy ``state``, outermost first (empty for the
    root template)."""
    names: list[str] = []
    while state is not None and state.parent is not None:
        names.append(state.deployment.deployment_name)
        state = state.parent
    return names[::-1]
