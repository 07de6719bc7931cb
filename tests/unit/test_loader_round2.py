"""Loading as Azure does, round 2: UTF-16 files, ``deployment()``'s template, parameters and
hash, nullable parameters with allowed values, ``--fill-missing`` for user-defined types, and
messages that name a misspelt parameter or property."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lbsim.api.files import read_json
from lbsim.arm.jsontext import load_json_text
from lbsim.errors import Problem, TemplateInvalid
from lbsim.pointer import Pointer
from tests.unit.templates import parameters_file, template

Json = dict[str, Any]


def only_problem(data: bytes, file: str = "t.json") -> Problem:
    with pytest.raises(TemplateInvalid) as caught:
        load_json_text(data, file)
    (problem,) = caught.value.problems
    assert (problem.code, problem.file) == ("InvalidTemplate", file)
    return problem


# --- 1. UTF-16 files ------------------------------------------------------------------------
UTF16 = [("utf-16-le", b"\xff\xfe"), ("utf-16-be", b"\xfe\xff")]


@pytest.mark.parametrize(("codec", "bom"), UTF16)
def test_utf16_files_with_a_byte_order_mark_load(codec: str, bom: bytes, tmp_path: Path) -> None:
    doc = template(parameters={"name": {"type": "string", "defaultValue": "café ✓"}})
    path = tmp_path / "azuredeploy.json"
    path.write_bytes(bom + json.dumps(doc, indent=2, ensure_ascii=False).encode(codec))
    assert read_json(str(path)) == doc
    params = tmp_path / "azuredeploy.parameters.json"
    params.write_bytes(bom + json.dumps(parameters_file(name="x")).encode(codec))
    assert read_json(str(params)) == parameters_file(name="x")


@pytest.mark.parametrize(("codec", "bom"), UTF16)
def test_json_errors_in_utf16_files_have_the_right_line_and_column(codec: str, bom: bytes) -> None:
    text = '{\n  // é\n  "resources": [\n    {"name": "é" "type": "x"}\n  ]\n}\n'
    problem = only_problem(bom + text.encode(codec))
    assert "line 4, column 18" in problem.message
    assert "expected ',' or '}'" in problem.message
    assert problem.at == Pointer.root().join(["resources", 0, "name"])


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_byte_order_mark_is_named(codec: str) -> None:
    problem = only_problem('{"a": 1}'.encode(codec), "p.json")
    assert "UTF-16 encoded but has no byte-order mark" in problem.message
    assert problem.at == Pointer.root()


@pytest.mark.parametrize(
    ("data", "what"),
    [
        # a lone high surrogate (0xD800) on line 2, column 8
        (b"\xff\xfe" + '{\n "a": "'.encode("utf-16-le") + b"\x00\xd8" + b'"\x00}\x00', "UTF-16 LE"),
        (b"\xfe\xff" + '{\n "a": "'.encode("utf-16-be") + b"\xd8\x00" + b'\x00"\x00}', "UTF-16 BE"),
        # an odd number of bytes: the last one is half a character
        (b"\xff\xfe" + '{\n "a": 1}'.encode("utf-16-le") + b"\x0a", "UTF-16 LE"),
    ],
)
def test_invalid_utf16_bytes_are_named_with_their_place(data: bytes, what: str) -> None:
    problem = only_problem(data, "bad.json")
    assert f"is not valid {what}" in problem.message
    assert "line 2, column" in problem.message
    assert str(problem).startswith("bad.json#: InvalidTemplate: Deployment template parse failed")
