"""The hashes behind ``uniqueString()`` and ``guid()``, bit for bit as ARM computes them.

Both join their arguments with ``-`` and hash the UTF-8 bytes:

- ``uniqueString``: a 64-bit hash built from the first two 32-bit lanes of MurmurHash3
  x86_128 (seed 0, 8-byte blocks), written as 13 base32 characters (``a-z2-7``), most
  significant bits first.
- ``guid``: an RFC 4122 version 5 (SHA-1) UUID in ARM's fixed namespace.
"""

from __future__ import annotations

import base64
import functools
import uuid

_MASK32 = 0xFFFFFFFF
_C1 = 0x239B961B
_C2 = 0xAB0E9789
_NAMESPACE = uuid.UUID("11fb06fb-712d-4ddd-98c7-e71bbd588830")
MAX_INPUT_CHARS = 131072


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _MASK32


def _fmix(x: int) -> int:
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & _MASK32
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & _MASK32
    return x ^ (x >> 16)


def _mix_k1(k1: int) -> int:
    return (_rotl((k1 * _C1) & _MASK32, 15) * _C2) & _MASK32


def _mix_k2(k2: int) -> int:
    return (_rotl((k2 * _C2) & _MASK32, 17) * _C1) & _MASK32


def murmur_hash64(data: bytes) -> int:
    """ARM's 64-bit hash of ``data`` (seed 0) as an unsigned integer."""
    h1 = h2 = 0
    blocks = len(data) // 8
    for i in range(0, blocks * 8, 8):
        h1 ^= _mix_k1(int.from_bytes(data[i : i + 4], "little"))
        h1 = (_rotl(h1, 19) + h2) & _MASK32
        h1 = (h1 * 5 + 0x561CCD1B) & _MASK32
        h2 ^= _mix_k2(int.from_bytes(data[i + 4 : i + 8], "little"))
        h2 = (_rotl(h2, 13) + h1) & _MASK32
        h2 = (h2 * 5 + 0x0BCAA747) & _MASK32
    tail = data[blocks * 8 :]
    if tail:
        h1 ^= _mix_k1(int.from_bytes(tail[:4], "little"))
    if len(tail) > 4:
        h2 ^= _mix_k2(int.from_bytes(tail[4:], "little"))
    h1 ^= len(data) & _MASK32
    h2 ^= len(data) & _MASK32
    h1 = (h1 + h2) & _MASK32
    h2 = (h2 + h1) & _MASK32
    h1, h2 = _fmix(h1), _fmix(h2)
    h1 = (h1 + h2) & _MASK32
    h2 = (h2 + h1) & _MASK32
    return (h2 << 32) | h1


def _joined(args: tuple[str, ...]) -> str:
    if not args:
        raise ValueError("at least one argument is required")
    joined = "-".join(args)
    if len(joined) > MAX_INPUT_CHARS:
        raise ValueError(f"the joined arguments exceed {MAX_INPUT_CHARS} characters")
    return joined


@functools.lru_cache(maxsize=4096)
def unique_string(*args: str) -> str:
    """``uniqueString(args...)``: 13 characters from ``a-z2-7``."""
    digest = murmur_hash64(_joined(args).encode("utf-8")).to_bytes(8, "big")
    return base64.b32encode(digest).decode("ascii").rstrip("=").lower()


@functools.lru_cache(maxsize=4096)
def arm_guid(*args: str) -> str:
    """``guid(args...)``: a lower-case hyphenated version 5 UUID."""
    return str(uuid.uuid5(_NAMESPACE, _joined(args)))
