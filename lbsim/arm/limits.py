"""The limits of one template load, checked before the work they bound.

Azure's own limits come from
https://learn.microsoft.com/en-us/azure/azure-resource-manager/templates/best-practices#template-limits
and https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-job-size-exceeded
(256 parameters, 256 variables, 800 resources including copy count, 64 outputs, 24,576
characters in one expression; 4 MB for the expanded template and 1 MB for each expanded
resource, both measured by Azure after compression). lbsim measures sizes the same way: the
compact JSON of the evaluated value, deflate-compressed.

Azure has no documented limit for the rest, but a hostile template can make any of them cost
gigabytes or hours, so lbsim has its own: how deep JSON and expressions nest, how large a value
one expression may build, how many resources all nested deployments expand to together, and
how long one load may take. A breach of any limit is a ``LimitExceeded``, which ends the whole
load at once (its cause would only repeat).
"""

from __future__ import annotations

import contextlib
import json
import time
import zlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from lbsim.errors import LbsimError
from lbsim.pointer import Pointer

# Azure's
MAX_PARAMETERS = 256
MAX_VARIABLES = 256
MAX_OUTPUTS = 64
MAX_RESOURCES = 800  # per template, copy loops expanded
MAX_COPY_COUNT = 800
MAX_EXPRESSION_LENGTH = 24_576
MAX_CAPACITY = 1_000  # a scale set's instances (platform images)
MAX_TEMPLATE_BYTES = 4 * 1024 * 1024  # compressed, after expansion
MAX_RESOURCE_BYTES = 1024 * 1024  # compressed, after expansion
# lbsim's own
MAX_JSON_DEPTH = 128
MAX_EXPRESSION_DEPTH = 128
MAX_REFERENCE_DEPTH = 64  # variables whose values use variables, one inside the other
MAX_STRING_LENGTH = 1024 * 1024  # characters in one string an expression builds
MAX_VALUE_ITEMS = 100_000  # elements, members and scalars in one value an expression builds
MAX_VALUE_TEXT = 4 * 1024 * 1024  # characters of all strings in one such value
MAX_TOTAL_RESOURCES = 10_000  # across the template and all its nested deployments
MAX_INT_DIGITS = 4_300  # Python's own limit for converting text to an integer
LOAD_SECONDS = 10.0

_DEADLINE: ContextVar[float | None] = ContextVar("lbsim_load_deadline", default=None)


class LimitExceeded(LbsimError):
    """A limit of the load was passed: the load stops here, reporting only this."""


def exceeded(code: str, message: str, at: Pointer | None = None) -> LimitExceeded:
    return LimitExceeded(code, message, at)


@contextlib.contextmanager
def deadline(seconds: float | None = None) -> Iterator[None]:
    """Bound the time of the load run inside (the outermost deadline wins)."""
    if _DEADLINE.get() is not None:
        yield
        return
    token = _DEADLINE.set(time.monotonic() + (LOAD_SECONDS if seconds is None else seconds))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def check_time(at: Pointer | None = None) -> None:
    """Called in the evaluator's loops: a load past its deadline stops."""
    end = _DEADLINE.get()
    if end is not None and time.monotonic() > end:
        raise exceeded(
            "LoadTimeLimitExceeded",
            f"Loading the template took more than {LOAD_SECONDS:g} s; lbsim stopped it "
            "(a copy loop, nested deployments or an expression do too much work).",
            at,
        )


def check_value(value: Any, at: Pointer | None = None) -> None:
    """A value an expression built must stay within lbsim's size and depth limits. The walk
    stops at the first limit passed, so it costs at most about MAX_VALUE_ITEMS steps; a
    value that holds the same array twice counts it twice, as its JSON text would."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise _too_large(f"a string of {len(value):,} characters", at)
        return
    if not isinstance(value, dict | list):
        return
    items, text = 0, 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        items += 1
        if isinstance(node, str):
            text += len(node)
            if len(node) > MAX_STRING_LENGTH:
                raise _too_large(f"a string of {len(node):,} characters", at)
        elif isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise exceeded(
                    "ExpressionValueTooDeep",
                    f"The expression builds a value nested more than {MAX_JSON_DEPTH} levels "
                    "deep (lbsim's limit).",
                    at,
                )
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
            if isinstance(node, dict):
                text += sum(len(k) for k in node)
        if items > MAX_VALUE_ITEMS:
            raise _too_large(f"a value of over {MAX_VALUE_ITEMS:,} items", at)
        if text > MAX_VALUE_TEXT:
            raise _too_large(f"a value holding over {MAX_VALUE_TEXT:,} characters", at)


def check_length(length: int, at: Pointer | None = None) -> None:
    """Before building a string of ``length`` characters."""
    if length > MAX_STRING_LENGTH:
        raise _too_large(f"a string of {length:,} characters", at)


def _too_large(what: str, at: Pointer | None) -> LimitExceeded:
    return exceeded(
        "ExpressionValueTooLarge",
        f"The expression builds {what}; lbsim's limits are {MAX_STRING_LENGTH:,} characters "
        f"in a string and {MAX_VALUE_ITEMS:,} items in an array or object.",
        at,
    )


class Items:
    """A running count of items for functions that build one value in a loop (``map``)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, value: Any) -> Any:
        self.count += 1 if not isinstance(value, dict | list) else _items(value)
        if self.count > MAX_VALUE_ITEMS:
            raise _too_large(f"a value of over {MAX_VALUE_ITEMS:,} items", None)
        check_time()
        return value


def _items(value: Any) -> int:
    count, stack = 0, [value]
    while stack and count <= MAX_VALUE_ITEMS:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def too_deep(value: Any) -> tuple[str | int, ...] | None:
    """The path of the first container (in document order) nested deeper than MAX_JSON_DEPTH,
    or None. Iterative, and its memory is the depth, not the width: it holds one iterator per
    open container and one path, never a path for each container waiting its turn (a wide
    value of a million small arrays would need gigabytes of those)."""
    if not isinstance(value, dict | list):
        return None
    path: list[str | int] = []
    pending: list[Iterator[tuple[Any, Any]]] = [_pairs(value)]
    while pending:
        for key, child in pending[-1]:
            if isinstance(child, dict | list):
                path.append(key)
                if len(path) >= MAX_JSON_DEPTH:
                    return tuple(path)
                pending.append(_pairs(child))
                break
        else:  # this container is done: back to its parent
            pending.pop()
            if path:
                path.pop()
    return None


def _pairs(node: dict[str, Any] | list[Any]) -> Iterator[tuple[Any, Any]]:
    return iter(node.items()) if isinstance(node, dict) else enumerate(node)


def deep_value_error(path: tuple[str | int, ...], base: Pointer) -> LimitExceeded:
    return exceeded(
        "JsonNestedTooDeep",
        f"The JSON is nested more than {MAX_JSON_DEPTH} levels deep (lbsim's limit).",
        base.join(path[:MAX_JSON_DEPTH]),
    )


def compressed_size(value: Any) -> int:
    """The size Azure checks: the value's compact JSON, deflate-compressed, in bytes."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
    return len(zlib.compress(text.encode("utf-8", "surrogatepass")))
