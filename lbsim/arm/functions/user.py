"""Calling user-defined functions (the template's ``functions`` section).

The output value is evaluated in a scope where ``parameters('x')`` reads the call's own
arguments; ARM lets such a function use neither variables, nor copyIndex, nor reference or
list* functions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lbsim.arm.context import EvalContext, UserFunction
from lbsim.arm.functions.base import Env, find_key, is_int, type_name
from lbsim.errors import ExpressionError
from lbsim.model.deployment import DeploymentContext

MAX_DEPTH = 32
_TYPE_CHECKS: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "securestring": lambda v: isinstance(v, str),
    "int": is_int,
    "bool": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "secureobject": lambda v: isinstance(v, dict),
}


class FunctionScope:
    """The EvalContext seen inside a user-defined function."""

    def __init__(self, outer: EvalContext, function: UserFunction, args: Mapping[str, Any]):
        self._outer = outer
        self._function = function
        self._args = args

    @property
    def deployment(self) -> DeploymentContext:
        return self._outer.deployment

    @property
    def deployment_properties(self) -> Mapping[str, Any]:
        return self._outer.deployment_properties

    @property
    def user_functions(self) -> Mapping[str, UserFunction]:
        return self._outer.user_functions

    def _not_allowed(self, what: str) -> ExpressionError:
        name = f"{self._function.namespace}.{self._function.name}"
        return ExpressionError(
            "InvalidTemplate", f"The user-defined function '{name}' cannot use {what}."
        )

    def parameter(self, name: str) -> Any:
        key = find_key(self._args, name)
        if key is None:
            raise self._not_allowed(f"parameters('{name}'): it is not one of its parameters")
        return self._args[key]

    def variable(self, name: str) -> Any:
        raise self._not_allowed(f"variables('{name}')")

    def copy_index(self, loop: str | None) -> int:
        raise self._not_allowed("copyIndex()")

    def reference(self, name_or_id: str, api_version: str | None, full: bool) -> Any:
        raise self._not_allowed("reference()")

    def list_keys(self, resource_id: str, api_version: str | None) -> Any:
        raise self._not_allowed("list functions")

    def warn(self, code: str, message: str) -> None:
        self._outer.warn(code, message)


def _check_type(value: Any, declared: str, what: str, env: Env) -> None:
    check = _TYPE_CHECKS.get(declared.lower())
    if check is not None and not check(value):
        raise ExpressionError(
            "InvalidTemplate",
            f"{what} must be of type '{declared}' but the value is of type '{type_name(value)}'.",
            env.at,
        )


def call_user_function(
    function: UserFunction,
    values: Sequence[Any],
    env: Env,
    evaluate: Callable[[Any, Env], Any],
) -> Any:
    """The value of ``namespace.name(values...)``; ``evaluate`` evaluates the output JSON."""
    name = f"{function.namespace}.{function.name}"
    if len(values) != len(function.parameters):
        raise ExpressionError(
            "InvalidTemplate",
            f"The user-defined function '{name}' takes {len(function.parameters)} argument(s) "
            f"but {len(values)} were provided.",
            env.at,
        )
    if env.depth >= MAX_DEPTH:
        raise ExpressionError(
            "InvalidTemplate", f"User-defined functions nest too deeply at '{name}'.", env.at
        )
    for (param, declared), value in zip(function.parameters, values, strict=True):
        _check_type(value, declared, f"The argument '{param}' of '{name}'", env)
    args = {param: value for (param, _), value in zip(function.parameters, values, strict=True)}
    scope = FunctionScope(env.ctx, function, args)
    result = evaluate(function.output_value, Env(scope, env.at, None, env.depth + 1))
    _check_type(result, function.output_type, f"The output of '{name}'", env)
    return result
