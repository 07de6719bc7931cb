"""Where each evaluated JSON container came from in the original template.

Evaluation builds fresh dicts and lists; each is registered with the pointer of the template
value it was made from. ``locate`` turns a path inside an evaluated value (for example a
schema violation's path) into a pointer into the original template, through copy loops and
expressions: a container that an expression produced points at the expression itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from lbsim.pointer import Pointer


@attrs.frozen
class _Origin:
    at: Pointer
    opaque: bool  # made by an expression: paths below it point at the expression


class SourceMap:
    def __init__(self) -> None:
        self._origins: dict[int, _Origin] = {}
        self._keep: list[Any] = []  # keeps registered containers alive, so ids stay unique

    def register(self, container: Any, at: Pointer, *, opaque: bool = False) -> None:
        if id(container) not in self._origins:
            self._origins[id(container)] = _Origin(at, opaque)
            self._keep.append(container)

    def origin(self, container: Any) -> Pointer | None:
        found = self._origins.get(id(container))
        return found.at if found else None

    def child_at(self, parent: Any, parent_at: Pointer, key: str | int, child: Any) -> Pointer:
        """The template pointer of ``parent[key]``, given the pointer of ``parent``."""
        origin = self._origins.get(id(child)) if isinstance(child, dict | list) else None
        if origin is not None:
            return origin.at.sealed() if origin.opaque else origin.at
        mine = self._origins.get(id(parent))
        return parent_at.sealed() if mine is not None and mine.opaque else parent_at / key

    def locate(self, root: Any, path: Sequence[str | int], default: Pointer) -> Pointer:
        """The template pointer of ``root`` followed by ``path``."""
        base = self._origins.get(id(root))
        at = base.at if base else default
        opaque = base.opaque if base else False
        node = root
        for step in path:
            node = _child(node, step)
            origin = self._origins.get(id(node)) if node is not None else None
            if origin is not None and not opaque:
                at, opaque = origin.at, origin.opaque
            elif not opaque:
                at = at / step
        return at


def _child(node: Any, step: str | int) -> Any:
    if isinstance(node, dict):
        return node.get(step) if isinstance(step, str) else None
    if isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
        return node[step]
    return None
