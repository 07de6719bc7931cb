"""Look-ups by resource id across a Deployment, as Azure resolves ``{"id": ...}`` references:
case-insensitively, with an error when the target should exist but does not."""

from __future__ import annotations

from typing import Any, TypeVar

from lbsim.errors import Problem, Severity
from lbsim.model import Deployment, SubResource

T = TypeVar("T")


def top_level_id(resource_id: str) -> str:
    """The id of the top-level resource that ``resource_id`` is or belongs to."""
    head, sep, tail = resource_id.partition("/providers/")
    if not sep:
        return resource_id.lower()
    parts = tail.split("/")
    return f"{head}{sep}{'/'.join(parts[:3])}".lower()


class Index:
    """Every resource and sub-resource of a deployment, by lower-cased id."""

    def __init__(self, deployment: Deployment) -> None:
        self.by_id: dict[str, Any] = {}
        self.problems: list[Problem] = []
        for lb in deployment.load_balancers:
            self._add(lb)
            for group in (
                lb.frontend_ip_configurations,
                lb.backend_address_pools,
                lb.inbound_nat_pools,
                lb.inbound_nat_rules,
                lb.load_balancing_rules,
                lb.probes,
            ):
                for item in group:
                    self._add(item)
        for vnet in deployment.virtual_networks:
            self._add(vnet)
            for subnet in vnet.subnets:
                self._add(subnet)
        for nic in deployment.network_interfaces:
            self._add(nic)
            for ip_configuration in nic.ip_configurations:
                self._add(ip_configuration)
        others: tuple[tuple[Any, ...], ...] = (
            deployment.network_security_groups,
            deployment.public_ip_addresses,
            deployment.application_security_groups,
            deployment.virtual_machine_scale_sets,
            deployment.virtual_machines,
        )
        for group in others:
            for item in group:
                self._add(item)
        self._tops = {top_level_id(k) for k in self.by_id if k == top_level_id(k)}

    def deploys_parent_of(self, resource_id: str) -> bool:
        """Whether the template deploys the top-level resource ``resource_id`` belongs to (so
        a missing child is an error, not a resource lbsim cannot see)."""
        return top_level_id(resource_id) in self._tops

    def _add(self, item: Any) -> None:
        self.by_id[item.id.lower()] = item

    def resolve(self, ref: SubResource | None, kind: type[T], referrer: str) -> T | None:
        """The resource ``ref`` names, if it is of ``kind``; problems are recorded."""
        if ref is None:
            return None
        found = self.by_id.get(ref.key)
        if isinstance(found, kind):
            return found
        if found is not None:
            self._problem(
                "InvalidJsonReferenceWrongType",
                f"Reference Id {ref.id} (from {referrer}) names a resource of the wrong type: "
                f"a {kind.__name__} is expected.",
                ref,
            )
        elif self.deploys_parent_of(ref.id) or not ref.id:
            self._problem(
                "InvalidResourceReference",
                f"Resource {ref.id or '(empty id)'} referenced by resource {referrer} was not "
                "found; the template deploys its parent but not it.",
                ref,
            )
        else:
            self._problem(
                "ReferenceOutsideTemplate",
                f"Resource {ref.id} referenced by {referrer} is not deployed by the template; "
                "lbsim leaves it out.",
                ref,
                Severity.WARNING,
            )
        return None

    def _problem(
        self, code: str, message: str, ref: SubResource, severity: Severity = Severity.ERROR
    ) -> None:
        problem = Problem(code, message, ref.at, severity=severity)
        if problem not in self.problems:
            self.problems.append(problem)
