"""Reading an evaluated resource body with pointers back into the template.

``Node`` wraps one JSON value with the pointer it came from. Property names are matched
without regard to case, as Azure's resource providers do. Typed accessors record a problem
(and return a default) instead of raising, so one conversion reports every mistake.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, overload

import attrs

from lbsim.arm.sourcemap import SourceMap
from lbsim.errors import Problem
from lbsim.model.common import SubResource
from lbsim.pointer import Pointer


@attrs.define
class Sink:
    """Where conversion problems go, with the file they belong to."""

    file: str | None
    problems: list[Problem] = attrs.Factory(list)

    def error(self, code: str, message: str, at: Pointer) -> None:
        self.problems.append(Problem(code, message, at, self.file))


@attrs.frozen
class Node:
    value: Any
    at: Pointer
    smap: SourceMap
    sink: Sink

    def get(self, key: str) -> Node:
        """The child ``key`` (case-insensitive); its value is None when absent."""
        value = self.value if isinstance(self.value, dict) else {}
        found = value.get(key)
        if found is None and key not in value:
            lower = key.lower()
            key = next((k for k in value if k.lower() == lower), key)
            found = value.get(key)
        at = self.smap.child_at(self.value, self.at, key, found)
        return Node(found, at, self.smap, self.sink)

    def path(self, *keys: str) -> Node:
        node = self
        for key in keys:
            node = node.get(key)
        return node

    def items(self) -> Iterator[Node]:
        """The elements of an array (nothing when the value is not an array)."""
        if isinstance(self.value, list):
            for i, item in enumerate(self.value):
                yield Node(
                    item, self.smap.child_at(self.value, self.at, i, item), self.smap, self.sink
                )

    @property
    def present(self) -> bool:
        return self.value is not None

    @overload
    def text(self) -> str | None: ...

    @overload
    def text(self, default: str) -> str: ...

    def text(self, default: str | None = None) -> str | None:
        """The value as text; ``default`` when absent, null or empty (Azure reads an empty
        string as a property not set)."""
        if self.value is None or self.value == "":
            return default
        return self.value if isinstance(self.value, str) else str(self.value)

    def integer(self, default: int | None = None) -> int | None:
        """An integer; Azure also accepts a string of digits."""
        value = self.value
        if value is None:
            return default
        digits = value.strip().lstrip("-") if isinstance(value, str) else ""
        if digits.isascii() and digits.isdigit() and len(digits) <= 20:  # int64 and then some
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        shown = repr(value) if len(repr(value)) <= 40 else f"a {type(value).__name__}"
        self.sink.error("InvalidRequestFormat", f"Expected an integer, got {shown}.", self.at)
        return default

    def boolean(self, default: bool = False) -> bool:
        value = self.value
        if value is None:
            return default
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, bool):
            return value
        self.sink.error("InvalidRequestFormat", f"Expected true or false, got {value!r}.", self.at)
        return default

    def strings(self) -> tuple[str, ...]:
        return tuple(str(n.value) for n in self.items() if n.value is not None)

    def ref(self) -> SubResource | None:
        """A ``{"id": ...}`` sub-resource reference."""
        ident = self.get("id")
        if isinstance(ident.value, str) and ident.value:
            return SubResource(ident.value, at=self.at)
        return None

    def refs(self) -> tuple[SubResource, ...]:
        return tuple(r for r in (n.ref() for n in self.items()) if r is not None)

    def name(self) -> str:
        return self.get("name").text("")
