"""Logical and comparison functions. ``if`` evaluates only the branch it takes; ``and`` and
``or`` stop at the first argument that decides the result."""

from __future__ import annotations

from typing import Any

from lbsim.arm.functions.base import (
    ArgumentError,
    Compiled,
    Env,
    Kind,
    Registry,
    expect_bool,
    is_number,
    json_equals,
    type_name,
)

register = Registry()


@register("if", kind=Kind.LAZY)
def _if(env: Env, condition: Compiled, when_true: Compiled, when_false: Compiled) -> Any:
    chosen = when_true if expect_bool(condition(env), 1) else when_false
    return chosen(env)


@register("and", kind=Kind.LAZY, min_args=2)
def _and(env: Env, *args: Compiled) -> bool:
    return all(expect_bool(arg(env), i) for i, arg in enumerate(args, start=1))


@register("or", kind=Kind.LAZY, min_args=2)
def _or(env: Env, *args: Compiled) -> bool:
    return any(expect_bool(arg(env), i) for i, arg in enumerate(args, start=1))


@register("not")
def _not(value: Any) -> bool:
    return not expect_bool(value, 1)


@register("bool")
def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ArgumentError(f"the value '{value}' cannot be converted to a boolean.")


@register("true")
def _true() -> bool:
    return True


@register("false")
def _false() -> bool:
    return False


@register("null")
def _null() -> None:
    return None


@register("equals")
def _equals(first: Any, second: Any) -> bool:
    return json_equals(first, second)


@register("coalesce", min_args=1)
def _coalesce(*args: Any) -> Any:
    return next((a for a in args if a is not None), None)


def _culture_key(text: str) -> tuple[str, str]:
    """Approximates the invariant culture's order: letters compare case-insensitively
    first, and on a tie lower case sorts before upper case (so 'A' > 'a')."""
    return text.lower(), text.swapcase()


def _compare(first: Any, second: Any) -> int:
    if is_number(first) and is_number(second):
        return int(bool(first > second)) - int(bool(first < second))
    if isinstance(first, str) and isinstance(second, str):
        a, b = _culture_key(first), _culture_key(second)
        return (a > b) - (a < b)
    raise ArgumentError(
        "the arguments must both be integers or both be strings, not "
        f"'{type_name(first)}' and '{type_name(second)}'."
    )


@register("less")
def _less(first: Any, second: Any) -> bool:
    return _compare(first, second) < 0


@register("lessOrEquals")
def _less_or_equals(first: Any, second: Any) -> bool:
    return _compare(first, second) <= 0


@register("greater")
def _greater(first: Any, second: Any) -> bool:
    return _compare(first, second) > 0


@register("greaterOrEquals")
def _greater_or_equals(first: Any, second: Any) -> bool:
    return _compare(first, second) >= 0


FUNCTIONS = register.table
