"""The loader's side of expression evaluation: one template's parameters and variables, and
the copy loops an expression sits in. ``Scope`` implements ``EvalContext``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from lbsim.arm.context import UserFunction
from lbsim.arm.deepeval import evaluate_value, expand_copy_loop, is_property_copy
from lbsim.arm.limits import MAX_REFERENCE_DEPTH, exceeded
from lbsim.arm.sourcemap import SourceMap
from lbsim.errors import ExpressionError
from lbsim.model.deployment import DeploymentContext
from lbsim.pointer import Pointer

if TYPE_CHECKING:
    from lbsim.arm.loader import Loader

_CYCLE = object()


@attrs.define(eq=False)
class TemplateState:
    """One template being deployed: the root template or a nested one."""

    loader: Loader
    raw: Mapping[str, Any]
    file: str | None
    base: Pointer
    deployment: DeploymentContext
    deployment_properties: dict[str, Any]
    parameters: dict[str, Any] = attrs.Factory(dict)  # lower-case name -> value
    variables_raw: dict[str, tuple[str, Any, Pointer]] = attrs.Factory(dict)
    variables: dict[str, Any] = attrs.Factory(dict)
    user_functions: dict[str, UserFunction] = attrs.Factory(dict)
    parent: TemplateState | None = None  # the template that deploys this one
    unbound: dict[str, Callable[[], None]] = attrs.Factory(dict)  # lower-case name -> binder
    resource_count: int = 0  # resources expanded so far (Azure's limit is per template)
    expanded_bytes: int = 0  # their compressed size so far
    evaluating: int = 0  # variables being evaluated, one inside the other

    def bind_parameter(self, name: str) -> None:
        """Bind a declared parameter that has no value yet (at most once: a default that
        comes back to its own parameter finds it unbound, and fails as not found)."""
        bind = self.unbound.pop(name.lower(), None)
        if bind is not None:
            bind()

    def variable(self, name: str) -> Any:
        key = name.lower()
        if key in self.variables:
            if self.variables[key] is _CYCLE:
                raise ExpressionError("InvalidTemplate", f"The variable '{name}' refers to itself.")
            return self.variables[key]
        if key not in self.variables_raw:
            known = ", ".join(sorted(n for n, _, _ in self.variables_raw.values())) or "none"
            raise ExpressionError(
                "InvalidTemplate", f"The variable '{name}' is not defined (defined: {known})."
            )
        self.variables[key] = _CYCLE
        self.evaluating += 1
        try:
            self.variables[key] = self._evaluate_variable(key)
        except BaseException:
            del self.variables[key]
            raise
        finally:
            self.evaluating -= 1
        return self.variables[key]

    def _evaluate_variable(self, key: str) -> Any:
        name, raw, at = self.variables_raw[key]
        if self.evaluating > MAX_REFERENCE_DEPTH:  # before Python's own stack runs out
            raise exceeded(
                "ExpressionNestedTooDeep",
                f"Variables refer to variables more than {MAX_REFERENCE_DEPTH} levels deep "
                f"(at '{name}'; lbsim's limit).",
                at,
            )
        scope = Scope(self)
        if isinstance(raw, dict) and raw.get("__lbsim_variable_loop__"):
            return expand_copy_loop(raw["loop"], scope, at)[1]
        return evaluate_value(raw, scope, at)

    def declare_variables(self, raw: Any, at: Pointer) -> None:
        if not isinstance(raw, Mapping):
            return
        for name, value in raw.items():
            if name == "copy" and is_property_copy(value):
                for i, loop in enumerate(value):
                    loop_name = str(loop["name"])
                    wrapped = {"__lbsim_variable_loop__": True, "loop": loop}
                    self.variables_raw[loop_name.lower()] = (loop_name, wrapped, at / "copy" / i)
            else:
                self.variables_raw[name.lower()] = (name, value, at / name)


class Scope:
    """Where an expression is evaluated: a template plus the copy loops around it."""

    __slots__ = ("_copy", "state")

    def __init__(self, state: TemplateState, copy: Mapping[str | None, int] | None = None):
        self.state = state
        self._copy: Mapping[str | None, int] = copy or {}

    # --- EvalContext -------------------------------------------------------------------
    @property
    def deployment(self) -> DeploymentContext:
        return self.state.deployment

    @property
    def deployment_properties(self) -> Mapping[str, Any]:
        return self.state.deployment_properties

    @property
    def user_functions(self) -> Mapping[str, UserFunction]:
        return self.state.user_functions

    def parameter(self, name: str) -> Any:
        key = name.lower()
        self.state.bind_parameter(key)
        if key not in self.state.parameters:
            known = ", ".join(sorted(self.state.parameters)) or "none"
            raise ExpressionError(
                "InvalidTemplate", f"The template parameter '{name}' is not found (known: {known})."
            )
        return self.state.parameters[key]

    def variable(self, name: str) -> Any:
        return self.state.variable(name)

    def copy_index(self, loop: str | None) -> int:
        key = loop.lower() if loop else None
        if key not in self._copy:
            where = f"the copy loop '{loop}'" if loop else "a resource copy loop"
            raise ExpressionError(
                "InvalidTemplate", f"The function 'copyIndex' is used outside {where}."
            )
        return self._copy[key]

    def reference(self, name_or_id: str, api_version: str | None, full: bool) -> Any:
        return self.state.loader.reference(name_or_id, full, self)

    def list_keys(self, resource_id: str, api_version: str | None) -> Any:
        return self.state.loader.list_keys(resource_id)

    def warn(self, code: str, message: str) -> None:
        self.state.loader.warn(code, message)

    # --- the loader's own helpers --------------------------------------------------------
    @property
    def sourcemap(self) -> SourceMap:
        return self.state.loader.sourcemap

    def note_location(self, at: Pointer) -> None:
        self.state.loader.current = (self.state.file, at)

    def with_copy(self, loop: str | None, index: int, *, resource_loop: bool = False) -> Scope:
        copy = dict(self._copy)
        copy[loop.lower() if loop else None] = index
        if resource_loop:
            copy[None] = index
        return Scope(self.state, copy)
