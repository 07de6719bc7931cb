"""Azure's limits on what one template declares and expands to, and lbsim's on all
deployments together (the values are in lbsim.arm.limits)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lbsim.arm import limits
from lbsim.errors import Problem
from lbsim.pointer import Pointer

if TYPE_CHECKING:
    from lbsim.arm.resources import ExpandedResource
    from lbsim.arm.scope import TemplateState

_DECLARED = (
    ("parameters", limits.MAX_PARAMETERS, "template parameters"),
    ("variables", limits.MAX_VARIABLES, "template variables"),
    ("outputs", limits.MAX_OUTPUTS, "template outputs"),
)
SIZE_CODE = "DeploymentJobSizeExceededException"


def counted(template: Any, file: str | None, at: Pointer) -> list[Problem]:
    """Too many parameters, variables or outputs: found before any of them is bound."""
    if not isinstance(template, Mapping):
        return []
    problems = []
    for key, limit, what in _DECLARED:
        declared = template.get(key)
        if isinstance(declared, Mapping) and len(declared) > limit:
            message = f"The number of {what} ({len(declared)}) exceeds the limit of {limit}."
            problems.append(Problem("InvalidTemplate", message, at / key, file))
    return problems


def count_resource(state: TemplateState, total: int, at: Pointer) -> None:
    """One more resource expanded: Azure's limit of resources in one template, and lbsim's
    over all deployments, checked as each is made, so a copy loop stops at the limit."""
    state.resource_count += 1
    if state.resource_count > limits.MAX_RESOURCES:
        raise limits.exceeded(
            "InvalidTemplate",
            f"The number of template resources exceeds the limit of {limits.MAX_RESOURCES} "
            "(copy loops expanded).",
            at,
        )
    if total > limits.MAX_TOTAL_RESOURCES:
        raise limits.exceeded(
            "TooManyResourcesInDeployments",
            f"The template and its nested deployments expand to over "
            f"{limits.MAX_TOTAL_RESOURCES:,} resources (lbsim's limit).",
            at,
        )
    limits.check_time(at)


def check_size(resource: ExpandedResource, body: Any) -> None:
    """Azure's size limits, measured as Azure does (compressed JSON) on the evaluated
    resource: 1 MB for it, 4 MB for all resources of its template."""
    size = limits.compressed_size(body)
    state = resource.scope.state
    state.expanded_bytes += size
    if size > limits.MAX_RESOURCE_BYTES:
        raise limits.exceeded(
            SIZE_CODE,
            f"The resource '{resource.name}' is {size:,} bytes after expansion (compressed), "
            f"over the limit of {limits.MAX_RESOURCE_BYTES:,} bytes for one resource.",
            resource.at,
        )
    if state.expanded_bytes > limits.MAX_TEMPLATE_BYTES:
        raise limits.exceeded(
            SIZE_CODE,
            f"The template's resources are over {limits.MAX_TEMPLATE_BYTES:,} bytes after "
            "expansion (compressed), over the limit for one template.",
            resource.at,
        )
