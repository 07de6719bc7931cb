"""The expression parser: syntax tree, positions, errors, printing, and every expression of
the real-world corpus."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from corpus import require_corpus
from hypothesis import given
from hypothesis import strategies as st

from lbsim.arm.expressions import (
    FunctionCall,
    IndexAccess,
    IntLiteral,
    Node,
    PropertyAccess,
    StringLiteral,
    format_expression,
    function_names,
    is_expression,
    parse_expression,
    to_text,
)
from lbsim.errors import ExpressionError


def call(name: str, *args: Node) -> FunctionCall:
    return FunctionCall(name, tuple(args))


def test_nested_calls_with_property_and_index_access() -> None:
    node = parse_expression("[listKeys(variables('id'), '2019-06-01').keys[0].value]")
    keys = PropertyAccess(
        call("listKeys", call("variables", StringLiteral("id")), StringLiteral("2019-06-01")),
        "keys",
    )
    assert node == PropertyAccess(IndexAccess(keys, IntLiteral(0)), "value")


def test_positions_count_from_the_start_of_the_json_string() -> None:
    node = parse_expression("[concat('a', parameters('p').x)]")
    assert isinstance(node, FunctionCall)
    assert node.pos == 1
    first, second = node.args
    assert first.pos == 8
    assert isinstance(second, PropertyAccess)
    assert (second.pos, second.target.pos) == (28, 13)


def test_names_are_kept_as_written_and_looked_up_in_lower_case() -> None:
    node = parse_expression("[copyindex()]")
    assert isinstance(node, FunctionCall)
    assert (node.name, node.key) == ("copyindex", "copyindex")
    assert parse_expression("[COPYINDEX()]") == FunctionCall("COPYINDEX")


def test_user_function_names_have_a_namespace() -> None:
    node = parse_expression("[contoso.uniqueName(parameters('x')).length]")
    assert isinstance(node, PropertyAccess)
    assert node.target == call("contoso.uniqueName", call("parameters", StringLiteral("x")))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("['It''s']", StringLiteral("It's")),
        ("['']", StringLiteral("")),
        ("['''']", StringLiteral("'")),
        ("['a]b[c']", StringLiteral("a]b[c")),
        ("[-12]", IntLiteral(-12)),
        ("[  add( 1 ,\n\t-2 )  ]", call("add", IntLiteral(1), IntLiteral(-2))),
        ("[a().?b]", PropertyAccess(call("a"), "b", safe=True)),
        (
            "[x()['key'][1]]",
            IndexAccess(IndexAccess(call("x"), StringLiteral("key")), IntLiteral(1)),
        ),
        ("[deployment().properties.template.$schema]", None),
    ],
)
def test_literals_whitespace_and_access(text: str, expected: Node | None) -> None:
    node = parse_expression(text)
    if expected is not None:
        assert node == expected
    assert parse_expression(format_expression(node)) == node


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("[concat('a'", 11, "a closing ']'"),
        ("[concat('a']", 11, "',' or ')'"),
        ("[concat('a)]", 11, "a closing quote for the string at position 8"),
        ("[true]", 5, "'(' after the function name 'true'"),
        ("[add(1.5, 2)]", 6, "an integer"),
        ("[concat('a') 'b']", 13, "the end of the expression"),
        ("[]", 1, "a function call, a string or an integer"),
        ("[a().]", 5, "a property name"),
        ("[x()[1]", 6, "']'"),
        ("[f(,)]", 3, "a function call"),
        ("[-]", 2, "a digit"),
        ("[add(99999999999999999999, 1)]", 5, "a 64-bit integer"),
    ],
)
def test_syntax_errors_name_the_text_and_the_position(
    text: str, position: int, expected: str
) -> None:
    with pytest.raises(ExpressionError) as caught:
        parse_expression(text)
    error = caught.value
    assert error.code == "InvalidTemplate"
    assert error.at is None
    assert f"Unable to parse language expression '{text}'" in error.message
    assert f"expected {expected}" in error.message
    assert f"at position {position} " in error.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[concat('a')]", True),
        ("[[literal]", False),
        ("[]", True),
        ("[", False),
        ("]", False),
        ("plain", False),
        ("[test] value", False),
        ("", False),
    ],
)
def test_which_strings_are_expressions(value: str, expected: bool) -> None:
    assert is_expression(value) is expected


def test_absurd_nesting_is_an_error_not_a_crash() -> None:
    text = "[" + "concat(" * 2000 + "'x'" + ")" * 2000 + "]"
    with pytest.raises(ExpressionError, match="more than 128 levels deep") as caught:
        parse_expression(text)
    assert caught.value.code == "ExpressionNestedTooDeep"


def test_parsing_is_cached() -> None:
    text = "[resourceId('Microsoft.Network/loadBalancers', parameters('lbName'))]"
    assert parse_expression(text) is parse_expression(text)


def test_bare_expression_text_parses_like_the_bracketed_form() -> None:
    assert parse_expression("concat('a', 1)") == parse_expression("[concat('a', 1)]")


def test_function_names_lists_every_call_in_lower_case() -> None:
    node = parse_expression("[if(equals(copyIndex(), 0), reference('x').a, listKeys('y', '1'))]")
    assert function_names(node) == {"if", "equals", "copyindex", "reference", "listkeys"}


def test_printing_is_canonical() -> None:
    node = parse_expression("[ concat ( 'it''s' ,parameters( 'p' ) .a[ 2 ] , -3 ) ]")
    assert to_text(node) == "concat('it''s', parameters('p').a[2], -3)"


# --- round trip: parse(print(tree)) == tree for generated trees -----------------------------

identifiers = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)
properties = st.from_regex(r"[A-Za-z_$][A-Za-z0-9_$]{0,8}", fullmatch=True)
function_name = identifiers | st.builds(lambda a, b: f"{a}.{b}", identifiers, identifiers)
leaves: st.SearchStrategy[Node] = (
    st.builds(StringLiteral, st.text(max_size=12))
    | st.builds(IntLiteral, st.integers(-(2**63), 2**63 - 1))
    | st.builds(FunctionCall, function_name)
)


def objects(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    """Targets of ``.name``: ``1.name`` would read as a number, so no integer literals."""
    return children.filter(lambda node: not isinstance(node, IntLiteral))


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    return (
        st.builds(FunctionCall, function_name, st.lists(children, max_size=3).map(tuple))
        | st.builds(PropertyAccess, objects(children), properties, st.booleans())
        | st.builds(IndexAccess, children, children)
    )


trees = st.recursive(leaves, _extend, max_leaves=12)


@given(trees)
def test_printing_then_parsing_gives_the_same_tree(tree: Node) -> None:
    text = format_expression(tree)
    assert is_expression(text)
    assert parse_expression(text) == tree


@given(st.text(max_size=40))
def test_any_string_literal_round_trips(value: str) -> None:
    assert parse_expression(format_expression(StringLiteral(value))) == StringLiteral(value)


# --- the corpus ------------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _corpus_expressions() -> list[str]:
    found: set[str] = set()
    for path in sorted(require_corpus().rglob("*.json")):
        try:
            document = json.loads(path.read_text(encoding="utf-8-sig"))
        except ValueError:
            continue  # files with comments or the deliberately malformed one
        found.update(s for s in _strings(document) if is_expression(s))
    return sorted(found)


@pytest.mark.corpus
def test_every_corpus_expression_parses_and_round_trips() -> None:
    expressions = _corpus_expressions()
    assert len(expressions) > 1000
    for text in expressions:
        node = parse_expression(text)
        assert parse_expression(format_expression(node)) == node, text
    names = set().union(*(function_names(parse_expression(t)) for t in expressions))
    assert {"resourceid", "copyindex", "uniquestring", "listkeys", "format", "uri"} <= names
