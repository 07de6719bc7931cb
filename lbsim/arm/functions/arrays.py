"""Array and object functions (several also accept strings: length, empty, first, last,
take, skip, contains)."""

from __future__ import annotations

from functools import reduce
from typing import Any

from lbsim.arm.functions.base import (
    ArgumentError,
    Registry,
    expect_array,
    expect_int,
    expect_object,
    expect_str,
    find_key,
    is_int,
    json_equals,
    json_key,
    merge_objects,
    type_name,
)

register = Registry()


def _sized(value: Any, position: int) -> str | list[Any] | dict[str, Any]:
    if not isinstance(value, str | list | dict):
        raise ArgumentError(
            f"argument {position} must be an array, an object or a string, not "
            f"'{type_name(value)}'."
        )
    return value


@register("length")
def _length(value: Any) -> int:
    return len(_sized(value, 1))


@register("empty")
def _empty(value: Any) -> bool:
    return value is None or len(_sized(value, 1)) == 0


@register("first")
def _first(value: Any) -> Any:
    if isinstance(value, str):
        return value[:1]
    items = expect_array(value, 1)
    return items[0] if items else None


@register("last")
def _last(value: Any) -> Any:
    if isinstance(value, str):
        return value[-1:]
    items = expect_array(value, 1)
    return items[-1] if items else None


def _sequence(value: Any) -> str | list[Any]:
    if isinstance(value, str | list):
        return value
    raise ArgumentError(f"argument 1 must be an array or a string, not '{type_name(value)}'.")


@register("take")
def _take(value: Any, count: Any) -> Any:
    return _sequence(value)[: max(expect_int(count, 2), 0)]


@register("skip")
def _skip(value: Any, count: Any) -> Any:
    return _sequence(value)[max(expect_int(count, 2), 0) :]


@register("contains")
def _contains(container: Any, item: Any) -> bool:
    """Strings: case-sensitive substring. Objects: case-insensitive key. Arrays: element."""
    if isinstance(container, str):
        needle = item if isinstance(item, str) else str(expect_int(item, 2))
        return needle in container
    if isinstance(container, dict):
        return find_key(container, expect_str(item, 2)) is not None
    return any(json_equals(element, item) for element in expect_array(container, 1))


@register("createArray")
def _create_array(*args: Any) -> list[Any]:
    return list(args)


@register("array")
def _array(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@register("createObject")
def _create_object(*args: Any) -> dict[str, Any]:
    if len(args) % 2:
        raise ArgumentError("the function takes an even number of arguments (key, value, ...).")
    return {expect_str(args[i], i + 1): args[i + 1] for i in range(0, len(args), 2)}


def _all_of(args: tuple[Any, ...]) -> type:
    if all(isinstance(a, list) for a in args):
        return list
    if all(isinstance(a, dict) for a in args):
        return dict
    raise ArgumentError("the arguments must be either all arrays or all objects.")


def _distinct(items: list[Any]) -> list[Any]:
    seen: set[str] = set()
    result = []
    for item in items:
        key = json_key(item)
        if key not in seen:
            seen.add(key)
            result.append(item)
    return result


@register("union", min_args=1)
def _union(*args: Any) -> Any:
    """Arrays: distinct elements in first-seen order. Objects: later values win, nested
    objects are merged, nested arrays replaced."""
    if _all_of(args) is list:
        return _distinct([item for a in args for item in a])
    return reduce(lambda a, b: merge_objects(a, b, deep=True), args[1:], dict(args[0]))


@register("intersection", min_args=1)
def _intersection(*args: Any) -> Any:
    if _all_of(args) is list:
        others = [{json_key(i) for i in a} for a in args[1:]]
        return _distinct([i for i in args[0] if all(json_key(i) in o for o in others)])
    result = {}
    for key, value in args[0].items():
        found = [find_key(other, key) for other in args[1:]]
        if all(
            k is not None and json_equals(o[k], value) for k, o in zip(found, args[1:], strict=True)
        ):
            result[key] = value
    return result


@register("items")
def _items(value: Any) -> list[dict[str, Any]]:
    obj = expect_object(value, 1)
    ordered = sorted(obj, key=lambda k: (k.lower(), k))
    return [{"key": key, "value": obj[key]} for key in ordered]


@register("objectKeys")
def _object_keys(value: Any) -> list[str]:
    return list(expect_object(value, 1))


@register("shallowMerge")
def _shallow_merge(values: Any) -> dict[str, Any]:
    objects = [expect_object(v, 1) for v in expect_array(values, 1)]
    return reduce(lambda a, b: merge_objects(a, b, deep=False), objects, {})


@register("flatten")
def _flatten(values: Any) -> list[Any]:
    return [item for inner in expect_array(values, 1) for item in expect_array(inner, 1)]


def _try_step(value: Any, key: Any) -> Any:
    if isinstance(value, dict) and isinstance(key, str):
        found = find_key(value, key)
        return None if found is None else value[found]
    if isinstance(value, list) and is_int(key):
        return value[key] if 0 <= key < len(value) else None
    if value is None:
        return None
    raise ArgumentError(f"a '{type_name(value)}' cannot be indexed by '{type_name(key)}'.")


@register("tryGet", min_args=2)
def _try_get(value: Any, *keys: Any) -> Any:
    return reduce(_try_step, keys, value)


@register("indexFromEnd")
def _index_from_end(value: Any, index: Any) -> Any:
    items, position = expect_array(value, 1), expect_int(index, 2)
    if not 1 <= position <= len(items):
        raise ArgumentError(f"the index {position} is out of range for {len(items)} element(s).")
    return items[-position]


@register("tryIndexFromEnd")
def _try_index_from_end(value: Any, index: Any) -> Any:
    items, position = expect_array(value, 1), expect_int(index, 2)
    return items[-position] if 1 <= position <= len(items) else None


FUNCTIONS = register.table
