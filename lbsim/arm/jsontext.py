"""JSON text as ARM accepts it.

ARM reads templates and parameter files more leniently than strict JSON: a UTF-8 byte-order
mark, UTF-16 text with its byte-order mark (as Windows tools save files), ``//`` line
comments, ``/* */`` block comments and a trailing comma before ``}`` or ``]`` are all fine.
``load_json_text`` accepts the same. Strict files (most of them) are parsed once
by ``json.loads``; otherwise comments and trailing commas are blanked out with spaces, leaving
every line and column where it was, and the text is parsed again, so that an error points at
the right place of the file the user wrote.

A key given twice keeps its last value, as ARM's reader does, except that sibling ``copy``
arrays are joined, so that property loops written side by side (which ARM runs) all survive.
``NaN`` and ``Infinity`` are not JSON values and are refused.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lbsim.arm.limits import MAX_INT_DIGITS, MAX_JSON_DEPTH, deep_value_error, too_deep
from lbsim.errors import Problem, TemplateInvalid
from lbsim.pointer import Pointer

_STRING = r'"(?:[^"\\\n]++|\\.)*+"'
# Possessive, so that a lookahead cannot end a comment early (or late) to find a closer.
_COMMENT = r"//[^\n]*+|/\*(?:[^*]|\*(?!/))*+\*/"
_BEFORE_CLOSER = rf"(?:\s|{_COMMENT})*[}}\]]"
# Runs of text that stay as they are (strings whole, commas not before a closer) are matched
# in one go, so that the replacement function runs only around comments and trailing commas.
_SCAN = re.compile(
    rf'(?P<keep>(?:[^"/,]+|{_STRING}|,(?!{_BEFORE_CLOSER})|/(?![/*])|")++)'
    rf"|(?P<comment>{_COMMENT})|(?P<open>/\*)|(?P<comma>,)",
    re.DOTALL,
)
_NOT_NEWLINE = re.compile(r"[^\n]")
_TOKEN = re.compile(rf"{_STRING}|[{{}}\[\],:]")
_CONSTANT = re.compile(rf"{_STRING}|(?P<constant>-?Infinity|NaN)")

_WHAT = {
    "Expecting property name enclosed in double quotes": "expected a property name in quotes",
    "Expecting ':' delimiter": "expected ':' after the property name",
    "Expecting value": "expected a value",
    "Unterminated string starting at": "unterminated string",
    "Invalid control character": (
        "a string holds a raw control character (line breaks and tabs must be escaped)"
    ),
    "Invalid \\escape": "invalid escape sequence in a string",
    "Invalid \\uXXXX escape": "invalid \\u escape sequence in a string",
    "Extra data": "unexpected text after the end of the JSON document",
}
_SHOWS_FOUND = {"Expecting ',' delimiter", "Expecting property name enclosed in double quotes"}
_SHOWS_FOUND |= {"Expecting ':' delimiter", "Expecting value"}


class _ConstantError(ValueError):
    """A ``NaN`` or ``Infinity`` literal, which JSON does not have."""


def load_json_text(
    text: str | bytes, file: str | None = None, *, document: str = "Deployment template"
) -> Any:
    """Parse ``text`` as ARM would; raise ``TemplateInvalid`` with one ``InvalidTemplate``
    problem (line, column and JSON path in the message, the path also as ``at``) if it is not
    JSON. ``document`` names what is read in messages ("Deployment parameters", ...)."""
    failure = _Failure(document, file)
    source = _decode(text, failure) if isinstance(text, bytes) else text.removeprefix("\ufeff")
    try:
        return _checked(_loads(source), failure)
    except (json.JSONDecodeError, _ConstantError, _NumberError, RecursionError):
        pass
    relaxed = _relax(source, failure)
    if not relaxed.strip():
        raise failure.whole(
            "the file is empty" if not source.strip() else "the file holds only comments"
        )
    try:
        return _checked(_loads(relaxed), failure)
    except json.JSONDecodeError as error:
        raise failure.at(relaxed, error.pos, _describe(error, relaxed)) from None
    except _ConstantError as error:
        raise failure.at(relaxed, _find_constant(relaxed), f"{error} is not a JSON value") from None
    except _NumberError:
        what = f"an integer of more than {MAX_INT_DIGITS:,} digits"
        raise failure.at(relaxed, _find_long_number(relaxed), what) from None
    except RecursionError:
        raise failure.deep(_Depth.path(relaxed)) from None


def _checked(value: Any, failure: _Failure) -> Any:
    """``value``, unless it nests deeper than lbsim follows (schemas, source maps and
    pointers all walk it)."""
    path = too_deep(value)
    if path is not None:
        raise failure.deep(path)
    return value


def _loads(text: str) -> Any:
    return json.loads(
        text, object_pairs_hook=_object, parse_constant=_reject_constant, parse_int=_integer
    )


class _NumberError(ValueError):
    """An integer literal too long for Python to convert (and far beyond any ARM integer)."""


def _integer(digits: str) -> int:
    if len(digits) > MAX_INT_DIGITS:
        raise _NumberError(digits[:20])
    return int(digits)


_LONG_NUMBER = re.compile(rf"{_STRING}|(?P<number>-?[0-9]{{{MAX_INT_DIGITS + 1},}})")


def _find_long_number(text: str) -> int:
    for match in _LONG_NUMBER.finditer(text):
        if match.group("number"):
            return match.start()
    return 0


class _Depth:
    """Where JSON text first nests deeper than lbsim's limit (for text too deep to parse)."""

    @staticmethod
    def path(text: str) -> tuple[str | int, ...]:
        depth = 0
        for match in _TOKEN.finditer(text):
            lexeme = match.group()
            depth += 1 if lexeme in "{[" else -1 if lexeme in "}]" else 0
            if depth > MAX_JSON_DEPTH:
                tokens = [key for _, key in _containers(text, match.start())]
                return tuple(key for key in tokens if key is not None)
        return ()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs) and "copy" in result:
        loops = [value for key, value in pairs if key == "copy"]
        if all(isinstance(loop, list) for loop in loops):
            result["copy"] = [item for loop in loops for item in loop]
    return result


def _reject_constant(name: str) -> Any:
    raise _ConstantError(name)


def _relax(text: str, failure: _Failure) -> str:
    """``text`` with comments and trailing commas replaced by spaces (newlines kept)."""

    def blank(match: re.Match[str]) -> str:
        kind = match.lastgroup
        if kind == "keep":
            return match.group()
        if kind == "open":
            raise failure.at(text, match.start(), "unterminated /* comment")
        return _NOT_NEWLINE.sub(" ", match.group())

    return _SCAN.sub(blank, text)


_BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_NAMES = {"utf-8": "UTF-8", "utf-16-le": "UTF-16 LE", "utf-16-be": "UTF-16 BE"}


def _decode(data: bytes, failure: _Failure) -> str:
    """The text of a file read as the Azure CLI and PowerShell read templates: UTF-8 with or
    without a byte-order mark, or UTF-16 (little or big endian) with one."""
    encoding, body = next(
        ((name, data[len(bom) :]) for bom, name in _BOMS if data.startswith(bom)),
        ("utf-8", data),
    )
    if encoding == "utf-8" and _looks_utf16(body):
        raise failure.whole(
            "the file looks UTF-16 encoded but has no byte-order mark; save it as UTF-8, or as "
            "UTF-16 with a byte-order mark"
        )
    try:
        return body.decode(encoding)
    except UnicodeDecodeError as error:
        text = body[: error.start].decode(encoding, errors="replace")
        line = text.count("\n") + 1
        column = len(text) - (text.rfind("\n") + 1) + 1
        bad = body[error.start : error.end]
        what = ("byte " if len(bad) == 1 else "bytes ") + " ".join(f"0x{b:02X}" for b in bad)
        raise failure.whole(
            f"the file is not valid {_NAMES[encoding]}: {what} at line {line}, column {column}"
        ) from None


def _looks_utf16(data: bytes) -> bool:
    """Whether ``data`` starts as ASCII text in UTF-16 would: a zero byte in its first two.
    A zero byte is never part of JSON text outside a string, so this takes nothing valid."""
    return len(data) >= 2 and (data[0] == 0) != (data[1] == 0)


def _describe(error: json.JSONDecodeError, text: str) -> str:
    kind = error.msg
    if kind == "Expecting ',' delimiter":
        closer = "}" if _innermost(text, error.pos) == "{" else "]"
        what = f"expected ',' or '{closer}'"
    else:
        known = (what for prefix, what in _WHAT.items() if kind.startswith(prefix))
        what = next(known, kind[:1].lower() + kind[1:])
    if kind in _SHOWS_FOUND:
        found = repr(text[error.pos]) if error.pos < len(text) else "the end of the file"
        what = f"{what}, found {found}"
    return what


def _find_constant(text: str) -> int:
    for match in _CONSTANT.finditer(text):
        if match.group("constant"):
            return match.start()
    return 0


def _innermost(text: str, end: int) -> str:
    depth = [token for token, _ in _containers(text, end)]
    return depth[-1] if depth else ""


def _containers(text: str, end: int) -> list[tuple[str, str | int | None]]:
    """The open containers at ``end``: ``{`` with the current key, ``[`` with the index."""
    stack: list[list[Any]] = []  # [opener, key or index, expecting a key]
    for match in _TOKEN.finditer(text, 0, end):
        lexeme = match.group()
        top = stack[-1] if stack else None
        if lexeme in "{[":
            stack.append([lexeme, None if lexeme == "{" else 0, lexeme == "{"])
        elif lexeme in "}]":
            if stack:
                stack.pop()
        elif top is None:
            continue
        elif lexeme == ",":
            top[1:] = [top[1] + 1, False] if top[0] == "[" else [None, True]
        elif lexeme == ":":
            top[2] = False
        elif top[0] == "{" and top[2]:
            top[1] = _key(lexeme)
    return [(opener, key) for opener, key, _ in stack]


def _key(token: str) -> str:
    try:
        return str(json.loads(token))
    except json.JSONDecodeError:
        return token[1:-1]


class _Failure:
    """Builds the ``TemplateInvalid`` error for one document."""

    def __init__(self, document: str, file: str | None) -> None:
        self.document = document
        self.file = file

    def whole(self, what: str) -> TemplateInvalid:
        message = f"{self.document} parse failed: {what}."
        return TemplateInvalid([Problem("InvalidTemplate", message, Pointer.root(), self.file)])

    def deep(self, path: tuple[str | int, ...]) -> TemplateInvalid:
        error = deep_value_error(path, Pointer.root())
        return TemplateInvalid([Problem(error.code, error.message, error.at, self.file)])

    def at(self, text: str, pos: int, what: str) -> TemplateInvalid:
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        tokens = [key for _, key in _containers(text, pos) if key is not None]
        path = _dotted(tokens)
        where = f". Path '{path}', line" if path else ", at line"
        message = f"{self.document} parse failed: {what}{where} {line}, column {column}."
        at = Pointer.root().join(tokens)
        return TemplateInvalid([Problem("InvalidTemplate", message, at, self.file)])


def _dotted(tokens: list[str | int]) -> str:
    """A JSON path in the style of ARM's messages: ``resources[3].properties``."""
    path = ""
    for token in tokens:
        if isinstance(token, int):
            path += f"[{token}]"
        elif re.fullmatch(r"[A-Za-z_$][\w$]*", token):
            path += f".{token}" if path else token
        else:
            path += "['" + token.replace("'", "\\'") + "']"
    return path
