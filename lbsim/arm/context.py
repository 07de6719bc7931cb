"""What an ARM expression can see: the contract between the evaluator and the loader.

The evaluator (``lbsim.arm.evaluate``) knows the expression language and the function table;
the loader (``lbsim.arm.template``) knows parameters, variables, copy loops and resources.
They meet here: the loader hands the evaluator an ``EvalContext``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import attrs

from lbsim.model.deployment import DeploymentContext
from lbsim.pointer import Pointer


@attrs.frozen
class UserFunction:
    """A function from the template's ``functions`` section (``namespace.member``)."""

    namespace: str
    name: str
    parameters: tuple[tuple[str, str], ...]  # (name, type) in declaration order
    output_type: str
    output_value: Any  # the raw ``output.value`` (usually an expression string)
    at: Pointer | None = None


class EvalContext(Protocol):
    """Everything outside the expression itself that an expression may read."""

    @property
    def deployment(self) -> DeploymentContext:
        """Subscription, resource group, location and deployment name."""
        ...

    @property
    def deployment_properties(self) -> Mapping[str, Any]:
        """Extra fields of ``deployment().properties`` (``templateLink``, ``template``)."""
        ...

    @property
    def user_functions(self) -> Mapping[str, UserFunction]:
        """User-defined functions keyed by ``namespace.name`` in lower case."""
        ...

    def parameter(self, name: str) -> Any:
        """The value of ``parameters(name)``; raises ExpressionError if there is none."""
        ...

    def variable(self, name: str) -> Any:
        """The value of ``variables(name)``; raises ExpressionError if there is none."""
        ...

    def copy_index(self, loop: str | None) -> int:
        """The current 0-based index of the named loop (or of the resource loop when None);
        raises ExpressionError outside such a loop. The evaluator adds the offset."""
        ...

    def reference(self, name_or_id: str, api_version: str | None, full: bool) -> Any:
        """``reference()``: a resource's runtime state (its properties, or with ``full`` the
        whole resource object)."""
        ...

    def list_keys(self, resource_id: str, api_version: str | None) -> Any:
        """``listKeys()`` and other ``list*`` functions: placeholders with a warning."""
        ...

    def warn(self, code: str, message: str) -> None:
        """Record a warning about the expression being evaluated."""
        ...


class Placeholder(str):
    """A runtime value lbsim cannot know (a storage endpoint, a key, a resource outside the
    template). It is a string, so it concatenates; property and index access on it give
    further placeholders, so ``reference(x).primaryEndpoints.blob`` evaluates."""

    __slots__ = ()

    def member(self, name: str | int) -> Placeholder:
        return Placeholder(f"{self}.{name}")


class RuntimeObject(dict[str, Any]):
    """The runtime state of a resource lbsim does not emulate (``reference()`` of a storage
    account, a cluster, ...): a missing property is a Placeholder, not an error."""

    def missing(self, name: str | int) -> Placeholder:
        return Placeholder(f"<runtime value {name}>")
