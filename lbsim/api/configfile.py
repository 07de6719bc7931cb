"""Reading ``lbsim up``'s TOML settings file so that no file can hang, exhaust or crash lbsim:
only a regular file is read, up to a size cap; a dotted key of thousands of parts (which costs
tomllib memory by the square of its length) is refused before parsing; and any failure of
the parser, deep nesting's RecursionError included, is a clear ``InvalidConfigFile``."""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Collection, Mapping
from typing import Any

from lbsim.errors import ConfigError

CONFIG_FILE_LIMIT = 1024 * 1024  # bytes: a settings file is a few lines
KEY_PARTS_LIMIT = 16  # parts of one dotted key: lbsim's deepest is backends.NAME.instances.ID


def read_toml(path: str) -> dict[str, Any]:
    """The settings file at ``path``, parsed, or a ``ConfigError`` that names it."""
    text = _read_text(path)
    _check_key_lengths(path, text)
    return _parse(path, text)


def _read_text(path: str) -> str:
    """A regular file's text, at most CONFIG_FILE_LIMIT bytes. /dev/zero would be read for
    ever and a FIFO would block the open: the file is opened without blocking and checked
    to be a regular file before a byte is read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as error:
        raise ConfigError("ConfigFileNotFound", f"cannot read {path}: {error.strerror}") from None
    except ValueError:  # a NUL in the name
        raise ConfigError("ConfigFileNotFound", f"cannot read {path!r}: not a file name") from None
    with os.fdopen(descriptor, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ConfigError("InvalidConfigFile", f"{path}: --config names a regular file.")
        data = file.read(CONFIG_FILE_LIMIT + 1)
    if len(data) > CONFIG_FILE_LIMIT:
        raise ConfigError(
            "InvalidConfigFile",
            f"{path}: over {CONFIG_FILE_LIMIT} bytes, the most lbsim reads.",
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError("InvalidConfigFile", f"{path}: not UTF-8: {error.reason}") from None


def _parse(path: str, text: str) -> dict[str, Any]:
    """tomllib recurses once a nesting level of arrays and inline tables: a file nested
    100,000 deep is RecursionError. Any error of the parser is the file's, so clear."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError("InvalidConfigFile", f"{path}: {error}") from None
    except RecursionError:
        raise ConfigError("InvalidConfigFile", f"{path}: nested too deeply.") from None
    except Exception as error:
        raise ConfigError(
            "InvalidConfigFile", f"{path}: cannot be parsed ({type(error).__name__})."
        ) from None


def _check_key_lengths(path: str, text: str) -> None:
    """Refuse a key of over KEY_PARTS_LIMIT dotted parts. A key is on one line (a table
    header, the left of ``=``, or a key inside an inline table), so each line is scanned once
    for the dots of its keys, outside strings and comments."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.count(".") > KEY_PARTS_LIMIT and _longest_key(line) > KEY_PARTS_LIMIT:
            raise ConfigError(
                "InvalidConfigFile",
                f"{path}: line {number}: a key of over {KEY_PARTS_LIMIT} dotted parts.",
            )


def _longest_key(line: str) -> int:
    """The most parts of a key on ``line``. A key starts at the line's start, after ``{``,
    and after ``,`` inside an inline table; it ends at ``=`` (or ``]`` of a header). A
    string in a key is one part; strings of values, and comments, are skipped."""
    longest, parts, in_key, depth, i = 0, 1, True, [], 0
    while i < len(line):
        char = line[i]
        if char in "\"'":
            i = _string_end(line, i)
            continue
        if char == "#":
            break
        if char in "{[":
            depth.append(char)
        elif char in "}]" and depth:
            depth.pop()
        if char == "." and in_key:
            parts += 1
            longest = max(longest, parts)
        elif char == "=":
            in_key = False
        elif char == "{" or (char == "," and depth and depth[-1] == "{"):
            in_key, parts = True, 1
        i += 1
    return longest


def _string_end(line: str, start: int) -> int:
    """Where the string that opens at ``start`` ends (past its quote), or the line's end
    (a multi-line string goes on; its other lines hold no key of more parts than a value)."""
    quote = line[start]
    i = start + 1
    while i < len(line):
        if line[i] == "\\" and quote == '"':
            i += 2
            continue
        if line[i] == quote:
            return i + 1
        i += 1
    return len(line)


def check_values(
    data: Mapping[str, Any], path: str, settings: Collection[str], maps: Collection[str]
) -> None:
    """Every setting is one value and every map entry a string (a backend: its table of
    ``pattern`` and ``instances``), and none holds a NUL. A table where a value belongs would
    be turned into text and misread; a NUL would reach a file name or an address and fail
    there, far from the key that set it: both are refused here, by name."""
    for key, value in data.items():
        if key in settings:
            _scalar(path, key, value)
        elif key in maps and isinstance(value, dict):
            for name, entry in value.items():
                if key != "backends":
                    _scalar(path, f"{key}.{name}", entry)
                elif isinstance(entry, dict):  # its shape is for the backends' reader
                    _backend_values(path, f"{key}.{name}", entry)


def _backend_values(path: str, where: str, entry: dict[str, Any]) -> None:
    for part, inner in entry.items():
        if part == "instances" and isinstance(inner, dict):
            for instance, address in inner.items():
                _scalar(path, f"{where}.instances.{instance}", address)
        elif part != "instances":
            _scalar(path, f"{where}.{part}", inner)


def _scalar(path: str, key: str, value: Any) -> None:
    if isinstance(value, dict | list):
        kind = "table" if isinstance(value, dict) else "array"
        raise ConfigError("InvalidSetting", f"{path}: config key {key} is one value, not a {kind}.")
    if "\0" in key or "\0" in str(value):
        raise ConfigError("InvalidSetting", f"{path}: config key {key} holds a NUL character.")
