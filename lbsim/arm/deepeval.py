"""Evaluate a whole JSON value of a template: expressions in strings and keys, and property
copy loops (``"copy": [{"name", "count", "input"}]`` inside any object)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lbsim.arm.evaluate import evaluate_string, is_expression
from lbsim.arm.limits import MAX_COPY_COUNT, check_time
from lbsim.errors import ExpressionError
from lbsim.pointer import Pointer

if TYPE_CHECKING:
    from lbsim.arm.scope import Scope


def evaluate_value(value: Any, scope: Scope, at: Pointer) -> Any:
    """``value`` with every expression in it evaluated in ``scope``; the result is registered
    in the source map at ``at``."""
    result = _evaluated(value, scope, at)
    if isinstance(result, dict | list):
        scope.sourcemap.register(result, at)
    return result


def _evaluated(value: Any, scope: Scope, at: Pointer) -> Any:
    """``value`` evaluated. The containers inside it are registered in the source map only
    where their place differs from their parent's place and their key (a key made by an
    expression, a copy loop's elements): elsewhere the map derives it. A pointer kept for
    every container would cost width x depth memory (a million small arrays 100 deep: a GB)."""
    if isinstance(value, str):
        return _evaluate_text(value, scope, at)
    if isinstance(value, dict):
        return _evaluate_object(value, scope, at)
    if isinstance(value, list):
        return [_evaluated(item, scope, at / i) for i, item in enumerate(value)]
    return value


def _evaluate_text(text: str, scope: Scope, at: Pointer) -> Any:
    if not text.startswith("["):
        return text
    scope.note_location(at)
    result = evaluate_string(text, scope, at)
    if isinstance(result, dict | list) and is_expression(text):
        scope.sourcemap.register(result, at, opaque=True)
    return result


def _evaluate_object(value: Mapping[str, Any], scope: Scope, at: Pointer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    loops = value.get("copy")
    for key, item in value.items():
        if key == "copy" and is_property_copy(loops):
            continue
        name = _evaluate_text(key, scope, at / key) if key.startswith("[") else key
        same = name == key  # out[name] is where the map looks for it
        out[str(name)] = (_evaluated if same else evaluate_value)(item, scope, at / key)
    if isinstance(loops, list) and is_property_copy(loops):
        for i, loop in enumerate(loops):
            name, items = expand_copy_loop(loop, scope, at / "copy" / i)
            out[name] = items
    return out


def is_property_copy(value: Any) -> bool:
    """Whether ``value`` is the array form of ``copy`` (property or variable loops)."""
    return isinstance(value, list) and all(
        isinstance(loop, dict) and "name" in loop and "input" in loop for loop in value
    )


def expand_copy_loop(loop: Mapping[str, Any], scope: Scope, at: Pointer) -> tuple[str, list[Any]]:
    """One property or variable loop: its array name and its evaluated elements."""
    name = evaluate_value(loop["name"], scope, at / "name")
    if not isinstance(name, str):
        raise ExpressionError("InvalidTemplate", "A copy loop's 'name' must be a string.", at)
    count = copy_count(loop.get("count"), scope, at / "count")
    items = []
    for index in range(count):
        check_time(at)
        inner = scope.with_copy(name, index)
        items.append(evaluate_value(loop["input"], inner, at / "input"))
    scope.sourcemap.register(items, at)
    return name, items


def copy_count(raw: Any, scope: Scope, at: Pointer) -> int:
    """A copy loop's ``count``: an integer from 0 to 800."""
    count = evaluate_value(raw, scope, at)
    if isinstance(count, str) and count.strip().isdigit():
        count = int(count)
    if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_COPY_COUNT:
        raise ExpressionError(
            "InvalidTemplate",
            f"The copy count must be an integer from 0 to {MAX_COPY_COUNT}; got {_shown(count)}.",
            at,
        )
    return count


def _shown(value: Any) -> str:
    """A wrong value for a message: short values in full, long ones by their type."""
    text = repr(value)
    return text if len(text) <= 40 else f"a value of type {type(value).__name__}"
