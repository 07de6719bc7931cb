"""Encodings: base64, data URIs, URIs and JSON text."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any
from urllib.parse import quote, unquote, unquote_to_bytes, urljoin, urlsplit

from lbsim.arm.functions.base import ArgumentError, Registry, expect_str

register = Registry()

_DATA_URI_PREFIX = "data:text/plain;charset=utf8;base64,"


def _decode_base64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ArgumentError(f"the value '{text}' is not valid base64.") from None


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ArgumentError("the decoded bytes are not valid UTF-8 text.") from None


def parse_json_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise ArgumentError(f"the value is not valid JSON: {error}.") from None


@register("base64")
def _base64(value: Any) -> str:
    return base64.b64encode(expect_str(value, 1).encode("utf-8")).decode("ascii")


@register("base64ToString")
def _base64_to_string(value: Any) -> str:
    return _utf8(_decode_base64(expect_str(value, 1)))


@register("base64ToJson")
def _base64_to_json(value: Any) -> Any:
    return parse_json_text(_utf8(_decode_base64(expect_str(value, 1))))


@register("json")
def _json(value: Any) -> Any:
    return parse_json_text(expect_str(value, 1))


@register("dataUri")
def _data_uri(value: Any) -> str:
    return _DATA_URI_PREFIX + _base64(value)


@register("dataUriToString")
def _data_uri_to_string(value: Any) -> str:
    text = expect_str(value, 1)
    header, comma, data = text.partition(",")
    if not header.lower().startswith("data:") or not comma:
        raise ArgumentError(f"the value '{text}' is not a data URI.")
    if header.lower().endswith(";base64"):
        return _utf8(_decode_base64(data))
    return _utf8(unquote_to_bytes(data))


@register("uri")
def _uri(base: Any, relative: Any) -> str:
    """RFC 3986 resolution of ``relative`` against the absolute URI ``base``."""
    base_text, relative_text = expect_str(base, 1), expect_str(relative, 2)
    parts = urlsplit(base_text)
    if not parts.scheme or not (parts.netloc or parts.scheme == "file"):
        raise ArgumentError(f"the base URI '{base_text}' is not an absolute URI.")
    return urljoin(base_text, relative_text)


@register("uriComponent")
def _uri_component(value: Any) -> str:
    return quote(expect_str(value, 1), safe="")


@register("uriComponentToString")
def _uri_component_to_string(value: Any) -> str:
    return unquote(expect_str(value, 1), errors="strict")


FUNCTIONS = register.table
