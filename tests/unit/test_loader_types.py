"""languageVersion 2.0 parameters: user-defined types (``$ref`` into ``definitions``) and
``nullable``, as Bicep compiles them."""

from __future__ import annotations

from typing import Any

import pytest

from lbsim.arm.loader import LoadOptions, load_template
from lbsim.errors import TemplateInvalid

Json = dict[str, Any]
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"


def template(parameters: Json, resources: Json, definitions: Json | None = None) -> Json:
    return {
        "$schema": SCHEMA,
        "languageVersion": "2.0",
        "contentVersion": "1.0.0.0",
        "definitions": definitions or {},
        "parameters": parameters,
        "resources": resources,
    }


def nsg(name: str, priority: str) -> Json:
    rule = {
        "name": "r",
        "properties": {
            "priority": priority,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "sourceAddressPrefix": "*",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": "22",
        },
    }
    return {
        "type": "Microsoft.Network/networkSecurityGroups",
        "apiVersion": "2023-09-01",
        "name": name,
        "properties": {"securityRules": [rule]},
    }


DEFINITIONS = {
    "ruleType": {
        "type": "object",
        "properties": {"priority": {"type": "int"}},
    },
    "priorityType": {"type": "int", "minValue": 100, "maxValue": 4096},
    "lockType": {"type": "object", "nullable": True},
}


def test_a_ref_type_takes_the_definitions_type_and_constraints() -> None:
    doc = template(
        {"priority": {"$ref": "#/definitions/priorityType", "defaultValue": 300}},
        {"nsg": nsg("n", "[parameters('priority')]")},
        DEFINITIONS,
    )
    deployment = load_template(doc, "t.json")
    assert deployment.network_security_groups[0].security_rules[0].priority == 300
    doc["parameters"]["priority"]["defaultValue"] = 5000
    with pytest.raises(TemplateInvalid) as caught:
        load_template(doc, "t.json")
    ((code, at),) = {(p.code, str(p.at)) for p in caught.value.problems}
    assert (code, at) == ("InvalidTemplate", "/parameters/priority")


def test_a_nullable_parameter_without_a_value_is_null() -> None:
    doc = template(
        {"lock": {"$ref": "#/definitions/lockType"}, "tags": {"type": "object", "nullable": True}},
        {
            "nsg": nsg("n", "100"),
            "lock": {
                "condition": "[not(empty(coalesce(parameters('lock'), createObject())))]",
                "type": "Microsoft.Authorization/locks",
                "apiVersion": "2020-05-01",
                "scope": "[format('Microsoft.Network/networkSecurityGroups/{0}', 'n')]",
                "name": "[coalesce(tryGet(parameters('lock'), 'name'), 'lock-n')]",
                "properties": {"level": "CanNotDelete"},
            },
        },
        DEFINITIONS,
    )
    deployment = load_template(doc, "t.json")
    assert deployment.warnings == ()  # no placeholder: null is the value
    assert deployment.not_emulated == ()  # the lock's condition is false


def test_a_ref_to_a_missing_definition_is_an_error_at_the_ref() -> None:
    doc = template({"x": {"$ref": "#/definitions/nope"}}, {"nsg": nsg("n", "100")}, DEFINITIONS)
    with pytest.raises(TemplateInvalid) as caught:
        load_template(doc, "t.json", LoadOptions(fill_missing=True))
    ((code, at),) = {(p.code, str(p.at)) for p in caught.value.problems}
    assert (code, at) == ("InvalidTemplate", "/parameters/x/$ref")


def test_an_existing_resource_is_referenced_not_deployed() -> None:
    existing = {
        "existing": True,
        "type": "Microsoft.Network/networkSecurityGroups",
        "apiVersion": "2023-09-01",
        "name": "shared",
    }
    doc = template({}, {"shared": existing, "mine": nsg("mine", "100")})
    deployment = load_template(doc, "t.json")
    assert [n.name for n in deployment.network_security_groups] == ["mine"]


def test_an_unsupported_language_version_is_named() -> None:
    doc = template({}, {"nsg": nsg("n", "100")})
    doc["languageVersion"] = "1.9-experimental"
    with pytest.raises(TemplateInvalid) as caught:
        load_template(doc, "t.json")
    (problem,) = caught.value.problems
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/languageVersion")
    assert "'1.9-experimental' is not supported" in problem.message
