"""lbsim.arm.jsontext: JSON as ARM reads it (BOM, comments, trailing commas) and its errors."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from corpus import require_corpus
from hypothesis import given
from hypothesis import strategies as st

from lbsim.arm.jsontext import load_json_text
from lbsim.errors import Problem, TemplateInvalid
from lbsim.pointer import Pointer


def corpus_files() -> list[Path]:
    return sorted(require_corpus().rglob("*.json"))


def failure(text: str | bytes, file: str = "t.json") -> Problem:
    with pytest.raises(TemplateInvalid) as caught:
        load_json_text(text, file)
    assert len(caught.value.problems) == 1
    problem = caught.value.problems[0]
    assert problem.code == "InvalidTemplate"
    assert problem.file == file
    return problem


# --- what ARM accepts -------------------------------------------------------------------------
def test_strict_json_loads_as_json_does() -> None:
    text = '{"a": [1, 2.5, true, null, "x"], "b": {"c": "d"}}'
    assert load_json_text(text) == json.loads(text)


def test_utf8_bom_is_skipped_in_bytes_and_in_text() -> None:
    assert load_json_text(b'\xef\xbb\xbf{"a": "\xc3\xa9"}') == {"a": "é"}
    assert load_json_text('\ufeff{"a": 1}') == {"a": 1}


def test_comments_and_trailing_commas_are_accepted() -> None:
    text = """// leading comment
    {
      /* block
         comment */
      "a": [1, 2, /* inside */ 3,],   // trailing comma in an array
      "b": {"c": 1, // before the closer
      },
    }
    """
    assert load_json_text(text) == {"a": [1, 2, 3], "b": {"c": 1}}


def test_text_inside_strings_is_never_touched() -> None:
    text = '{"url": "https://x/y", "c": "/* not a comment */", "t": "a,]b,}", "e": "\\"//\\""}'
    assert load_json_text(text) == json.loads(text)


def test_crlf_line_endings_with_comments() -> None:
    assert load_json_text('{\r\n  // c\r\n  "a": 1,\r\n}\r\n') == {"a": 1}


def test_a_repeated_key_keeps_its_last_value() -> None:
    assert load_json_text('{"a": 1, "a": 2}') == {"a": 2}


def test_repeated_property_copy_loops_are_joined() -> None:
    text = '{"copy": [{"name": "x"}], "copy": [{"name": "y"}]}'
    assert load_json_text(text) == {"copy": [{"name": "x"}, {"name": "y"}]}


# --- the corpus ---------------------------------------------------------------------------------
@pytest.mark.corpus
def test_every_corpus_file_loads() -> None:
    for path in corpus_files():
        if "MALFORMED" in str(path):
            continue
        data = path.read_bytes()
        value = load_json_text(data, str(path))
        assert isinstance(value, dict), path
        try:
            strict = json.loads(data.decode("utf-8-sig"))
        except json.JSONDecodeError:
            continue
        assert value == strict, path


@pytest.mark.corpus
def test_the_automation_dsc_templates_with_comments_and_trailing_commas_load() -> None:
    nested = require_corpus() / "qs-vmss-automation-dsc" / "nested"
    network = load_json_text((nested / "provisionNetwork.json").read_bytes())
    assert network["parameters"]["location"] == {"type": "string"}
    configuration = load_json_text((nested / "provisionConfiguration.json").read_bytes())
    children = configuration["resources"][0]["resources"]
    runbook = next(child for child in children if child["type"] == "runbooks")
    assert runbook["dependsOn"] == ["[parameters('AutomationAccountName')]"]


def nsg_template_lines() -> list[str]:
    """A template of ~530 lines whose fifth resource is an NSG with three security rules."""
    rules = [
        {"name": f"rule{i}", "properties": {"priority": 100 + i, "access": "Allow"}}
        for i in range(3)
    ]
    resources: list[dict[str, Any]] = [
        {"type": "Microsoft.Network/publicIPAddresses", "name": f"ip{i}"} for i in range(4)
    ]
    resources.append(
        {
            "type": "Microsoft.Network/networkSecurityGroups",
            "name": "nsg",
            "properties": {"securityRules": rules},
        }
    )
    variables = {f"v{i}": i for i in range(480)}
    document = {"contentVersion": "1.0.0.0", "variables": variables, "resources": resources}
    return json.dumps(document, indent=2).split("\n")


def test_a_missing_comma_deep_in_a_template_names_line_column_and_path() -> None:
    lines = nsg_template_lines()
    n = next(n for n, line in enumerate(lines) if line.strip() == '"name": "rule1",')
    lines[n] = lines[n].removesuffix(",")
    problem = failure("\n".join(lines))
    line, column = n + 2, len(lines[n + 1]) - len(lines[n + 1].lstrip()) + 1
    assert (line, column) == (516, 13)
    assert problem.message == (
        "Deployment template parse failed: expected ',' or '}', found '\"'. "
        f"Path 'resources[4].properties.securityRules[1].name', line {line}, column {column}."
    )
    assert problem.at == Pointer.parse("/resources/4/properties/securityRules/1/name")


@pytest.mark.corpus
def test_a_missing_comma_near_line_509_names_line_column_and_path() -> None:
    """The same mistake made in a real template of the corpus, and its MALFORMED copies."""
    corpus = require_corpus()
    path = corpus / "qs-sf-secure-nsg-65node-3nt" / "azuredeploy.json"
    lines = path.read_text("utf-8-sig").split("\n")
    assert lines[507].rstrip().endswith(",")
    lines[507] = lines[507].rstrip()[:-1]
    problem = failure("\n".join(lines))
    column = len(lines[508]) - len(lines[508].lstrip()) + 1
    assert f"line 509, column {column}." in problem.message
    assert problem.message.startswith("Deployment template parse failed: expected ',' or '}'")
    assert "Path 'resources[4].properties.securityRules[" in problem.message
    assert problem.at is not None
    assert problem.at.parts[:4] == ("resources", "4", "properties", "securityRules")
    for malformed in sorted(corpus.glob("*MALFORMED*/**/*.json")):
        message = failure(malformed.read_bytes()).message
        assert any(f"line {n}," in message for n in range(505, 515)), message


# --- errors -------------------------------------------------------------------------------------
def test_errors_keep_line_and_column_across_comments() -> None:
    text = '{\n  /* one\n     two */ "a": 1\n  // three\n  "b": 2\n}'
    problem = failure(text)
    assert problem.message == (
        "Deployment template parse failed: expected ',' or '}', found '\"'. "
        "Path 'a', line 5, column 3."
    )
    assert problem.at == Pointer.parse("/a")


def test_error_inside_nested_arrays_points_at_the_item() -> None:
    problem = failure('{"resources": [{"name": "x"}, {"ports": [1 2]}]}')
    assert problem.at == Pointer.parse("/resources/1/ports/0")
    assert "expected ',' or ']', found '2'" in problem.message
    assert "Path 'resources[1].ports[0]', line 1, column 44." in problem.message


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ('{"a": }', "expected a value, found '}'"),
        ('{"a" 1}', "expected ':' after the property name, found '1'"),
        ("{a: 1}", "expected a property name in quotes, found 'a'"),
        ('{"a": "x', "unterminated string"),
        ('{"a": "x\ny"}', "raw control character"),
        ('{"a": "\\q"}', "invalid escape sequence"),
        ('{"a": 1} {}', "unexpected text after the end of the JSON document"),
        ('{"a": NaN}', "NaN is not a JSON value"),
        ('{"a": [1, -Infinity]}', "-Infinity is not a JSON value"),
        ('{"a": 1 /* open', "unterminated /* comment"),
        ('{"a": [1,,]}', "expected a value, found ']'"),
    ],
)
def test_invalid_json_is_explained(text: str, what: str) -> None:
    problem = failure(text)
    assert problem.message.startswith("Deployment template parse failed: ")
    assert what in problem.message
    assert "line 1, column " in problem.message


def test_the_document_name_is_used_in_the_message() -> None:
    with pytest.raises(TemplateInvalid) as caught:
        load_json_text("{", "p.json", document="Deployment parameters")
    assert caught.value.problems[0].message.startswith("Deployment parameters parse failed")


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (b"", "the file is empty"),
        (b"  \n\t", "the file is empty"),
        (b"// only\n/* comments */", "the file holds only comments"),
        (b'{"a": "\xe9t\xe9"}', "not valid UTF-8: byte 0xE9 at line 1, column 8"),
        (b'\n{"a":\n "\xff"}', "not valid UTF-8: byte 0xFF at line 3, column 3"),
        ('{"a": 1}'.encode("utf-16-le"), "UTF-16 encoded but has no byte-order mark"),
    ],
)
def test_empty_and_undecodable_files_are_explained(data: bytes, what: str) -> None:
    problem = failure(data)
    assert what in problem.message
    assert problem.at == Pointer.root()


def test_a_large_template_with_comments_loads_quickly() -> None:
    resource = {"type": "Microsoft.Network/loadBalancers", "name": "lb", "properties": {}}
    resource["properties"] = {"rules": [{"name": f"r{i}", "port": i} for i in range(40)]}
    text = json.dumps({"resources": [resource] * 150}, indent=2)
    text = text.replace("\n", " // note\n").replace("]", ",]")
    assert len(text) > 400_000
    started = time.perf_counter()
    loaded = load_json_text(text)
    assert time.perf_counter() - started < 2.0
    assert loaded["resources"][149] == resource


# --- the law: comments and trailing commas between tokens change nothing ------------------------
TRICKY = st.sampled_from(["//", "/*", "*/", ",]", ",}", '"', "\\", "\n", "[x]", " "])
STRINGS = st.lists(TRICKY | st.text(max_size=3), max_size=4).map("".join)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(STRINGS, inner, max_size=4),
    max_leaves=20,
)
COMMENT_TEXT = st.text(st.characters(exclude_characters="\n\r"), max_size=8)
GAPS = st.sampled_from(["", " ", "\n", "\t", "\r\n"]) | COMMENT_TEXT.flatmap(
    lambda t: st.sampled_from([f"//{t}\n", f"/*{t.replace('*/', '')}*/", f"/*\n{t}\n*/"])
)


def render(value: Any, data: st.DataObject) -> str:
    """``value`` as JSON text with random comments, whitespace and trailing commas."""

    def gap() -> str:
        return "".join(data.draw(st.lists(GAPS, max_size=2)))

    def trailing(items: list[str]) -> str:
        wanted: bool = data.draw(st.booleans())
        return "," + gap() if items and wanted else ""

    if isinstance(value, dict):
        items = [
            f"{gap()}{json.dumps(key)}{gap()}:{gap()}{render(item, data)}{gap()}"
            for key, item in value.items()
        ]
        return "{" + ",".join(items) + trailing(items) + gap() + "}"
    if isinstance(value, list):
        items = [gap() + render(item, data) + gap() for item in value]
        return "[" + ",".join(items) + trailing(items) + gap() + "]"
    return json.dumps(value)


@given(JSON_VALUES, st.data())
def test_comments_and_trailing_commas_between_tokens_load_back_equal(
    value: Any, data: st.DataObject
) -> None:
    assert load_json_text(render(value, data)) == value


@given(STRINGS)
def test_strings_with_comment_markers_are_untouched(text: str) -> None:
    document = json.dumps({"s": text, "list": [text, text]})
    assert load_json_text(document + " // end") == {"s": text, "list": [text, text]}
