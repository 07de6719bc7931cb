"""The ARM template expression language: syntax tree, parser and printer.

A JSON string that starts with ``[`` and ends with ``]`` is an expression, unless it starts
with ``[[`` (an escaped literal bracket). Inside the brackets the grammar is small::

    expression := primary ( '.' ['?'] name | '[' expression ']' )*
    primary    := string | integer | call
    call       := identifier ['.' identifier] '(' [expression (',' expression)*] ')'
    string     := "'" ( any character, with '' for a quote )* "'"
    integer    := ['-'] digit+

Function names are case-insensitive; ``namespace.name(...)`` calls a user-defined function.
Every node keeps its character offset in the text that was parsed, so errors can say where.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterator

import attrs

from lbsim.arm.limits import MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_LENGTH
from lbsim.errors import ExpressionError

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_IDENT_START = frozenset(string.ascii_letters + "_")
_IDENT = _IDENT_START | frozenset(string.digits)
_PROPERTY = _IDENT | frozenset("$")
_DIGITS = frozenset(string.digits)
_SPACE = frozenset(" \t\r\n")


@attrs.frozen
class StringLiteral:
    value: str
    pos: int = attrs.field(default=0, eq=False)


@attrs.frozen
class IntLiteral:
    value: int
    pos: int = attrs.field(default=0, eq=False)


@attrs.frozen
class FunctionCall:
    """``name(args...)``; ``key`` is the lower-case name used for lookup."""

    name: str
    args: tuple[Node, ...] = ()
    pos: int = attrs.field(default=0, eq=False)
    key: str = attrs.field(init=False, eq=False)

    @key.default
    def _key(self) -> str:
        return self.name.lower()


@attrs.frozen
class PropertyAccess:
    """``target.name``, or ``target.?name`` (``safe``: a missing property gives null)."""

    target: Node
    name: str
    safe: bool = False
    pos: int = attrs.field(default=0, eq=False)


@attrs.frozen
class IndexAccess:
    """``target[index]``."""

    target: Node
    index: Node
    pos: int = attrs.field(default=0, eq=False)


Node = StringLiteral | IntLiteral | FunctionCall | PropertyAccess | IndexAccess


def is_expression(value: str) -> bool:
    """True if the JSON string ``value`` is an expression (``[...]`` but not ``[[...``)."""
    return len(value) >= 2 and value[0] == "[" and value[-1] == "]" and value[1] != "["


@functools.lru_cache(maxsize=16384)
def parse_expression(text: str) -> Node:
    """Parse ``[expr]`` (a whole JSON string value) or a bare ``expr``.

    Offsets in the result count from the start of ``text``. Raises ExpressionError
    (code ``InvalidTemplate``) on a syntax error.
    """
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(
            "InvalidTemplate",
            f"The template language expression '{text[:40]}...' is {len(text):,} characters "
            f"long, over the limit of {MAX_EXPRESSION_LENGTH:,} characters.",
        )
    if text.startswith("["):
        if not text.endswith("]") or len(text) < 2:
            raise _syntax_error(text, len(text), len(text), "a closing ']'")
        parser = _Parser(text, 1, len(text) - 1)
    else:
        parser = _Parser(text, 0, len(text))
    try:
        return parser.parse()
    except RecursionError:
        raise ExpressionError(
            "InvalidTemplate", f"Unable to parse language expression '{text}': nested too deeply."
        ) from None


def to_text(node: Node) -> str:
    """The canonical source text of ``node`` (without the surrounding brackets)."""
    match node:
        case StringLiteral(value=value):
            return "'" + value.replace("'", "''") + "'"
        case IntLiteral(value=value):
            return str(value)
        case FunctionCall(name=name, args=args):
            return f"{name}({', '.join(to_text(a) for a in args)})"
        case PropertyAccess(target=target, name=name, safe=safe):
            return f"{to_text(target)}{'.?' if safe else '.'}{name}"
        case IndexAccess(target=target, index=index):
            return f"{to_text(target)}[{to_text(index)}]"
    raise TypeError(f"not an expression node: {node!r}")


def format_expression(node: Node) -> str:
    """``node`` as a JSON string value: ``[`` + canonical text + ``]``."""
    return f"[{to_text(node)}]"


def walk(node: Node) -> Iterator[Node]:
    """``node`` and all nodes below it, parents first."""
    yield node
    match node:
        case FunctionCall(args=args):
            for arg in args:
                yield from walk(arg)
        case PropertyAccess(target=target):
            yield from walk(target)
        case IndexAccess(target=target, index=index):
            yield from walk(target)
            yield from walk(index)
        case _:
            pass


def function_names(node: Node) -> frozenset[str]:
    """The lower-case names of every function that ``node`` calls."""
    return frozenset(n.key for n in walk(node) if isinstance(n, FunctionCall))


def _syntax_error(text: str, pos: int, end: int, expected: str) -> ExpressionError:
    found = repr(text[pos]) if pos < end else "the end of the expression"
    return ExpressionError(
        "InvalidTemplate",
        f"Unable to parse language expression '{text}': expected {expected} "
        f"at position {pos} but found {found}.",
    )


class _Parser:
    """Recursive descent over ``text[start:end]``; no separate token list."""

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text = text
        self.pos = start
        self.end = end
        self.depth = 0

    def parse(self) -> Node:
        node = self._expression()
        self._skip_space()
        if self.pos != self.end:
            raise self._error("the end of the expression")
        return node

    def _error(self, expected: str) -> ExpressionError:
        return _syntax_error(self.text, self.pos, self.end, expected)

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < self.end else ""

    def _skip_space(self) -> None:
        while self.pos < self.end and self.text[self.pos] in _SPACE:
            self.pos += 1

    def _expect(self, char: str) -> None:
        self._skip_space()
        if self._peek() != char:
            raise self._error(f"'{char}'")
        self.pos += 1

    def _expression(self) -> Node:
        self.depth += 1
        try:
            return self._nested_expression()
        finally:
            self.depth -= 1

    def _nested_expression(self) -> Node:
        if self.depth > MAX_EXPRESSION_DEPTH:
            raise ExpressionError(
                "ExpressionNestedTooDeep",
                f"The template language expression nests calls and indexes more than "
                f"{MAX_EXPRESSION_DEPTH} levels deep at position {self.pos} (lbsim's limit).",
            )
        self._skip_space()
        node = self._primary()
        while True:
            self._skip_space()
            char, at = self._peek(), self.pos
            if char == ".":
                node = self._property(node, at)
            elif char == "[":
                self.pos += 1
                index = self._expression()
                self._expect("]")
                node = IndexAccess(node, index, at)
            else:
                return node

    def _property(self, target: Node, at: int) -> PropertyAccess:
        self.pos += 1
        safe = self._peek() == "?"
        if safe:
            self.pos += 1
        start = self.pos
        while self.pos < self.end and self.text[self.pos] in _PROPERTY:
            self.pos += 1
        if self.pos == start:
            raise self._error("a property name")
        return PropertyAccess(target, self.text[start : self.pos], safe, at)

    def _primary(self) -> Node:
        char = self._peek()
        if char == "'":
            return self._string()
        if char in _DIGITS or char == "-":
            return self._integer()
        if char in _IDENT_START:
            return self._call()
        raise self._error("a function call, a string or an integer")

    def _string(self) -> StringLiteral:
        start = self.pos
        self.pos += 1
        parts: list[str] = []
        while True:
            close = self.text.find("'", self.pos, self.end)
            if close < 0:
                self.pos = self.end
                raise self._error(f"a closing quote for the string at position {start}")
            parts.append(self.text[self.pos : close])
            self.pos = close + 1
            if self._peek() != "'":
                return StringLiteral("'".join(parts), start)
            self.pos += 1

    def _integer(self) -> IntLiteral:
        start = self.pos
        if self._peek() == "-":
            self.pos += 1
        digits = self.pos
        while self.pos < self.end and self.text[self.pos] in _DIGITS:
            self.pos += 1
        if self.pos == digits:
            raise self._error("a digit")
        if self._peek() == "." or self._peek() in _IDENT_START:
            raise self._error("an integer (floating point numbers are not supported)")
        if self.pos - digits > len(str(_INT64_MAX)):  # int() would be slow, or refuse
            self.pos = start
            raise self._error("a 64-bit integer")
        value = int(self.text[start : self.pos])
        if not _INT64_MIN <= value <= _INT64_MAX:
            self.pos = start
            raise self._error("a 64-bit integer")
        return IntLiteral(value, start)

    def _identifier(self) -> str:
        start = self.pos
        while self.pos < self.end and self.text[self.pos] in _IDENT:
            self.pos += 1
        return self.text[start : self.pos]

    def _call(self) -> FunctionCall:
        start = self.pos
        name = self._identifier()
        while self._peek() == "." and self.pos + 1 < self.end:
            if self.text[self.pos + 1] not in _IDENT_START:
                break
            self.pos += 1
            name += "." + self._identifier()
        self._skip_space()
        if self._peek() != "(":
            raise self._error(f"'(' after the function name '{name}'")
        self.pos += 1
        return FunctionCall(name, self._arguments(), start)

    def _arguments(self) -> tuple[Node, ...]:
        self._skip_space()
        if self._peek() == ")":
            self.pos += 1
            return ()
        args = [self._expression()]
        while True:
            self._skip_space()
            char = self._peek()
            if char == ")":
                self.pos += 1
                return tuple(args)
            if char != ",":
                raise self._error("',' or ')'")
            self.pos += 1
            args.append(self._expression())
