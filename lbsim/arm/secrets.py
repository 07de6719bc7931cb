"""Secure parameters and outputs stay secret.

Azure never shows the value of a ``securestring`` or ``secureObject`` parameter, and returns
no value for a secure output
(https://learn.microsoft.com/en-us/azure/azure-resource-manager/templates/data-types#secure-strings-and-objects).
lbsim gives a secure output the value ``SECURE`` (printed as a notice, never the value), and
takes every string of a secure parameter's value out of each problem's message before it is
shown, whatever path the value took to get there (an allowedValues mismatch, a type error, a
schema error, an expression that failed on it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Final

import attrs

from lbsim.errors import Problem

SECURE_TYPES = frozenset({"securestring", "secureobject"})
MIN_LENGTH = 4  # shorter strings would blank out ordinary words of the messages
MASK = "***"


@attrs.frozen
class SecureValue:
    """What lbsim keeps of a secure output: its type, never its value."""

    type: str

    def __str__(self) -> str:
        return f"({self.type}: no value shown)"


SECURE: Final = SecureValue("secure")


def is_secure(declared_type: Any) -> bool:
    return isinstance(declared_type, str) and declared_type.lower() in SECURE_TYPES


def collect(value: Any, into: set[str]) -> None:
    """Every string in ``value`` long enough to hide, as written and as JSON writes it."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str) and len(node) >= MIN_LENGTH:
            into.add(node)
            into.add(json.dumps(node, ensure_ascii=False)[1:-1])
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


def redact(problems: Iterable[Problem], secrets: set[str]) -> list[Problem]:
    """``problems`` with every secret in their messages replaced by ``***``."""
    ordered = sorted(secrets, key=len, reverse=True)
    return [_redacted(p, ordered) for p in problems]


def _redacted(problem: Problem, secrets: list[str]) -> Problem:
    message = problem.message
    for secret in secrets:
        if secret in message:
            message = message.replace(secret, MASK)
    return problem if message == problem.message else attrs.evolve(problem, message=message)
