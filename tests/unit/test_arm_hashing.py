"""uniqueString() and guid(): published vectors and the laws of their output."""

from __future__ import annotations

import base64
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lbsim.arm.hashing import MAX_INPUT_CHARS, arm_guid, murmur_hash64, unique_string

ZERO_SUB = "/subscriptions/00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("test",), "rbgf3xv4ufgzg"),
        (("test", "value"), "bhxq2thzm5dym"),
        ((ZERO_SUB, "resource-id"), "cwvxuqg24sifi"),
        (("hello", "world"), "a7wkljktk6wne"),
        (("fu",), "6rkxbspxjmsho"),
        (("fubar",), "cj2xpqsiwjfne"),
        (("fu", "bar"), "q5wxoscxs5j6k"),
        (("",), "aaaaaaaaaaaaa"),
        (("a",), "eveiun73364hy"),
        ((f"{ZERO_SUB}/resourceGroups/rg1",), "sodyxlxvzmr7k"),
    ],
)
def test_unique_string_reproduces_published_vectors(args: tuple[str, ...], expected: str) -> None:
    assert unique_string(*args) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("test", "value"), "95b33d6a-06a0-5961-9b94-a0f6c648352b"),
        (("a",), "3703365d-5a9f-59b4-bca7-b9681389e4c1"),
        ((f"{ZERO_SUB}/resourceGroups/rg1",), "16951156-8975-5630-937d-2d6f923ea54f"),
        (("",), "e655a85f-3ab2-5e4a-9666-569aa72a5a10"),
    ],
)
def test_guid_reproduces_vectors(args: tuple[str, ...], expected: str) -> None:
    assert arm_guid(*args) == expected


def test_murmur_hash_of_hello_world_is_the_published_number() -> None:
    assert murmur_hash64(b"hello-world") == 571013382255652050
    assert murmur_hash64(b"") == 0


def test_guid_depends_on_argument_order() -> None:
    assert arm_guid("hello", "world") != arm_guid("world", "hello")


def test_case_is_kept() -> None:
    lower = unique_string(f"{ZERO_SUB}/resourcegroups/rg1")
    assert lower != unique_string(f"{ZERO_SUB}/resourceGroups/rg1")


def test_no_arguments_and_oversized_input_are_rejected() -> None:
    with pytest.raises(ValueError, match="at least one"):
        unique_string()
    with pytest.raises(ValueError, match="131072"):
        arm_guid("x" * (MAX_INPUT_CHARS + 1))


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_unique_string_alphabet_and_length(args: list[str]) -> None:
    value = unique_string(*args)
    assert re.fullmatch(r"[a-z2-7]{13}", value)
    assert value[-1] in "acegikmoqsuwy246"  # the 13th character carries 4 bits and a zero


@given(st.lists(st.text(), min_size=1, max_size=4))
def test_arguments_are_joined_with_a_hyphen(args: list[str]) -> None:
    assert unique_string(*args) == unique_string("-".join(args))
    assert arm_guid(*args) == arm_guid("-".join(args))


@given(st.binary(max_size=64))
def test_base32_of_the_big_endian_hash_is_the_same_string(data: bytes) -> None:
    text = data.decode("latin-1")
    digest = murmur_hash64(text.encode("utf-8")).to_bytes(8, "big")
    assert base64.b32encode(digest).decode().rstrip("=").lower() == unique_string(text)


@given(st.lists(st.text(), min_size=1, max_size=3))
def test_guid_is_a_version_5_uuid(args: list[str]) -> None:
    value = arm_guid(*args)
    parsed = uuid.UUID(value)
    assert str(parsed) == value
    assert parsed.version == 5
    assert value[19] in "89ab"
