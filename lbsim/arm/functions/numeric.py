"""Integer functions with .NET ``long`` semantics: 64-bit, division truncates toward zero and
the remainder takes the sign of the dividend."""

from __future__ import annotations

from typing import Any

from lbsim.arm.functions.base import ArgumentError, Registry, expect_array, expect_int

register = Registry()

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_RANGE_COUNT = 10000


def _checked(value: int) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ArgumentError(f"the result {value} does not fit in a 64-bit integer.")
    return value


def truncated_div(a: int, b: int) -> int:
    """``a / b`` in .NET: the quotient rounded toward zero."""
    if b == 0:
        raise ArgumentError("Attempted to divide by zero.")
    quotient = abs(a) // abs(b)
    return quotient if (a < 0) == (b < 0) else -quotient


@register("add")
def _add(a: Any, b: Any) -> int:
    return _checked(expect_int(a, 1) + expect_int(b, 2))


@register("sub")
def _sub(a: Any, b: Any) -> int:
    return _checked(expect_int(a, 1) - expect_int(b, 2))


@register("mul")
def _mul(a: Any, b: Any) -> int:
    return _checked(expect_int(a, 1) * expect_int(b, 2))


@register("div")
def _div(a: Any, b: Any) -> int:
    return _checked(truncated_div(expect_int(a, 1), expect_int(b, 2)))


@register("mod")
def _mod(a: Any, b: Any) -> int:
    dividend, divisor = expect_int(a, 1), expect_int(b, 2)
    return dividend - divisor * truncated_div(dividend, divisor)


def _numbers(args: tuple[Any, ...]) -> list[int]:
    values = expect_array(args[0], 1) if len(args) == 1 and isinstance(args[0], list) else args
    if not values:
        raise ArgumentError("at least one integer is required.")
    return [expect_int(v, i) for i, v in enumerate(values, start=1)]


@register("min", min_args=1)
def _min(*args: Any) -> int:
    return min(_numbers(args))


@register("max", min_args=1)
def _max(*args: Any) -> int:
    return max(_numbers(args))


@register("int")
def _int(value: Any) -> int:
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not digits.isascii() or not digits.isdigit():
            raise ArgumentError(f"the string '{value}' is not a valid integer.")
        return _checked(int(text))
    if isinstance(value, float) and value.is_integer():
        return _checked(int(value))
    return expect_int(value, 1)


@register("range")
def _range(start: Any, count: Any) -> list[int]:
    first, length = expect_int(start, 1), expect_int(count, 2)
    if not 0 <= length <= MAX_RANGE_COUNT:
        raise ArgumentError(f"the count must be between 0 and {MAX_RANGE_COUNT}, not {length}.")
    if first + length > 2**31 - 1:
        raise ArgumentError("the sum of the start index and the count must not exceed 2147483647.")
    return list(range(first, first + length))


FUNCTIONS = register.table
