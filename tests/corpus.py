"""The real-world ARM corpus: where it is, and what a test that needs it does when it is absent.

The corpus is a folder of real templates, one sub-folder each, kept outside the project:
``LBSIM_ARM_CORPUS`` names it, and CI provides it. A clone has none, so its own tests must
still pass there: a test that needs the corpus carries the ``corpus`` marker
(``pytest -m "not corpus"`` leaves it out) and calls ``require_corpus()`` first, which skips
the test with the reason when the corpus is absent. Under CI (``CI`` set) an absent corpus
fails instead, so a CI run never passes green without having run these tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[1]
# The CI checkout keeps the corpus at this place beside the project.
DEFAULT_CORPUS = PROJECT.parent / "shared" / "corpus" / "arm"
CORPUS = Path(os.environ.get("LBSIM_ARM_CORPUS") or DEFAULT_CORPUS)


def in_ci() -> bool:
    """CI services set CI=true; an empty, "0" or "false" value means a developer's shell."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def corpus_present() -> bool:
    return CORPUS.is_dir() and any(CORPUS.glob("*/*.json"))


def require_corpus() -> Path:
    """The corpus folder; without it, skip the calling test (or fail it under CI)."""
    if corpus_present():
        return CORPUS
    if in_ci():
        pytest.fail(f"the real-world ARM corpus is missing at {CORPUS} (and CI is set)")
    pytest.skip(f"the real-world ARM corpus is not at {CORPUS}; set LBSIM_ARM_CORPUS to its path")


def cases(items: Sequence[Any]) -> list[Any]:
    """Parameters for a test that runs once per corpus item.

    Without the corpus there are no items: one placeholder case stands in, so the test still
    runs once, calls ``require_corpus()`` and is skipped (or failed under CI) with the reason,
    instead of pytest's anonymous "empty parameter set".
    """
    if items:
        return list(items)
    return [pytest.param("", id="no-corpus")]
