"""Hostile templates end in a clear error, quickly and in bounded memory: Azure's template
limits, lbsim's own, and inputs that used to end in a traceback (issue 14, parts 2 and 3)."""

from __future__ import annotations

import json
import time
import tracemalloc
from typing import Any

import pytest

from lbsim.arm import limits
from lbsim.arm.jsontext import load_json_text
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.errors import Problem, TemplateInvalid
from lbsim.pointer import Pointer

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
VMSS = "Microsoft.Compute/virtualMachineScaleSets"
NSG = "Microsoft.Network/networkSecurityGroups"
DEPLOYMENTS = "Microsoft.Resources/deployments"
Json = dict[str, Any]


def doc(**parts: Any) -> Json:
    return {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "resources": [], **parts}


def scale_set(capacity: Any) -> Json:
    return {
        "type": VMSS,
        "apiVersion": "2023-03-01",
        "name": "web",
        "location": "westus",
        "sku": {"name": "Standard_B1s", "capacity": capacity},
        "properties": {},
    }


def nsg(name: str = "nsg") -> Json:
    return {
        "type": NSG,
        "apiVersion": "2023-04-01",
        "name": name,
        "location": "westus",
        "properties": {},
    }


def output(value: str, kind: str = "string") -> Json:
    return doc(outputs={"o": {"type": kind, "value": value}})


def first_problem(
    template: Any, seconds: float = 5.0, options: LoadOptions | None = None
) -> Problem:
    """The first error loading ``template``, which must come within ``seconds``."""
    start = time.monotonic()
    with pytest.raises(TemplateInvalid) as caught:
        load_template(template, "t.json", options)
    assert time.monotonic() - start < seconds
    return caught.value.problems[0]


def assert_problem(problem: Problem, code: str, at: str, text: str = "") -> None:
    assert (problem.code, str(problem.at)) == (code, at), problem
    assert text in problem.message


# --- Azure's limits ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "limit", "value"),
    [
        ("parameters", 256, {"type": "string", "defaultValue": "x"}),
        ("variables", 256, "x"),
        ("outputs", 64, {"type": "string", "value": "x"}),
    ],
)
def test_declared_counts_have_azures_limits(key: str, limit: int, value: Any) -> None:
    assert load_template(doc(**{key: {f"n{i}": value for i in range(limit)}}))
    problem = first_problem(doc(**{key: {f"n{i}": value for i in range(limit + 1)}}))
    assert_problem(problem, "InvalidTemplate", f"/{key}", f"({limit + 1}) exceeds the limit")


def test_resources_per_template_stop_at_800_copy_loops_included() -> None:
    loop = {**nsg("[concat('n', copyIndex())]"), "copy": {"name": "c", "count": 500}}
    problem = first_problem(doc(resources=[loop, {**loop, "copy": {"name": "d", "count": 301}}]))
    assert_problem(problem, "InvalidTemplate", "/resources/1", "limit of 800")


def test_a_copy_count_past_800_from_a_huge_parameter_is_refused() -> None:
    template = doc(
        parameters={"n": {"type": "int"}},
        resources=[
            {
                **nsg("[concat('n', copyIndex())]"),
                "copy": {"name": "c", "count": "[parameters('n')]"},
            }
        ],
    )
    options = LoadOptions(cli_parameters={"n": str(2**63 - 1)})
    problem = first_problem(template, options=options)
    assert_problem(problem, "InvalidTemplate", "/resources/0/copy/count", "from 0 to 800")


def test_an_expression_longer_than_24576_characters_is_refused() -> None:
    fine = "[concat('" + "x" * 24_000 + "')]"
    assert load_template(output(fine))
    problem = first_problem(output("[concat('" + "x" * 24_570 + "')]"))
    assert_problem(problem, "InvalidTemplate", "/outputs/o/value", "over the limit of 24,576")


@pytest.mark.parametrize("capacity", [4294967296, "4294967296", 1001])
def test_a_scale_set_has_at_most_1000_instances(capacity: Any) -> None:
    problem = first_problem(doc(resources=[scale_set(capacity)]))
    assert_problem(problem, "InvalidParameter", "/resources/0/sku/capacity", "at most 1,000")


def test_a_capacity_from_a_parameter_without_max_value_is_refused() -> None:
    template = doc(parameters={"n": {"type": "int"}}, resources=[scale_set("[parameters('n')]")])
    problem = first_problem(template, options=LoadOptions(cli_parameters={"n": str(2**63 - 1)}))
    assert_problem(problem, "InvalidParameter", "/resources/0/sku/capacity", "at most 1,000")


def test_a_resource_over_1_mb_compressed_is_refused() -> None:
    # 1.6 MB of padding compresses far below 1 MB, as Azure measures; 100 base64 strings
    # of range(i, 9000)'s digits (about 5 MB) do not
    padded = {f"t{i}": f"[padLeft('x', 40000, '{i % 10}')]" for i in range(40)}
    assert load_template(doc(resources=[{**nsg(), "tags": padded}]))
    body = {f"u{i}": f"[base64(string(range({i}, 9000)))]" for i in range(100)}
    problem = first_problem(doc(resources=[{**nsg(), "tags": body}]))
    assert_problem(problem, "DeploymentJobSizeExceededException", "/resources/0", "1,048,576")


# --- lbsim's own limits ---------------------------------------------------------------------------
def test_nested_deployments_of_copy_100_three_levels_deep_end_quickly() -> None:
    def level(depth: int) -> list[Json]:
        if depth == 0:
            return [{**nsg("[concat('n', copyIndex())]"), "copy": {"name": "c", "count": 100}}]
        return [
            {
                "type": DEPLOYMENTS,
                "apiVersion": "2022-09-01",
                "name": f"[concat('d{depth}-', copyIndex())]",
                "copy": {"name": "c", "count": 100},
                "properties": {
                    "mode": "Incremental",
                    "expressionEvaluationOptions": {"scope": "inner"},
                    "template": doc(resources=level(depth - 1)),
                },
            }
        ]

    problem = first_problem(doc(resources=level(3)))
    assert problem.code == "TooManyResourcesInDeployments"
    assert str(problem.at).startswith("/resources/0/properties/template/resources/0")


def test_variables_that_double_each_other_stop_at_the_string_limit() -> None:
    variables: Json = {"v0": "x"}
    for i in range(1, 31):
        variables[f"v{i}"] = f"[concat(variables('v{i - 1}'), variables('v{i - 1}'))]"
    problem = first_problem(
        doc(variables=variables, outputs={"o": {"type": "string", "value": "[variables('v30')]"}})
    )
    assert_problem(problem, "ExpressionValueTooLarge", "/variables/v21", "2,097,152 characters")


def test_arrays_that_double_by_reference_stop_at_the_item_limit() -> None:
    variables: Json = {"v0": ["x"]}
    for i in range(1, 31):
        variables[f"v{i}"] = f"[createArray(variables('v{i - 1}'), variables('v{i - 1}'))]"
    problem = first_problem(
        doc(variables=variables, outputs={"o": {"type": "array", "value": "[variables('v30')]"}})
    )
    assert problem.code == "ExpressionValueTooLarge"
    assert str(problem.at).startswith("/variables/v")


def test_pad_left_to_two_billion_is_refused_before_it_is_built() -> None:
    problem = first_problem(output("[padLeft('x', 2000000000)]"), seconds=1)
    assert_problem(problem, "ExpressionValueTooLarge", "/outputs/o/value", "2,000,000,000")


def test_map_of_ranges_stops_at_the_item_limit() -> None:
    template = output("[map(range(0,10000), lambda('i', range(0,10000)))]", "array")
    problem = first_problem(template, seconds=2)
    assert_problem(problem, "ExpressionValueTooLarge", "/outputs/o/value", "100,000 items")


def test_a_load_past_its_deadline_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("lbsim.arm.limits.LOAD_SECONDS", 0.2)
    # 800 resources, each sorting a 2,000-element array with a lambda: seconds of work
    loop = {
        **nsg("[concat('n', copyIndex())]"),
        "copy": {"name": "c", "count": 800},
        "tags": {
            "t": "[string(sort(range(0, 2000), lambda('a', 'b', "
            "less(lambdaVariables('b'), lambdaVariables('a')))))]"
        },
    }
    problem = first_problem(doc(resources=[loop]), seconds=3)
    assert problem.code == "LoadTimeLimitExceeded"
    assert str(problem.at).startswith("/resources/0")


# --- no traceback, ever -------------------------------------------------------------------------
@pytest.mark.parametrize("depth", [990, 100_000])
def test_json_nested_deep_is_a_clear_error(depth: int) -> None:
    with pytest.raises(TemplateInvalid) as caught:
        load_json_text('{"a": ' + "[" * depth + "]" * depth + "}", "t.json")
    problem = caught.value.problems[0]
    assert problem.code == "JsonNestedTooDeep"
    assert problem.at == Pointer(("a", *["0"] * 127))


def test_values_nested_490_deep_in_a_template_dict_are_a_clear_error() -> None:
    value = json.loads('{"a":' * 490 + "1" + "}" * 490)
    problem = first_problem(doc(resources=[{**nsg(), "properties": value}]))
    assert problem.code == "JsonNestedTooDeep"
    assert problem.at == Pointer(("resources", "0", "properties", *["a"] * 125))


def test_an_expression_that_builds_a_deep_value_is_a_clear_error() -> None:
    problem = first_problem(output("[json('" + "[" * 200 + "]" * 200 + "')]", "array"))
    assert_problem(problem, "ExpressionValueTooDeep", "/outputs/o/value", "128 levels")


def test_variables_that_use_each_other_200_deep_are_a_clear_error() -> None:
    variables: Json = {"v0": "x"}
    for i in range(1, 200):
        variables[f"v{i}"] = f"[createArray(variables('v{i - 1}'))]"
    value = {"type": "array", "value": "[variables('v199')]"}
    problem = first_problem(doc(variables=variables, outputs={"o": value}))
    assert_problem(problem, "ExpressionNestedTooDeep", "/variables/v135", "64 levels")


def test_an_integer_literal_of_5000_digits_is_a_clear_error() -> None:
    with pytest.raises(TemplateInvalid) as caught:
        load_json_text('{"resources": [], "n": ' + "9" * 5000 + "}", "t.json")
    assert_problem(caught.value.problems[0], "InvalidTemplate", "/n", "more than 4,300 digits")
    problem = first_problem(output("[add(" + "9" * 5000 + ", 1)]", "int"))
    assert_problem(problem, "InvalidTemplate", "/outputs/o/value", "a 64-bit integer")


def test_a_capacity_string_of_5000_digits_is_a_clear_error() -> None:
    problem = first_problem(doc(resources=[scale_set("9" * 5000)]))
    assert problem.at == Pointer(("resources", "0", "sku", "capacity"))


def test_lambda_without_arguments_is_a_clear_error() -> None:
    problem = first_problem(output("[lambda()]"))
    assert_problem(problem, "InvalidTemplate", "/outputs/o/value", "lambda() takes")


def test_an_output_holding_a_lambda_is_a_clear_error() -> None:
    problem = first_problem(output("[createObject('a', lambda('x', 1))]", "object"))
    assert_problem(problem, "InvalidTemplate", "/outputs/o/value", "A lambda can only")


def test_min_length_of_2_63_with_fill_missing_is_a_clear_error() -> None:
    template = doc(parameters={"p": {"type": "string", "minLength": 2**63}})
    problem = first_problem(template, options=LoadOptions(fill_missing=True))
    assert_problem(problem, "PlaceholderTooLarge", "/parameters/p", "give the parameter a value")


def test_expressions_nested_past_128_levels_are_a_clear_error() -> None:
    problem = first_problem(output("[" + "string(" * 200 + "1" + ")" * 200 + "]"))
    assert_problem(problem, "ExpressionNestedTooDeep", "/outputs/o/value", "128 levels")


# --- memory ---------------------------------------------------------------------------------
@pytest.mark.parametrize("tail", ["// a comment\n", '"b": [1,],'])
def test_a_10_mb_string_with_comments_parses_in_a_small_multiple_of_its_size(tail: str) -> None:
    text = '{"a": "' + "x" * 10_000_000 + '", ' + tail + ' "c": 1}'
    tracemalloc.start()
    try:
        value = load_json_text(text, "t.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(value["a"]) == 10_000_000
    assert peak < 8 * len(text)


@pytest.mark.parametrize(
    ("name", "given", "why"),
    [
        ("o", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("o", '{"a":' * 300 + "1" + "}" * 300, "nested over 128 levels"),
        ("n", "9" * 5000, "expected a 64-bit integer"),
    ],
)
def test_hostile_param_values_are_clear_errors(name: str, given: str, why: str) -> None:
    template = doc(parameters={"o": {"type": "object"}, "n": {"type": "int"}})
    cli = {"o": "{}", "n": "1", name: given}
    problem = first_problem(template, options=LoadOptions(cli_parameters=cli))
    assert_problem(problem, "InvalidTemplate", f"/parameters/{name}", why)


def _wide_and_deep(width: int, depth: int, item: str = "[]") -> str:
    """JSON text: ``width`` small containers in one array nested ``depth`` deep."""
    return "[" * depth + "[" + ",".join([item] * width) + "]" + "]" * depth


@pytest.mark.parametrize("item", ["[]", "{}", '{"a":[]}'])
def test_wide_json_nested_100_deep_parses_in_a_small_multiple_of_its_size(item: str) -> None:
    # 200,000 small containers, each once with its path held in full: ~200 MB before
    text = _wide_and_deep(200_000, 100, item)
    tracemalloc.start()
    try:
        start = time.monotonic()
        value = load_json_text(text, "t.json")
        elapsed = time.monotonic() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(_innermost(value, 101)) == 200_000
    # what is parsed is itself ~20x the text ([] is 3 characters, an empty list 56 bytes)
    assert peak < 40 * len(text), f"{peak:,} bytes for {len(text):,} characters"
    assert elapsed < 5


def test_the_depth_check_holds_memory_for_the_depth_not_the_width() -> None:
    value = json.loads(_wide_and_deep(200_000, 120))
    tracemalloc.start()
    try:
        assert limits.too_deep(value) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"{peak:,} bytes"


def test_the_depth_check_finds_the_first_deep_branch_of_a_wide_value() -> None:
    deep: Any = [[]]
    for _ in range(130):
        deep = [deep]
    value = {"a": [[[]] * 50_000, {"b": deep}, deep]}
    path = limits.too_deep(value)
    assert path == ("a", 1, "b", *[0] * 125)
    with pytest.raises(TemplateInvalid) as caught:
        load_json_text(json.dumps(value), "t.json")
    assert caught.value.problems[0].at == Pointer(("a", "1", "b", *["0"] * 125))


def _innermost(value: Any, depth: int) -> Any:
    for _ in range(depth - 1):
        value = value[0]
    return value


def test_evaluating_a_wide_value_nested_100_deep_keeps_no_pointer_per_container() -> None:
    value = json.loads(_wide_and_deep(20_000, 100))
    template = doc(resources=[{**nsg(), "properties": {"x": value}}])
    size = len(json.dumps(template, separators=(",", ":")))
    tracemalloc.start()
    try:
        assert load_template(template, "t.json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the template is copied a few times (evaluated, checked); a pointer of ~100 parts for
    # each of the 20,000 arrays was ~450x its size
    assert peak < 120 * size, f"{peak:,} bytes for {size:,} characters"


@pytest.mark.parametrize("key", ["securityRules", "[concat('security', 'Rules')]"])
def test_a_problem_inside_evaluated_containers_points_at_the_template(key: str) -> None:
    rule = {
        "name": "r",
        "properties": {
            "protocol": "Bogus",
            "access": "Allow",
            "direction": "Inbound",
            "priority": 100,
            "sourceAddressPrefix": "*",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": "22",
        },
    }
    problem = first_problem(doc(resources=[{**nsg(), "properties": {key: [rule]}}]))
    expected = f"/resources/0/properties/{key}/0/properties/protocol"
    assert_problem(problem, "SecurityRuleInvalidProtocol", expected)


@pytest.mark.parametrize("uri", ["http://[::1", "https://[not-an-address]/t.json"])
def test_a_template_link_that_is_not_a_url_is_a_clear_error(uri: str) -> None:
    link = {
        "type": DEPLOYMENTS,
        "apiVersion": "2022-09-01",
        "name": "d",
        "properties": {"mode": "Incremental", "templateLink": {"uri": uri}},
    }
    problem = first_problem(doc(resources=[link]))
    assert_problem(problem, "LinkedTemplatePathInvalid", "/resources/0/properties/templateLink")
