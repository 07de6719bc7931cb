"""lbsim.arm.loader: parameters, variables, copy loops, conditions, child resources, symbolic
names, nested and linked deployments, reference(), and where errors point."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import strategies as s
from hypothesis import given
from templates import (
    DEPLOYMENTS,
    LB,
    NSG,
    SCHEMA,
    VNET,
    Json,
    codes,
    internal_frontend,
    ip_configuration,
    load,
    load_balancer,
    nat_pool,
    nat_rule,
    nsg,
    parameters_file,
    probe,
    problems_of,
    public_ip,
    resource,
    resource_id,
    scale_set,
    security_rule,
    template,
    vnet,
    where,
)

from lbsim.arm import parameters as params
from lbsim.errors import Severity
from lbsim.model import Deployment

STORAGE = "Microsoft.Storage/storageAccounts"


def named(expression: str, **top: Any) -> Json:
    """A template whose one resource (not emulated) is named by ``expression``: what the
    loader computed can be read back from ``not_emulated``."""
    return template(resource(STORAGE, expression), **top)


def name_of(deployment: Deployment) -> str:
    return deployment.not_emulated[0].name


def warning_codes(deployment: Deployment) -> list[str]:
    assert all(w.severity is Severity.WARNING for w in deployment.warnings)
    return [w.code for w in deployment.warnings]


# --- parameters: where values come from -----------------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "text", "expression", "expected"),
    [
        ("int", "41", "[string(add(parameters('p'), 1))]", "42"),
        ("Int", "-3", "[string(mul(parameters('p'), 2))]", "-6"),
        ("bool", "TRUE", "[if(parameters('p'), 'yes', 'no')]", "yes"),
        ("Bool", "false", "[if(parameters('p'), 'yes', 'no')]", "no"),
        (
            "array",
            '["a", "b", "c"]',
            "[concat(string(length(parameters('p'))), parameters('p')[2])]",
            "3c",
        ),
        ("object", '{"k": {"v": "deep"}}', "[parameters('p').k.v]", "deep"),
        ("secureObject", '{"k": "s"}', "[parameters('p').k]", "s"),
        ("String", "a=b", "[parameters('p')]", "a=b"),
        ("securestring", "42", "[concat(parameters('p'), 'x')]", "42x"),
    ],
)
def test_cli_parameter_is_converted_to_the_declared_type(
    kind: str, text: str, expression: str, expected: str
) -> None:
    doc = named(expression, parameters={"p": {"type": kind}})
    assert name_of(load(doc, cli_parameters={"P": text})) == expected


@pytest.mark.parametrize(
    ("kind", "text"), [("int", "4x"), ("bool", "yes"), ("array", "[1,"), ("object", "{")]
)
def test_cli_parameter_that_does_not_convert_is_an_error_at_the_declaration(
    kind: str, text: str
) -> None:
    doc = named("n", parameters={"p": {"type": kind}})
    (problem,) = problems_of(doc, cli_parameters={"p": text})
    assert (problem.code, str(problem.at), problem.file) == (
        "InvalidTemplate",
        "/parameters/p",
        "t.json",
    )
    assert text in problem.message


def test_cli_beats_parameters_file_which_beats_default() -> None:
    declared = {name: {"type": "string", "defaultValue": "default"} for name in ("a", "b", "c")}
    doc = named(
        "[concat(parameters('a'), '-', parameters('b'), '-', parameters('c'))]", parameters=declared
    )
    deployment = load(
        doc,
        parameters_file=parameters_file(a="file", b="file"),
        parameters_file_name="p.json",
        cli_parameters={"a": "cli"},
    )
    assert name_of(deployment) == "cli-file-default"


def test_parameters_file_value_of_the_wrong_type_points_into_the_parameters_file() -> None:
    doc = named("[string(parameters('count'))]", parameters={"count": {"type": "int"}})
    (problem,) = problems_of(
        doc, parameters_file=parameters_file(count="three"), parameters_file_name="p.json"
    )
    assert (problem.code, str(problem.at), problem.file) == (
        "InvalidTemplate",
        "/parameters/count/value",
        "p.json",
    )
    assert "'Int'" in problem.message


def test_default_may_be_an_expression_over_earlier_and_later_parameters() -> None:
    declared = {
        "first": {"type": "string", "defaultValue": "[concat(parameters('base'), '-1')]"},
        "base": {"type": "string", "defaultValue": "[toLower(resourceGroup().name)]"},
        "second": {"type": "string", "defaultValue": "[concat(parameters('base'), '-2')]"},
    }
    doc = named("[concat(parameters('first'), '+', parameters('second'))]", parameters=declared)
    assert name_of(load(doc)) == "lbsim-rg-1+lbsim-rg-2"
    assert name_of(load(doc, cli_parameters={"base": "X"})) == "X-1+X-2"


def test_parameters_whose_defaults_refer_to_each_other_are_an_error() -> None:
    declared = {
        "a": {"type": "string", "defaultValue": "[parameters('b')]"},
        "b": {"type": "string", "defaultValue": "[parameters('a')]"},
    }
    problems = problems_of(named("n", parameters=declared))
    assert set(codes(problems)) == {"InvalidTemplate"}
    assert {str(p.at) for p in problems} <= {
        "/parameters/a/defaultValue",
        "/parameters/b/defaultValue",
    }


def test_computed_default_is_checked_against_the_constraints() -> None:
    declared = {
        "base": {"type": "string", "defaultValue": "abc"},
        "name": {
            "type": "string",
            "defaultValue": "[concat(parameters('base'), 'def')]",
            "maxLength": 5,
        },
    }
    (problem,) = problems_of(named("n", parameters=declared))
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/parameters/name")
    assert "maxLength 5" in problem.message


# --- parameters: constraints ----------------------------------------------------------------------
CONSTRAINED = {
    "sku": {"type": "String", "allowedValues": ["Basic", "Standard"]},
    "zones": {"type": "array", "allowedValues": ["1", "2", "3"]},
    "low": {"type": "int", "minValue": 1},
    "high": {"type": "int", "maxValue": 10},
    "short": {"type": "string", "minLength": 3},
    "long": {"type": "string", "maxLength": 4},
    "few": {"type": "array", "minLength": 2},
    "many": {"type": "array", "maxLength": 1},
}
BAD_VALUES = {
    "sku": ("Premium", "not part of the allowed value(s): 'Basic, Standard'"),
    "zones": (["1", "4"], "'4'"),
    "low": (0, "less than minValue 1"),
    "high": (11, "exceeds maxValue 10"),
    "short": ("ab", "less than minLength 3"),
    "long": ("abcde", "exceeds maxLength 4"),
    "few": (["x"], "less than minLength 2"),
    "many": (["x", "y"], "exceeds maxLength 1"),
}
GOOD_VALUES = {
    "sku": "Standard",
    "zones": ["3", "1"],
    "low": 1,
    "high": 10,
    "short": "abc",
    "long": "abcd",
    "few": ["x", "y"],
    "many": ["x"],
}


@pytest.mark.parametrize("name", sorted(CONSTRAINED))
def test_constraint_violation_is_invalid_template_at_the_declaration(name: str) -> None:
    value, phrase = BAD_VALUES[name]
    doc = named("n", parameters={name: CONSTRAINED[name]})
    (problem,) = problems_of(
        doc, parameters_file=parameters_file(**{name: value}), parameters_file_name="p.json"
    )
    assert (problem.code, str(problem.at), problem.file) == (
        "InvalidTemplate",
        f"/parameters/{name}",
        "t.json",
    )
    assert phrase in problem.message


def test_values_on_the_edges_of_the_constraints_are_accepted() -> None:
    doc = named("n", parameters=CONSTRAINED)
    deployment = load(doc, parameters_file=parameters_file(**GOOD_VALUES))  # raises if refused
    assert deployment.warnings == ()


def test_every_parameter_mistake_is_reported_together() -> None:
    doc = named("n", parameters=CONSTRAINED)
    bad = {name: value for name, (value, _) in BAD_VALUES.items()}
    problems = problems_of(
        doc, parameters_file=parameters_file(**bad), parameters_file_name="p.json"
    )
    assert sorted(str(p.at) for p in problems) == sorted(f"/parameters/{n}" for n in CONSTRAINED)


def test_missing_value_is_an_error_at_the_declaration() -> None:
    doc = named(
        "n",
        parameters={
            "adminPassword": {"type": "secureString"},
            "ok": {"type": "int", "defaultValue": 1},
        },
    )
    (problem,) = problems_of(doc)
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/parameters/adminPassword")
    assert "not provided" in problem.message


def test_undeclared_parameter_in_the_parameters_file_is_rejected_there() -> None:
    doc = named("n", parameters={"known": {"type": "string", "defaultValue": "x"}})
    (problem,) = problems_of(
        doc, parameters_file=parameters_file(known="y", extra="z"), parameters_file_name="p.json"
    )
    assert (problem.code, str(problem.at), problem.file) == (
        "InvalidTemplate",
        "/parameters/extra/value",
        "p.json",
    )
    assert "'extra'" in problem.message
    assert "known" in problem.message


def test_undeclared_parameter_on_the_command_line_is_rejected() -> None:
    (problem,) = problems_of(named("n"), cli_parameters={"extra": "1"})
    assert problem.code == "InvalidTemplate"
    assert "'extra'" in problem.message


def test_parameter_names_match_without_regard_to_case() -> None:
    doc = named("[parameters('VMSSNAME')]", parameters={"vmssName": {"type": "string"}})
    assert name_of(load(doc, parameters_file=parameters_file(VmssName="web"))) == "web"


# --- parameters: placeholders ---------------------------------------------------------------------
def test_fill_missing_gives_placeholders_that_meet_the_constraints_and_warns() -> None:
    declared = {
        "name": {"type": "string", "minLength": 12, "maxLength": 14},
        "count": {"type": "int", "minValue": 7, "maxValue": 9},
        "disks": {"type": "array", "minLength": 2},
        "secret": {"type": "secureString", "minLength": 30},
        "size": {"type": "string", "allowedValues": ["Small", "Large"]},
        "settings": {"type": "object"},
        "enabled": {"type": "bool"},
        "given": {"type": "string", "defaultValue": "kept"},
    }
    expression = (
        "[concat(parameters('name'), '|', string(parameters('count')), '|', "
        "string(length(parameters('disks'))), '|', string(length(parameters('secret'))), '|', "
        "parameters('size'), '|', string(length(parameters('settings'))), '|', "
        "if(parameters('enabled'), 'on', 'off'), '|', parameters('given'))]"
    )
    deployment = load(named(expression, parameters=declared), fill_missing=True)
    name, count, disks, secret, size, settings, enabled, given_value = name_of(deployment).split(
        "|"
    )
    assert 12 <= len(name) <= 14
    assert 7 <= int(count) <= 9
    assert int(disks) >= 2
    assert int(secret) >= 30
    assert (size, settings, enabled, given_value) == ("Small", "0", "off", "kept")
    warned = {str(w.at): w for w in deployment.warnings}
    assert set(warned) == {f"/parameters/{n}" for n in declared if n != "given"}
    assert {w.code for w in warned.values()} == {"ParameterValuePlaceholder"}
    assert "secret placeholder" in warned["/parameters/secret"].message


@given(s.parameter_declarations())
def test_placeholder_always_meets_a_satisfiable_declaration(decl: params.ParameterDecl) -> None:
    value = params.placeholder(decl)
    assert params.type_problem(decl, value) is None
    assert params.constraint_problems(decl, value) == []


def test_key_vault_reference_gets_a_placeholder_and_a_warning_at_the_reference() -> None:
    doc = named(
        "[concat('k', string(length(parameters('secret'))))]",
        parameters={"secret": {"type": "securestring", "minLength": 25}},
    )
    reference = {
        "reference": {
            "keyVault": {
                "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv"
            },
            "secretName": "admin",
        }
    }
    deployment = load(
        doc, parameters_file={"parameters": {"secret": reference}}, parameters_file_name="p.json"
    )
    assert int(name_of(deployment)[1:]) >= 25
    (warning,) = deployment.warnings
    assert (warning.code, str(warning.at), warning.file) == (
        "KeyVaultReferencePlaceholder",
        "/parameters/secret/reference",
        "p.json",
    )


# --- variables ------------------------------------------------------------------------------------
def test_variables_are_evaluated_lazily_in_any_order() -> None:
    variables = {
        "full": "[concat(variables('prefix'), '-nsg')]",
        "prefix": "[toLower('WEB')]",
        "unused": "[parameters('undeclared')]",  # never read, so never an error
    }
    assert name_of(load(named("[variables('full')]", variables=variables))) == "web-nsg"


def test_variable_cycle_is_an_error() -> None:
    variables = {"a": "[concat(variables('b'), 'x')]", "b": "[variables('a')]"}
    problems = problems_of(named("[variables('a')]", variables=variables))
    assert codes(problems) == ["InvalidTemplate"]
    assert "refers to itself" in problems[0].message
    assert problems[0].at is not None
    assert problems[0].at.parts[0] == "variables"


def test_undefined_variable_is_an_error_where_it_is_used() -> None:
    (problem,) = problems_of(named("[variables('nope')]", variables={"yes": 1}))
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/resources/0/name")
    assert "'nope'" in problem.message
    assert "yes" in problem.message


def test_variable_copy_loops_build_arrays_with_copy_index_offsets() -> None:
    variables = {
        "copy": [
            {"name": "disks", "count": 3, "input": {"lun": "[copyIndex('disks', 10)]"}},
            {
                "name": "names",
                "count": "[length(variables('disks'))]",
                "input": "[concat('n', copyIndex('names'))]",
            },
        ],
        "joined": "[concat(join(variables('names'), ','), ':', string(variables('disks')[2].lun))]",
    }
    assert name_of(load(named("[variables('joined')]", variables=variables))) == "n0,n1,n2:12"


# --- resource copy loops and conditions -----------------------------------------------------------
def _nsg_copies(count: Any) -> Json:
    declared = nsg(
        "[concat('nsg-', copyIndex(1))]", security_rule("ssh", "[add(100, copyIndex())]", port="22")
    )
    declared["copy"] = {"name": "groups", "count": count}
    return declared


def test_resource_copy_count_from_a_parameter_with_copy_index_offset() -> None:
    doc = template(
        _nsg_copies("[parameters('n')]"), parameters={"n": {"type": "int", "defaultValue": 3}}
    )
    groups = load(doc).network_security_groups
    assert [g.name for g in groups] == ["nsg-1", "nsg-2", "nsg-3"]
    assert [g.id for g in groups] == [resource_id(NSG, f"nsg-{i}") for i in (1, 2, 3)]
    assert [g.security_rules[0].priority for g in groups] == [100, 101, 102]
    assert {str(g.at) for g in groups} == {"/resources/0"}
    assert load(doc, cli_parameters={"n": "0"}).network_security_groups == ()


@pytest.mark.parametrize("count", ["[add(800, 1)]", "[sub(0, 1)]", "[string('many')]"])
def test_copy_count_outside_0_to_800_is_an_error_at_count(count: str) -> None:
    (problem,) = problems_of(template(_nsg_copies(count)))
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/resources/0/copy/count")


def test_copy_index_outside_a_loop_is_an_error() -> None:
    (problem,) = problems_of(named("[concat('x', copyIndex())]"))
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/resources/0/name")
    assert "copyIndex" in problem.message


def test_condition_false_drops_the_resource_without_evaluating_it() -> None:
    broken = nsg("skipped", security_rule("bad", 5000))
    broken["condition"] = "[equals(parameters('mode'), 'other')]"
    kept = nsg("kept")
    kept["condition"] = "[equals(parameters('mode'), 'normal')]"
    literal = nsg("literal-false")
    literal["condition"] = False
    doc = template(
        broken, kept, literal, parameters={"mode": {"type": "string", "defaultValue": "normal"}}
    )
    assert [g.name for g in load(doc).network_security_groups] == ["kept"]
    (problem,) = problems_of(doc, cli_parameters={"mode": "other"})
    assert (problem.code, str(problem.at)) == (
        "SecurityRuleInvalidPriority",
        "/resources/0/properties/securityRules/0/properties/priority",
    )


# --- property copy loops --------------------------------------------------------------------------
def _looped_balancer() -> Json:
    lb = load_balancer(nat_pools=[], probes=[])
    del lb["properties"]["inboundNatPools"], lb["properties"]["probes"]
    index = "copyIndex('inboundNatPools')"
    lb["properties"]["copy"] = [
        {
            "name": "inboundNatPools",
            "count": 2,
            "input": nat_pool(
                f"[concat('pool', {index})]",
                f"[add(50000, mul(100, {index}))]",
                f"[add(50099, mul(100, {index}))]",
                22,
            ),
        },
        {
            "name": "probes",
            "count": 3,
            "input": probe(
                "[concat('probe', copyIndex('probes'))]", "[add(8080, copyIndex('probes'))]"
            ),
        },
    ]
    return lb


def test_several_property_copy_loops_in_one_object() -> None:
    (lb,) = load(template(public_ip(), _looped_balancer())).load_balancers
    pools = [
        (p.name, p.frontend_port_range_start, p.frontend_port_range_end)
        for p in lb.inbound_nat_pools
    ]
    assert pools == [("pool0", 50000, 50099), ("pool1", 50100, 50199)]
    assert [(p.name, p.port) for p in lb.probes] == [
        ("probe0", 8080),
        ("probe1", 8081),
        ("probe2", 8082),
    ]
    assert {str(p.at) for p in lb.inbound_nat_pools} == {"/resources/1/properties/copy/0/input"}
    assert {str(p.at) for p in lb.probes} == {"/resources/1/properties/copy/1/input"}


def test_error_in_a_copy_expanded_element_points_into_the_copy_input() -> None:
    lb = _looped_balancer()
    lb["properties"]["copy"][0]["input"]["properties"]["backendPort"] = (
        "[add(65535, copyIndex('inboundNatPools'))]"
    )
    (problem,) = problems_of(template(public_ip(), lb))
    assert (problem.code, str(problem.at)) == (
        "InvalidLoadBalancerPort",
        "/resources/1/properties/copy/0/input/properties/backendPort",
    )
    assert "65536" in problem.message


def test_error_in_a_copy_expanded_resource_points_at_the_declaration() -> None:
    declared = _nsg_copies(2)
    declared["properties"]["securityRules"][0]["properties"]["priority"] = (
        "[add(4096, copyIndex())]"
    )
    (problem,) = problems_of(template(declared))
    assert (problem.code, str(problem.at)) == (
        "SecurityRuleInvalidPriority",
        "/resources/0/properties/securityRules/0/properties/priority",
    )
    assert "4097" in problem.message


# --- child resources ------------------------------------------------------------------------------
def _child(rtype: str, name: str, properties: Json) -> Json:
    return {"type": rtype, "apiVersion": "2023-09-01", "name": name, "properties": properties}


def test_child_resources_nested_and_top_level_are_merged_into_their_parent() -> None:
    lb = load_balancer(nat_rules=[nat_rule("inline", 22, port=2200)])
    lb["resources"] = [
        _child("inboundNatRules", "nested", nat_rule("x", 3389, port=3389)["properties"])
    ]
    group = nsg("guard", security_rule("inline", 100))
    group["resources"] = [_child("securityRules", "nested", security_rule("x", 200)["properties"])]
    doc = template(
        public_ip(),
        vnet(),
        lb,
        _child(f"{LB}/inboundNatRules", "lb/top", nat_rule("x", 80, port=8080)["properties"]),
        group,
        _child(f"{NSG}/securityRules", "guard/top", security_rule("x", 300)["properties"]),
        _child(f"{VNET}/subnets", "vnet/second", {"addressPrefix": "10.0.1.0/24"}),
    )
    deployment = load(doc)
    (balancer,) = deployment.load_balancers
    rules = {r.name: (r.frontend_port, str(r.at)) for r in balancer.inbound_nat_rules}
    assert rules == {
        "inline": (2200, "/resources/2/properties/inboundNatRules/0"),
        "nested": (3389, "/resources/2/resources/0"),
        "top": (8080, "/resources/3"),
    }
    assert balancer.inbound_nat_rules[2].id == resource_id(f"{LB}/inboundNatRules", "lb", "top")
    (guard,) = deployment.network_security_groups
    assert [(r.name, r.priority, str(r.at)) for r in guard.security_rules] == [
        ("inline", 100, "/resources/4/properties/securityRules/0"),
        ("nested", 200, "/resources/4/resources/0"),
        ("top", 300, "/resources/5"),
    ]
    (network,) = deployment.virtual_networks
    assert [(sn.name, sn.address_prefixes) for sn in network.subnets] == [
        ("default", ("10.0.0.0/24",)),
        ("second", ("10.0.1.0/24",)),
    ]
    assert deployment.not_emulated == ()


def test_child_whose_parent_is_not_in_the_template_is_kept_as_not_emulated() -> None:
    doc = template(
        _child(f"{NSG}/securityRules", "elsewhere/r", security_rule("x", 300)["properties"])
    )
    deployment = load(doc)
    assert [(r.type, r.name) for r in deployment.not_emulated] == [
        (f"{NSG}/securityRules", "elsewhere/r")
    ]
    (warning,) = deployment.warnings
    assert (warning.code, str(warning.at)) == ("ParentResourceNotInTemplate", "/resources/0")


def test_child_name_with_the_wrong_number_of_segments_is_an_error() -> None:
    (problem,) = problems_of(template(_child(f"{NSG}/securityRules", "only-one", {})))
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/resources/0")
    assert "segment" in problem.message


# --- languageVersion 2.0 --------------------------------------------------------------------------
def test_symbolic_resources_are_keyed_by_name_and_referenced_by_symbol() -> None:
    doc = {
        "$schema": SCHEMA,
        "languageVersion": "2.0",
        "contentVersion": "1.0.0.0",
        "parameters": {"n": {"type": "int", "defaultValue": 2}},
        "resources": {
            "ip": public_ip(label="web"),
            "net": vnet(),
            "balancer": load_balancer(nat_pools=[nat_pool("ssh", 50000, 50009, 22)]),
            "set": scale_set("vmss", "[parameters('n')]", ip_configuration(nat_pools=["ssh"])),
            "marker": resource(STORAGE, "[replace(reference('ip').dnsSettings.fqdn, '.', '-')]"),
        },
    }
    deployment = load(doc)
    assert [(v.name, v.capacity, str(v.at)) for v in deployment.virtual_machine_scale_sets] == [
        ("vmss", 2, "/resources/set")
    ]
    assert str(deployment.load_balancers[0].inbound_nat_pools[0].at) == (
        "/resources/balancer/properties/inboundNatPools/0"
    )
    assert name_of(deployment) == "web-westeurope-cloudapp-azure-com"


# --- nested and linked deployments ----------------------------------------------------------------
def _nested(name: str, scope: str, inner: Json, parameters: Json | None = None) -> Json:
    props: Json = {
        "mode": "Incremental",
        "expressionEvaluationOptions": {"scope": scope},
        "template": inner,
    }
    if parameters is not None:
        props["parameters"] = parameters
    return resource(DEPLOYMENTS, name, props)


OUTER: dict[str, Any] = {
    "parameters": {"p": {"type": "string", "defaultValue": "outerp"}},
    "variables": {"v": "outerv"},
}


def test_inline_deployment_with_outer_scope_sees_the_outer_parameters_and_variables() -> None:
    inner = template(
        nsg("[concat(parameters('p'), '-', variables('v'))]"),
        parameters={"p": {"type": "string", "defaultValue": "innerp"}},
        variables={"v": "innerv"},
    )
    deployment = load(template(_nested("child", "outer", inner), **OUTER))
    assert [(g.name, str(g.at)) for g in deployment.network_security_groups] == [
        ("outerp-outerv", "/resources/0/properties/template/resources/0")
    ]
    assert deployment.not_emulated == ()


def test_inline_deployment_with_inner_scope_has_its_own_parameters_and_outputs() -> None:
    inner = template(
        nsg("[concat(parameters('p'), '-', variables('v'), '-', deployment().name)]"),
        parameters={"p": {"type": "string"}},
        variables={"v": "innerv"},
        outputs={"o": {"type": "string", "value": "[concat('out-', parameters('p'))]"}},
    )
    passed = {"p": {"value": "[concat(parameters('p'), '+passed')]"}}
    user = nsg("user", security_rule("r", 100, source="[reference('child').outputs.o.value]"))
    deployment = load(template(_nested("child", "inner", inner, passed), user, **OUTER))
    groups = {g.name: g for g in deployment.network_security_groups}
    assert set(groups) == {"user", "outerp+passed-innerv-child"}
    assert groups["user"].security_rules[0].source_address_prefix == "out-outerp+passed"


def test_inner_scope_deployment_reports_its_own_missing_parameter() -> None:
    inner = template(nsg("[parameters('p')]"), parameters={"p": {"type": "string"}})
    problems = problems_of(template(_nested("child", "inner", inner)))
    assert (problems[0].code, str(problems[0].at)) == (
        "InvalidTemplate",
        "/resources/0/properties/template/parameters/p",
    )
    assert "not provided" in problems[0].message


LINKED = template(
    nsg("[parameters('name')]", security_rule("ssh", "[parameters('priority')]")),
    parameters={"name": {"type": "string"}, "priority": {"type": "int", "defaultValue": 500}},
)


def _linking(uri: str, **parameters: Any) -> Json:
    props = {
        "mode": "Incremental",
        "templateLink": {"uri": uri},
        "parameters": {k: {"value": v} for k, v in parameters.items()},
    }
    return resource(DEPLOYMENTS, "linked", props)


def test_linked_template_is_resolved_and_its_pointers_name_its_file() -> None:
    calls: list[tuple[str, str | None]] = []

    def resolve(target: str, from_file: str | None) -> tuple[Any, str] | None:
        calls.append((target, from_file))
        return (LINKED, "nested/nsg.json") if target.endswith("/nested/nsg.json") else None

    doc = template(
        _linking(
            "[uri(deployment().properties.templateLink.uri, 'nested/nsg.json')]", name="linked-nsg"
        ),
        _linking("https://example.invalid/x/absent.json"),
    )
    doc["resources"][1]["name"] = "absent"
    deployment = load(
        doc,
        "azuredeploy.json",
        resolve_link=resolve,
        template_link="https://example.invalid/x/azuredeploy.json",
    )
    assert calls == [
        ("https://example.invalid/x/nested/nsg.json", "azuredeploy.json"),
        ("https://example.invalid/x/absent.json", "azuredeploy.json"),
    ]
    (group,) = deployment.network_security_groups
    assert (group.name, str(group.at), group.at.document if group.at else None) == (
        "linked-nsg",
        "/resources/0",
        "nested/nsg.json",
    )
    assert [(w.code, str(w.at), w.file) for w in deployment.warnings] == [
        ("LinkedTemplateMapped", "/resources/0/properties/templateLink", "azuredeploy.json"),
        ("LinkedTemplateNotFound", "/resources/1/properties/templateLink", "azuredeploy.json"),
    ]


def test_error_in_a_linked_template_names_the_linked_file() -> None:
    def resolve(target: str, from_file: str | None) -> tuple[Any, str]:
        return LINKED, "nested/nsg.json"

    doc = template(_linking("nested/nsg.json", name="n", priority=5000))
    (problem,) = problems_of(doc, resolve_link=resolve)
    assert (problem.code, str(problem.at), problem.file) == (
        "SecurityRuleInvalidPriority",
        "/resources/0/properties/securityRules/0/properties/priority",
        "nested/nsg.json",
    )


def test_linked_template_that_links_to_itself_stops_with_a_warning() -> None:
    looping = template(_linking("self.json"))

    def resolve(target: str, from_file: str | None) -> tuple[Any, str]:
        return looping, "self.json"

    deployment = load(looping, "self.json", resolve_link=resolve)
    assert [w.code for w in deployment.warnings] == ["LinkedTemplateCycle"]


# --- reference(), listKeys() and what is not emulated ---------------------------------------------
def test_reference_of_a_public_ip_gives_its_loopback_address_and_fqdn() -> None:
    expression = (
        "[concat(reference('pip').ipAddress, '_', reference('pip').dnsSettings.fqdn, '_', "
        "reference(resourceId('Microsoft.Network/publicIPAddresses', 'other'), '2023-09-01')"
        ".ipAddress, '_', "
        "reference('pip', '2023-09-01', 'Full').location)]"
    )
    lb = load_balancer(
        frontends=[
            {
                "name": "fe",
                "properties": {
                    "publicIPAddress": {
                        "id": resource_id("Microsoft.Network/publicIPAddresses", "pip")
                    }
                },
            }
        ]
    )
    doc = template(
        public_ip("other"), public_ip("pip", label="myapp"), lb, resource(STORAGE, expression)
    )
    # load balancer frontends take the first loopback addresses
    assert (
        name_of(load(doc)) == "127.0.0.1_myapp.westeurope.cloudapp.azure.com_127.0.0.2_westeurope"
    )
    addresses = {p.name: p.ip_address for p in load(doc).public_ip_addresses}
    assert addresses == {"pip": "127.0.0.1", "other": "127.0.0.2"}


def test_reference_outside_the_template_is_a_placeholder_with_a_warning() -> None:
    outside = "/subscriptions/x/resourceGroups/y/providers/Microsoft.Network/publicIPAddresses/far"
    group = nsg("n", security_rule("r", 100, source=f"[reference('{outside}').ipAddress]"))
    deployment = load(template(group))
    assert outside in (
        deployment.network_security_groups[0].security_rules[0].source_address_prefix or ""
    )
    (warning,) = deployment.warnings
    assert (warning.code, str(warning.at)) == (
        "ReferenceOutsideTemplate",
        "/resources/0/properties/securityRules/0/properties/sourceAddressPrefix",
    )


def test_list_keys_is_a_placeholder_with_a_warning() -> None:
    doc = template(
        resource(STORAGE, "stor"),
        resource(STORAGE, "[concat('k', listKeys('stor', '2021-01-01').keys[0].value)]"),
    )
    deployment = load(doc)
    assert deployment.not_emulated[1].name.startswith("k")
    assert warning_codes(deployment) == ["ListFunctionPlaceholder"]


def test_resources_lbsim_does_not_emulate_are_listed_with_their_pointers() -> None:
    doc = template(
        resource(STORAGE, "stor"),
        nsg("guard"),
        resource("Microsoft.Compute/availabilitySets", "set"),
        _nested("empty", "inner", template()),
    )
    deployment = load(doc)
    assert [(r.type, r.name, str(r.at)) for r in deployment.not_emulated] == [
        (STORAGE, "stor", "/resources/0"),
        ("Microsoft.Compute/availabilitySets", "set", "/resources/2"),
    ]
    assert [g.name for g in deployment.network_security_groups] == ["guard"]


# --- errors are gathered --------------------------------------------------------------------------
def test_problems_of_several_resources_are_reported_together() -> None:
    groups = nsg("guard", security_rule("bad", 5000))
    lb = load_balancer(nat_pools=[nat_pool("ssh", 50000, 50010, 70000)])
    bad_frontend = copy.deepcopy(lb)
    bad_frontend["name"] = "internal"
    bad_frontend["properties"] = {
        "frontendIPConfigurations": [internal_frontend(ip="[parameters('nope')]")]
    }
    doc = template(
        groups,
        public_ip(),
        vnet(),
        lb,
        bad_frontend,
        scale_set("vmss", -1),
        named("[copyIndex()]")["resources"][0],
    )
    found = where(problems_of(doc))
    assert found == {
        "SecurityRuleInvalidPriority": [
            "/resources/0/properties/securityRules/0/properties/priority"
        ],
        "InvalidLoadBalancerPort": [
            "/resources/3/properties/inboundNatPools/0/properties/backendPort"
        ],
        "InvalidTemplate": [
            "/resources/6/name",
            "/resources/4/properties/frontendIPConfigurations/0/properties/privateIPAddress",
        ],
        "InvalidParameter": ["/resources/5/sku/capacity"],
    }


def test_template_without_resources_loads_to_an_empty_deployment() -> None:
    deployment = load(template())
    assert deployment == Deployment(context=deployment.context)


def test_a_value_the_schema_rejects_is_reported_once() -> None:
    rule = security_rule("r", 200, "Maybe", protocol="Sometimes")
    problems = problems_of(template(nsg("guard", rule)))
    at = "/resources/0/properties/securityRules/0/properties"
    assert where(problems) == {
        "SecurityRuleInvalidAccess": [f"{at}/access"],
        "SecurityRuleInvalidProtocol": [f"{at}/protocol"],
    }


QUICKSTART = {
    "vmssName": {"type": "string", "maxLength": 9},
    "adminPassword": {"type": "securestring", "minLength": 12},
    "label": {"type": "string"},
}


def test_fill_missing_replaces_the_quickstart_pipelines_placeholders() -> None:
    """A quickstart parameters file holds GEN-... values for its test pipeline to replace:
    --fill-missing fills them as it fills a missing value, and says so where they are."""
    supplied = parameters_file(
        vmssName="GEN-UNIQUE-8", adminPassword="GEN-PASSWORD", label="GENOME"
    )
    doc = named("[concat(parameters('vmssName'), '|', parameters('label'))]", parameters=QUICKSTART)
    deployment = load(
        doc, parameters_file=supplied, parameters_file_name="p.json", fill_missing=True
    )
    vmss, label = name_of(deployment).split("|")
    assert 1 <= len(vmss) <= 9
    assert not vmss.startswith("GEN")
    assert label == "GENOME"  # not a placeholder: kept as given
    warned = {str(w.at): w for w in deployment.warnings}
    assert set(warned) == {"/parameters/vmssName/value", "/parameters/adminPassword/value"}
    assert {w.code for w in warned.values()} == {"ParameterValuePlaceholder"}
    assert {w.file for w in warned.values()} == {"p.json"}
    assert "'GEN-UNIQUE-8'" in warned["/parameters/vmssName/value"].message
    assert "secret placeholder" in warned["/parameters/adminPassword/value"].message


def test_without_fill_missing_a_placeholder_that_breaks_a_constraint_says_what_it_is() -> None:
    supplied = parameters_file(vmssName="GEN-UNIQUE-8", adminPassword="long enough pw", label="x")
    doc = named("n", parameters=QUICKSTART)
    (problem,) = problems_of(doc, parameters_file=supplied, parameters_file_name="p.json")
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/parameters/vmssName")
    assert "quickstart templates' test pipeline" in problem.message
    assert "--fill-missing" in problem.message
