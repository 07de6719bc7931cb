"""Resource declarations to concrete resources: symbolic names, nested child resources,
resource copy loops and conditions. Bodies are evaluated later, on demand."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from lbsim.arm.deepeval import copy_count, evaluate_value
from lbsim.arm.limits import check_time
from lbsim.errors import ExpressionError
from lbsim.model.deployment import DeploymentContext
from lbsim.pointer import Pointer

if TYPE_CHECKING:
    from lbsim.arm.scope import Scope, TemplateState

DEPLOYMENTS = "microsoft.resources/deployments"
# Keys of a resource that are not part of what it deploys, or are handled separately.
_NOT_BODY = frozenset(
    {"type", "name", "copy", "condition", "resources", "dependsOn", "comments", "existing"}
)


@attrs.define(eq=False)
class ExpandedResource:
    """One concrete resource of the deployment (one element of a copy loop)."""

    raw: Mapping[str, Any]
    scope: Scope
    at: Pointer
    file: str | None
    type: str
    name: str
    id: str
    symbolic: str | None = None
    existing: bool = False
    copy_index: int | None = None
    body: dict[str, Any] | None = None
    evaluating: bool = False
    nested: TemplateState | None = None  # for Microsoft.Resources/deployments

    @property
    def type_key(self) -> str:
        return self.type.lower()

    def evaluate_body(self) -> dict[str, Any]:
        """The whole resource with every expression evaluated (memoised)."""
        if self.body is not None:
            return self.body
        if self.evaluating:
            raise ExpressionError(
                "InvalidTemplate", f"The resource '{self.name}' references itself.", self.at
            )
        self.evaluating = True
        try:
            self.body = self._evaluate()
        finally:
            self.evaluating = False
        return self.body

    def _evaluate(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "name": self.name, "id": self.id}
        self.scope.sourcemap.register(body, self.at)
        for key, value in self.raw.items():
            if key in _NOT_BODY:
                continue
            if key == "properties" and self.type_key == DEPLOYMENTS and isinstance(value, dict):
                # the nested template is evaluated in its own scope, as its own deployment
                outer = {k: v for k, v in value.items() if k != "template"}
                body[key] = evaluate_value(outer, self.scope, self.at / key)
            else:
                body[key] = evaluate_value(value, self.scope, self.at / key)
        return body


def declared_resources(raw: Any, at: Pointer) -> Iterator[tuple[str | None, Any, Pointer]]:
    """(symbolic name, declaration, pointer) for a ``resources`` array or symbolic object."""
    if isinstance(raw, list):
        for i, item in enumerate(raw):
            yield None, item, at / i
    elif isinstance(raw, Mapping):
        for name, item in raw.items():
            yield name, item, at / name


def expand(
    raw: Mapping[str, Any],
    at: Pointer,
    scope: Scope,
    parent: ExpandedResource | None = None,
    symbolic: str | None = None,
) -> Iterator[ExpandedResource]:
    """Every concrete resource a declaration makes, children included."""
    loop = raw.get("copy")
    if isinstance(loop, Mapping):
        name = evaluate_value(loop.get("name", ""), scope, at / "copy" / "name")
        count = copy_count(loop.get("count"), scope, at / "copy" / "count")
        for index in range(count):
            check_time(at)
            inner = scope.with_copy(str(name), index, resource_loop=True)
            yield from _emit(raw, at, inner, parent=parent, symbolic=symbolic, index=index)
    else:
        yield from _emit(raw, at, scope, parent=parent, symbolic=symbolic, index=None)


def _emit(
    raw: Mapping[str, Any],
    at: Pointer,
    scope: Scope,
    *,
    parent: ExpandedResource | None,
    symbolic: str | None,
    index: int | None,
) -> Iterator[ExpandedResource]:
    if "condition" in raw and not _truthy(
        evaluate_value(raw["condition"], scope, at / "condition")
    ):
        return
    rtype = _text(evaluate_value(raw.get("type"), scope, at / "type"), "type", at)
    name = _text(evaluate_value(raw.get("name"), scope, at / "name"), "name", at)
    if parent is not None:
        rtype, name = _child_of(parent, rtype, name)
    state = scope.state
    resource = ExpandedResource(
        raw,
        scope,
        at,
        state.file,
        rtype,
        name,
        resource_id(state.deployment, rtype, name, at),
        symbolic=symbolic,
        existing=raw.get("existing") is True,
        copy_index=index,
    )
    yield resource
    for child_symbolic, child, child_at in declared_resources(
        raw.get("resources"), at / "resources"
    ):
        if isinstance(child, Mapping):
            yield from expand(child, child_at, scope, resource, child_symbolic)


def _child_of(parent: ExpandedResource, rtype: str, name: str) -> tuple[str, str]:
    full_type = rtype if "." in rtype.split("/", 1)[0] else f"{parent.type}/{rtype}"
    depth = full_type.count("/")
    full_name = name if name.count("/") + 1 == depth else f"{parent.name}/{name}"
    return full_type, full_name


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)


def _text(value: Any, what: str, at: Pointer) -> str:
    if not isinstance(value, str) or not value:
        raise ExpressionError(
            "InvalidTemplate", f"A resource's '{what}' must be a non-empty string.", at / what
        )
    return value


def resource_id(context: DeploymentContext, rtype: str, name: str, at: Pointer | None) -> str:
    """Azure's id for a resource of the deployment's resource group, as ``resourceId()`` gives it
    (https://learn.microsoft.com/en-us/azure/azure-resource-manager/templates/template-functions-resource#resourceid)."""
    namespace, _, types = rtype.partition("/")
    type_parts = types.split("/") if types else []
    names = name.split("/")
    if len(type_parts) != len(names):
        raise ExpressionError(
            "InvalidTemplate",
            f"The resource name '{name}' has {len(names)} segment(s) but its type '{rtype}' "
            f"needs {len(type_parts)}: a child resource's name has one segment per type segment.",
            at,
        )
    path = "/".join(f"{t}/{n}" for t, n in zip(type_parts, names, strict=True))
    return f"{context.resource_group_id}/providers/{namespace}/{path}"
