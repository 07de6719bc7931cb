"""An immutable RFC 6901 JSON pointer into a template."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import attrs


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


@attrs.frozen(order=True)
class Pointer:
    """A location in a JSON document, as a tuple of reference tokens.

    ``Pointer.root() / "resources" / 3`` is ``/resources/3``.

    An ``opaque`` pointer is the place of an expression whose value is a whole object or
    array (``"[createArray(...)]"``): what is inside that value has no place of its own in the
    template, so a path below it (``/ "properties" / "subnet"``) stays at the expression,
    and every problem found inside points at a node that exists.
    """

    parts: tuple[str, ...] = ()
    document: str | None = attrs.field(default=None, eq=False, order=False)
    opaque: bool = attrs.field(default=False, eq=False, order=False)

    @classmethod
    def root(cls, document: str | None = None) -> Pointer:
        """The whole document; ``document`` names the file it is in, if known."""
        return cls((), document)

    @classmethod
    def parse(cls, text: str) -> Pointer:
        text = text.removeprefix("#")
        if not text:
            return cls(())
        if not text.startswith("/"):
            raise ValueError(f"a JSON pointer starts with '/': {text!r}")
        return cls(tuple(_unescape(t) for t in text[1:].split("/")))

    def __truediv__(self, token: str | int) -> Pointer:
        if self.opaque:
            return self
        return Pointer((*self.parts, str(token)), self.document)

    def join(self, tokens: Iterable[str | int]) -> Pointer:
        if self.opaque:
            return self
        return Pointer((*self.parts, *(str(t) for t in tokens)), self.document)

    def sealed(self) -> Pointer:
        """This pointer, made opaque: paths below it stay here."""
        return Pointer(self.parts, self.document, opaque=True)

    @property
    def parent(self) -> Pointer:
        return Pointer(self.parts[:-1], self.document)

    def __iter__(self) -> Iterator[str]:
        return iter(self.parts)

    def __len__(self) -> int:
        return len(self.parts)

    def __str__(self) -> str:
        return "".join("/" + _escape(t) for t in self.parts)
