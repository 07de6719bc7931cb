"""Fuzzing what lbsim reads: the loader and the expression evaluator with mutations of lbsim's
own example templates (arm-examples/): deleted keys, swapped types, huge, deep and wide
values, hostile expressions and broken JSON text; the settings file ``lbsim up`` reads
(fuzz_config.py); and linked templates behind hostile ``templateLink`` values (fuzz_links.py).
Whatever the input, reading it gives a result or a clear error with a code, never another
exception, within a time bound and a memory bound (tracemalloc's peak) for each input.

The suite runs a bounded number of examples; ``scripts/fuzz --minutes N`` runs the same
strategies for longer (``LBSIM_FUZZ_EXAMPLES`` sets the count here).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fuzz_config import config_texts, read_config
from fuzz_links import linking_templates, load_linking, make_tree
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
MEMORY_BOUND = 64 * 1024 * 1024  # bytes allocated at the peak of one input (tracemalloc)
WIDE = 20_000  # small arrays side by side in a wide value (memory once grew with width x depth)
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


def _wide(width: int, depth: int) -> Any:
    """``width`` empty arrays in one array, nested ``depth`` deep."""
    value: Any = [[] for _ in range(width)]
    for _ in range(depth):
        value = [value]
    return value


MAX_WALK = 300  # steps of one walk into a document (deeper than any limit of lbsim)


def _node(draw: st.DrawFn, document: Any) -> tuple[Any, Any] | None:
    """(parent, key) of a node of ``document`` (not the root), found by a random walk from
    the root: a list of every path would cost width x depth once a wide value is in."""
    parent, key, node = None, None, document
    for _ in range(MAX_WALK):
        keys = list(node) if isinstance(node, dict) else range(len(node))
        if not keys or (parent is not None and draw(st.integers(0, 3)) == 0):
            break
        parent, key = node, keys[draw(st.integers(0, len(keys) - 1))]
        node = parent[key]
        if not isinstance(node, dict | list):
            break
    return None if parent is None else (parent, key)


replacements = st.one_of(
    st.sampled_from(HOSTILE_EXPRESSIONS),
    st.sampled_from(HUGE),
    st.builds(_deep, st.integers(100, 600)),
    st.builds(_wide, st.integers(1, WIDE), st.integers(1, 140)),
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
        found = _node(draw, document)
        if found is None:
            break
        parent, key = found
        if draw(st.booleans()):
            del parent[key]
        else:
            parent[key] = draw(replacements)
    if not draw(st.booleans()):
        return "value", document
    text = json.dumps(document)
    start = draw(st.integers(0, len(text)))
    end = draw(st.integers(start, min(len(text), start + 40)))
    insert = draw(st.sampled_from(["", "//c\n", "/*", ",", "]", "}", '"', "9" * 5000, "[" * 2000]))
    return "text", text[:start] + insert + text[end:]


@contextlib.contextmanager
def bounded() -> Iterator[None]:
    """The code inside must end within TIME_BOUND_S and allocate at most MEMORY_BOUND at its
    peak (tracemalloc's count: Python's own allocations, which are what a hostile input
    multiplies)."""
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    start = time.monotonic()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not tracing:
            tracemalloc.stop()
    elapsed = time.monotonic() - start
    assert elapsed < TIME_BOUND_S, f"took {elapsed:.1f} s"
    assert peak < MEMORY_BOUND, f"allocated {peak:,} bytes at its peak"


def outcome(kind: str, given: Any) -> str:
    """Load one input; its outcome ("valid" or the error's code). Any other exception, or a
    load past the time or memory bound, fails."""
    with bounded():
        try:
            value = load_json_text(given, "fuzz.json") if kind == "text" else given
            load_template(value, "fuzz.json", LoadOptions(fill_missing=True))
            result = "valid"
        except LbsimError as error:
            result = error.code
    return result


def config_outcome(folder: Path, data: bytes) -> str:
    """Read one settings file as ``lbsim up --config`` does: "valid" or a ConfigError's code."""
    with bounded():
        return read_config(folder / "lbsim.toml", data)


def link_outcome(root: Path, template: dict[str, Any]) -> str:
    """Load one template of hostile links in the tree of fuzz_links.py rooted at ``root``."""
    with bounded():
        return load_linking(root, template)


@contextlib.contextmanager
def fuzz_folder() -> Iterator[Path]:
    """A fresh folder holding the link tree (``links/root``) and room for settings files."""
    with tempfile.TemporaryDirectory(prefix="lbsim-fuzz-") as folder:
        make_tree(Path(folder) / "links")
        yield Path(folder)


def strategies(folder: Path) -> dict[str, tuple[st.SearchStrategy[Any], Callable[[Any], str]]]:
    """Each kind of input fuzzed: its strategy and how one input is read (scripts/fuzz runs
    them all)."""
    root = folder / "links" / "root"
    return {
        "template": (mutated(), lambda case: outcome(*case)),
        "config": (config_texts(), lambda data: config_outcome(folder, data)),
        "links": (linking_templates(), lambda template: link_outcome(root, template)),
    }


SEEN: Counter[str] = Counter()
EXAMPLES_RUN = int(os.environ.get("LBSIM_FUZZ_EXAMPLES", "200"))
fuzzing = settings(
    max_examples=EXAMPLES_RUN,
    deadline=None,  # each example is bounded by TIME_BOUND_S instead
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@fuzzing
@given(mutated())
def test_every_mutated_template_loads_or_fails_cleanly(case: tuple[str, Any]) -> None:
    SEEN[outcome(*case)] += 1


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with fuzz_folder() as made:
        yield made


@fuzzing
@given(data=config_texts())
def test_every_settings_file_is_read_or_refused_cleanly(folder: Path, data: bytes) -> None:
    SEEN["config " + config_outcome(folder, data)] += 1


@settings(fuzzing, max_examples=max(1, EXAMPLES_RUN // 2))  # each loads up to 4 files
@given(template=linking_templates())
def test_every_hostile_link_is_followed_or_refused_cleanly(
    folder: Path, template: dict[str, Any]
) -> None:
    SEEN["links " + link_outcome(folder / "links" / "root", template)] += 1


def test_the_examples_themselves_load() -> None:
    assert TEMPLATES
    for template in TEMPLATES.values():
        assert outcome("value", template) == "valid"
