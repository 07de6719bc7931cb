"""Functions that take lambdas: map, filter, reduce, sort, toObject, groupBy, mapValues, and
``lambdaVariables`` which reads a lambda parameter. (``lambda(...)`` itself is compiled by the
evaluator into a Lambda value.)"""

from __future__ import annotations

from typing import Any

from lbsim.arm.functions.base import (
    ArgumentError,
    Env,
    Kind,
    Lambda,
    Registry,
    expect_array,
    expect_bool,
    expect_lambda,
    expect_object,
    expect_str,
    find_key,
)
from lbsim.arm.limits import Items

register = Registry()


@register("lambdaVariables", kind=Kind.ENV)
def _lambda_variables(env: Env, name: Any) -> Any:
    key = expect_str(name, 1)
    scope = env.lambda_vars or {}
    found = find_key(scope, key)
    if found is None:
        raise ArgumentError(f"'{key}' is not a variable of an enclosing lambda.")
    return scope[found]


@register("map", kind=Kind.ENV)
def _map(env: Env, values: Any, function: Any) -> list[Any]:
    fn = expect_lambda(function, 2, (1, 2))
    built = Items()  # each result is small, but together they may not be
    return [built.add(fn(env, item, i)) for i, item in enumerate(expect_array(values, 1))]


@register("filter", kind=Kind.ENV)
def _filter(env: Env, values: Any, function: Any) -> list[Any]:
    fn = expect_lambda(function, 2, (1, 2))
    items = expect_array(values, 1)
    return [item for i, item in enumerate(items) if _predicate(fn(env, item, i))]


def _predicate(value: Any) -> bool:
    try:
        return expect_bool(value, 2)
    except ArgumentError:
        raise ArgumentError("the filter lambda must return a boolean.") from None


@register("reduce", kind=Kind.ENV)
def _reduce(env: Env, values: Any, initial: Any, function: Any) -> Any:
    fn = expect_lambda(function, 3, (2, 3))
    result = initial
    for i, item in enumerate(expect_array(values, 1)):
        result = fn(env, result, item, i)
    return result


class _SortKey:
    """Orders elements by the sort lambda: ``a`` comes before ``b`` when it returns true."""

    __slots__ = ("env", "fn", "value")

    def __init__(self, env: Env, fn: Lambda, value: Any) -> None:
        self.env, self.fn, self.value = env, fn, value

    def __lt__(self, other: _SortKey) -> bool:
        result = self.fn(self.env, self.value, other.value)
        if not isinstance(result, bool):
            raise ArgumentError("the sort lambda must return a boolean.")
        return result


@register("sort", kind=Kind.ENV)
def _sort(env: Env, values: Any, function: Any) -> list[Any]:
    fn = expect_lambda(function, 2, (2,))
    keys = sorted(_SortKey(env, fn, v) for v in expect_array(values, 1))
    return [k.value for k in keys]


def _key_of(env: Env, fn: Lambda, item: Any) -> str:
    key = fn(env, item)
    if not isinstance(key, str):
        raise ArgumentError("the key lambda must return a string.")
    return key


@register("toObject", kind=Kind.ENV)
def _to_object(env: Env, values: Any, key: Any, value: Any = None) -> dict[str, Any]:
    key_fn = expect_lambda(key, 2, (1,))
    value_fn = None if value is None else expect_lambda(value, 3, (1,))
    built = Items()
    return {
        _key_of(env, key_fn, item): item if value_fn is None else built.add(value_fn(env, item))
        for item in expect_array(values, 1)
    }


@register("groupBy", kind=Kind.ENV)
def _group_by(env: Env, values: Any, function: Any) -> dict[str, list[Any]]:
    fn = expect_lambda(function, 2, (1,))
    groups: dict[str, list[Any]] = {}
    for item in expect_array(values, 1):
        groups.setdefault(_key_of(env, fn, item), []).append(item)
    return groups


@register("mapValues", kind=Kind.ENV)
def _map_values(env: Env, values: Any, function: Any) -> dict[str, Any]:
    fn = expect_lambda(function, 2, (1,))
    built = Items()
    return {k: built.add(fn(env, v)) for k, v in expect_object(values, 1).items()}


FUNCTIONS = register.table
