"""Fuzzing the loader and the expression evaluator with mutations of lbsim's own example
templates (arm-examples/): deleted keys, swapped types, huge and deep values, hostile
expressions and broken JSON text. Whatever the input, loading gives a Deployment or an
LbsimError (a clear error with a code), never another exception, within a time bound.

The suite runs a bounded number of examples; ``scripts/fuzz --minutes N`` runs the same
strategies for longer (``LBSIM_FUZZ_EXAMPLES`` sets the count here).
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lbsim.arm.jsontext import load_json_text
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.errors import LbsimError

EXAMPLES = Path(__file__).resolve().parents[2] / "arm-examples"
TEMPLATES = {
    path.parent.name: json.loads(path.read_text())
    for path in sorted(EXAMPLES.glob("*/azuredeploy.json"))
}
TIME_BOUND_S = 15.0  # the loader's own deadline is 10 s
HOSTILE_EXPRESSIONS = [
    "[padLeft('x', 2000000000)]",
    "[map(range(0,10000), lambda('i', range(0,10000)))]",
    "[lambda()]",
    "[createObject('a', lambda('x', 1))]",
    "[add(" + "9" * 5000 + ", 1)]",
    "[" + "concat(" * 300 + "'x'" + ")" * 300 + "]",
    "[json('" + "[" * 300 + "]" * 300 + "')]",
    "[range(0, 2147483647)]",
    "[string(range(0, 10000))]",
    "[parameters('nothere')]",
    "[variables('nothere')]",
    "[copyIndex()]",
    "[reference('x').outputs]",
    "[concat(",
    "[format('{0}{0}{0}{0}{0}{0}{0}{0}', string(range(0, 10000)))]",
    "[replace(string(range(0, 10000)), ',', string(range(0, 1000)))]",
]
HUGE = [2**63, 2**64, -(2**63) - 1, 4294967296, 10**30, 1e308, "x" * 100_000, ""]


def _deep(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _paths(value: Any) -> list[tuple[Any, ...]]:
    """Every path to a node of ``value`` (not the root)."""
    out: list[tuple[Any, ...]] = []
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        pairs = (
            node.items()
            if isinstance(node, dict)
            else enumerate(node)
            if isinstance(node, list)
            else ()
        )
        for key, child in pairs:
            out.append((*path, key))
            stack.append((child, (*path, key)))
    return out


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        document = document[key]
    return document


replacements = st.one_of(
    st.sampled_from(HOSTILE_EXPRESSIONS),
    st.sampled_from(HUGE),
    st.builds(_deep, st.integers(100, 600)),
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=20),
    st.builds(dict),  # each a fresh container: later mutations may change it
    st.builds(list),
    st.builds(lambda: {"copy": {"name": "c", "count": 800}}),
)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    """(kind, input): a mutated template as a value, or as JSON text."""
    name = draw(st.sampled_from(sorted(TEMPLATES)))
    document = copy.deepcopy(TEMPLATES[name])
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(document)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = _parent(document, path)
        if draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(replacements)
    if not draw(st.booleans()):
        return "value", document
    text = json.dumps(document)
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 40)))
    insert = draw(st.sampled_from(["", "//c\n", "/*", ",", "]", "}", '"', "9" * 5000, "[" * 2000]))
    return "text", text[:start] + insert + text[end:]


def outcome(kind: str, given: Any) -> str:
    """Load one input; its outcome ("valid" or the error's code). Any other exception, or a
    load that takes longer than the bound, fails."""
    start = time.monotonic()
    try:
        value = load_json_text(given, "fuzz.json") if kind == "text" else given
        load_template(value, "fuzz.json", LoadOptions(fill_missing=True))
        result = "valid"
    except LbsimError as error:
        result = error.code
    elapsed = time.monotonic() - start
    assert elapsed < TIME_BOUND_S, f"took {elapsed:.1f} s"
    return result


SEEN: Counter[str] = Counter()


@settings(
    max_examples=int(os.environ.get("LBSIM_FUZZ_EXAMPLES", "200")),
    deadline=None,  # each example is bounded by TIME_BOUND_S instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(mutated())
def test_every_mutated_template_loads_or_fails_cleanly(case: tuple[str, Any]) -> None:
    SEEN[outcome(*case)] += 1


def test_the_examples_themselves_load() -> None:
    assert TEMPLATES
    for template in TEMPLATES.values():
        assert outcome("value", template) == "valid"
