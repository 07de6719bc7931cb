"""A module's ``_private`` names are its own: no lbsim module imports another's. What one
module lends another (the relay's flow rules lent to the toxic relay) is public and listed in
its ``__all__``, so a rename inside a module cannot silently break another."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import lbsim

PACKAGE = Path(lbsim.__file__).parent


def _private_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {alias.name} from {node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lbsim")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]


def test_no_module_imports_another_modules_private_names() -> None:
    found = [line for path in sorted(PACKAGE.rglob("*.py")) for line in _private_imports(path)]
    assert found == []


def test_what_the_relay_lends_the_toxic_relay_is_public() -> None:
    relay = importlib.import_module("lbsim.dataplane.relay")
    lent = {"CLIENT", "STREAM_ERRORS", "Flow", "Way", "close_stream", "copy_stream", "relay_flow"}
    assert lent <= set(relay.__all__)
    assert all(hasattr(relay, name) for name in relay.__all__)
