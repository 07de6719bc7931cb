"""What every template function module shares: the registry, the evaluation environment,
lambda values, argument checks and ARM's notions of string conversion and equality."""

from __future__ import annotations

import enum
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from lbsim.arm.context import EvalContext
from lbsim.arm.limits import check_time
from lbsim.pointer import Pointer

F = TypeVar("F", bound=Callable[..., Any])
Compiled = Callable[["Env"], Any]


class ArgumentError(Exception):
    """A function cannot use its arguments. The evaluator turns it into an ExpressionError
    that names the function and where the expression is."""


class Kind(enum.Enum):
    PURE = "pure"  # impl(*values)
    ENV = "env"  # impl(env, *values)
    LAZY = "lazy"  # impl(env, *compiled_arguments): evaluates only what it needs


@attrs.frozen
class Function:
    name: str
    impl: Callable[..., Any]
    min_args: int
    max_args: int | None
    kind: Kind

    def arity_problem(self, count: int) -> str | None:
        """Why ``count`` arguments are wrong for this function, or None."""
        low, high = self.min_args, self.max_args
        if low <= count and (high is None or count <= high):
            return None
        if high is None:
            wanted = f"at least {low}"
        elif low == high:
            wanted = f"exactly {low}"
        else:
            wanted = f"between {low} and {high}"
        return f"the function requires {wanted} argument(s) but {count} were provided."


class Registry:
    """A table of functions filled by the ``@registry("name")`` decorator; the arity comes
    from the Python signature (parameters with defaults are optional, ``*args`` is open)."""

    def __init__(self) -> None:
        self.table: dict[str, Function] = {}

    def __call__(
        self, name: str, *, kind: Kind = Kind.PURE, min_args: int | None = None
    ) -> Callable[[F], F]:
        def register(impl: F) -> F:
            low, high = _arity(impl, skip=0 if kind is Kind.PURE else 1)
            function = Function(name, impl, low if min_args is None else min_args, high, kind)
            self.table[name.lower()] = function
            return impl

        return register


def _arity(impl: Callable[..., Any], skip: int) -> tuple[int, int | None]:
    params = list(inspect.signature(impl).parameters.values())[skip:]
    required = sum(1 for p in params if p.default is p.empty and p.kind != p.VAR_POSITIONAL)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return required, None
    return required, len(params)


class Env:
    """Where an expression is evaluated: the context, the JSON pointer of the string being
    evaluated, the lambda variables in scope and the user-function call depth."""

    __slots__ = ("at", "ctx", "depth", "lambda_vars")

    def __init__(
        self,
        ctx: EvalContext,
        at: Pointer | None = None,
        lambda_vars: Mapping[str, Any] | None = None,
        depth: int = 0,
    ) -> None:
        self.ctx = ctx
        self.at = at
        self.lambda_vars = lambda_vars
        self.depth = depth

    def bind(self, names: Sequence[str], values: Sequence[Any]) -> Env:
        scope = dict(self.lambda_vars or {})
        scope.update(zip(names, values, strict=True))
        return Env(self.ctx, self.at, scope, self.depth)


@attrs.frozen
class Lambda:
    """The value of ``lambda('a', 'b', body)``: only map/filter/reduce/... accept it."""

    params: tuple[str, ...]
    body: Compiled

    def __call__(self, env: Env, *args: Any) -> Any:
        check_time(env.at)  # map() and friends loop here
        return self.body(env.bind(self.params, args[: len(self.params)]))


def expect_lambda(value: Any, position: int, arities: Iterable[int]) -> Lambda:
    if not isinstance(value, Lambda):
        raise ArgumentError(f"argument {position} must be a lambda expression.")
    allowed = tuple(arities)
    if len(value.params) not in allowed:
        counts = " or ".join(str(a) for a in allowed)
        raise ArgumentError(
            f"the lambda in argument {position} must have {counts} parameter(s), "
            f"not {len(value.params)}."
        )
    return value


def type_name(value: Any) -> str:
    """ARM's name for the JSON type of ``value``."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int):
        return "Integer"
    if isinstance(value, float):
        return "Float"
    if isinstance(value, str):
        return "String"
    if isinstance(value, list):
        return "Array"
    if isinstance(value, dict):
        return "Object"
    if isinstance(value, Lambda):
        return "Lambda"
    return type(value).__name__


def _wrong(value: Any, position: int, wanted: str) -> ArgumentError:
    return ArgumentError(
        f"argument {position} must be of type '{wanted}', but the provided value is of "
        f"type '{type_name(value)}'."
    )


def expect_str(value: Any, position: int) -> str:
    if not isinstance(value, str):
        raise _wrong(value, position, "String")
    return value


def expect_int(value: Any, position: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(value, position, "Integer")
    return value


def expect_bool(value: Any, position: int) -> bool:
    if not isinstance(value, bool):
        raise _wrong(value, position, "Boolean")
    return value


def expect_array(value: Any, position: int) -> list[Any]:
    if not isinstance(value, list):
        raise _wrong(value, position, "Array")
    return value


def expect_object(value: Any, position: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _wrong(value, position, "Object")
    return value


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _float_text(value: float) -> str:
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def to_arm_string(value: Any) -> str:
    """How ARM writes a value as text: strings unchanged, ``True``/``False`` for booleans,
    an empty string for null, and compact JSON for arrays and objects."""
    if type(value) is str or isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float_text(value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    raise ArgumentError(f"a value of type '{type_name(value)}' cannot be converted to a string.")


def json_equals(a: Any, b: Any) -> bool:
    """Deep JSON equality: a boolean never equals a number, strings compare exactly."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if is_number(a) and is_number(b):
        return bool(a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equals(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equals(a[k], b[k]) for k in a)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    return a is None and b is None


def json_key(value: Any) -> str:
    """A hashable stand-in for a JSON value: equal keys for ``json_equals`` values."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def find_key(obj: Mapping[str, Any], name: str) -> str | None:
    """The key of ``obj`` that matches ``name`` case-insensitively (exact match first)."""
    if name in obj:
        return name
    lowered = name.lower()
    return next((k for k in obj if k.lower() == lowered), None)


def merge_objects(
    first: Mapping[str, Any], second: Mapping[str, Any], deep: bool
) -> dict[str, Any]:
    """``first`` updated with ``second``; keys match case-insensitively and keep the first
    spelling. With ``deep``, nested objects are merged too (arrays are replaced)."""
    result = dict(first)
    for key, value in second.items():
        existing = find_key(result, key)
        if existing is None:
            result[key] = value
            continue
        old = result[existing]
        nested = deep and isinstance(old, dict) and isinstance(value, dict)
        result[existing] = merge_objects(old, value, deep) if nested else value
    return result
