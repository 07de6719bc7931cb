"""Loading as Azure does, round 2: UTF-16 files, ``deployment()``'s template, parameters and
hash, nullable parameters with allowed values, ``--fill-missing`` for user-defined types, and
messages that name a misspelt parameter or property."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from templates import (
    lb_rule,
    load,
    nat_pool,
    nat_rule,
    nsg,
    parameters_file,
    problems_of,
    security_rule,
    template,
    vmss_behind_lb,
)

from lbsim.api.files import read_json
from lbsim.arm.jsontext import load_json_text
from lbsim.arm.placeholders import placeholder_value
from lbsim.errors import Problem, TemplateInvalid
from lbsim.pointer import Pointer

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


# --- 5. messages: --param values and misspelt parameter names --------------------------------
TYPED = template(
    parameters={
        "instanceCount": {"type": "int", "defaultValue": 2},
        "enabled": {"type": "bool", "defaultValue": True},
        "settings": {"type": "object", "defaultValue": {}},
        "zones": {"type": "array", "defaultValue": []},
        "secret": {"type": "secureObject", "defaultValue": {}},
    }
)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("instanceCount", "two", "is not a valid Int: 'two' (expected a whole number such as 3)"),
        ("instanceCount", "2.5", "is not a valid Int: '2.5'"),
        ("instanceCount", "1_000", "is not a valid Int: '1_000'"),
        ("enabled", "yes", "is not a valid Bool: 'yes' (expected true or false)"),
        ("settings", "{a: 1}", "is not a valid Object: '{a: 1}' (expected an object in JSON"),
        ("settings", "{a: 1}", "the JSON breaks at character 2"),
        ("settings", "[1]", "is not a valid Object: '[1]' (expected an object in JSON, such as"),
        ("zones", "[1, 2", "is not a valid Array: '[1, 2' (expected an array in JSON"),
        ("zones", '{"a": 1}', "expected an array in JSON, such as [1, 2], not Object"),
        ("secret", "{oops", "is not a valid SecureObject: (a secret) (expected an object"),
    ],
)
def test_a_param_that_is_not_its_type_says_so_without_python_text(
    name: str, text: str, message: str
) -> None:
    (problem,) = problems_of(TYPED, cli_parameters={name: text})
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", f"/parameters/{name}")
    assert problem.message.startswith(f"The value of --param {name} is not a valid ")
    assert message in problem.message
    for python in ("invalid literal", "base 10", "Expecting", "line 1 column", "char "):
        assert python not in problem.message
    if name == "secret":
        assert text not in problem.message


def test_params_of_every_type_convert() -> None:

    doc = template(
        parameters=TYPED["parameters"],
        outputs={
            "all": {
                "type": "array",
                "value": (
                    "[createArray(parameters('instanceCount'), parameters('enabled'), "
                    "parameters('settings'), parameters('zones'))]"
                ),
            }
        },
    )
    cli = {"instanceCount": " -3 ", "enabled": "TRUE", "settings": '{"a": [1]}', "zones": "[1]"}
    deployment = load(doc, cli_parameters=cli)
    assert dict(deployment.outputs)["all"] == [-3, True, {"a": [1]}, [1]]


def test_a_misspelt_param_is_named_with_the_declared_one() -> None:
    (problem,) = problems_of(TYPED, cli_parameters={"instanceCout": "3"})
    assert problem.code == "InvalidTemplate"
    assert problem.message.startswith(
        "Parameter 'instanceCout' is not declared in the template; did you mean 'instanceCount'?"
    )


def test_a_misspelt_parameter_in_the_parameters_file_is_named_there() -> None:
    (problem,) = problems_of(
        TYPED, parameters_file=parameters_file(enabeld=False), parameters_file_name="p.json"
    )
    assert (problem.code, str(problem.at), problem.file) == (
        "InvalidTemplate",
        "/parameters/enabeld/value",
        "p.json",
    )
    assert "Parameter 'enabeld' is not declared in the template; did you mean 'enabled'?" in (
        problem.message
    )


def test_an_undeclared_parameter_like_none_declared_lists_them() -> None:
    (problem,) = problems_of(TYPED, cli_parameters={"location": "x"})
    assert "did you mean" not in problem.message
    assert "the template declares: instanceCount, enabled, settings, zones, secret" in (
        problem.message
    )


# --- 3. nullable parameters with allowed values ---------------------------------------------
def nullable_template(**declared: Any) -> Json:
    doc = template(
        parameters={"tier": {"type": "string", "nullable": True, **declared}},
        outputs={"tier": {"type": "string", "value": "[coalesce(parameters('tier'), 'none')]"}},
    )
    doc["languageVersion"] = "2.0"
    doc["resources"] = {}
    return doc


def test_a_nullable_parameter_with_allowed_values_and_no_value_is_null() -> None:

    doc = nullable_template(allowedValues=["Basic", "Standard"], minLength=5)
    deployment = load(doc)
    assert dict(deployment.outputs)["tier"] == "none"
    assert not [w for w in deployment.warnings if "tier" in w.message]
    assert dict(load(doc, cli_parameters={"tier": "Basic"}).outputs)["tier"] == "Basic"


def test_a_nullable_parameter_still_checks_a_value_it_is_given() -> None:
    doc = nullable_template(allowedValues=["Basic", "Standard"])
    (problem,) = problems_of(doc, cli_parameters={"tier": "Premium"})
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/parameters/tier")
    assert "'Premium'" in problem.message


# --- 4. --fill-missing and user-defined types -----------------------------------------------
AVM_DEFINITIONS: Json = {
    "portType": {"type": "int", "minValue": 1, "maxValue": 65535},
    "protocolType": {"type": "string", "allowedValues": ["Tcp", "Udp", "All"]},
    "lockType": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "nullable": True},
            "kind": {"type": "string", "allowedValues": ["CanNotDelete", "ReadOnly", "None"]},
        },
        "nullable": True,
    },
    "natPoolType": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 12},
            "frontendPortRangeStart": {"type": "int", "minValue": 50000, "maxValue": 65000},
            "backendPort": {"$ref": "#/definitions/portType"},
            "protocol": {"$ref": "#/definitions/protocolType"},
            "enableTcpReset": {"type": "bool", "nullable": True},
            "tags": {"type": "object", "nullable": True},
        },
    },
    "tcpProbeType": {"type": "object", "properties": {"port": {"$ref": "#/definitions/portType"}}},
    "httpProbeType": {"type": "object", "properties": {"requestPath": {"type": "string"}}},
    "settingsType": {
        "type": "object",
        "properties": {
            "natPools": {
                "type": "array",
                "items": {"$ref": "#/definitions/natPoolType"},
                "minLength": 1,
            },
            "zones": {"type": "array", "items": {"type": "int"}, "nullable": True},
            "pair": {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "int", "minValue": 5}],
                "items": False,
            },
            "probe": {
                "type": "object",
                "discriminator": {
                    "propertyName": "protocol",
                    "mapping": {
                        "Tcp": {"$ref": "#/definitions/tcpProbeType"},
                        "Http": {"$ref": "#/definitions/httpProbeType"},
                    },
                },
            },
            "lock": {"$ref": "#/definitions/lockType"},
            "diagnostics": {"type": "array", "items": {"$ref": "#/definitions/lockType"}},
        },
    },
}


def avm_style_template() -> Json:
    """A load balancer module in the style of the Azure Verified Modules: its settings are
    one parameter of a user-defined type, and its NAT pool is read from it."""
    pool = "parameters('settings').natPools[0]"
    nat_pool = {
        "name": f"[{pool}.name]",
        "properties": {
            "frontendIPConfiguration": {
                "id": "[resourceId('Microsoft.Network/loadBalancers/frontendIPConfigurations', "
                "parameters('name'), 'fe')]"
            },
            "protocol": f"[{pool}.protocol]",
            "frontendPortRangeStart": f"[{pool}.frontendPortRangeStart]",
            "frontendPortRangeEnd": f"[add({pool}.frontendPortRangeStart, 9)]",
            "backendPort": f"[{pool}.backendPort]",
        },
    }
    balancer = {
        "type": "Microsoft.Network/loadBalancers",
        "apiVersion": "2023-09-01",
        "name": "[parameters('name')]",
        "location": "[resourceGroup().location]",
        "sku": {"name": "[parameters('skuName')]"},
        "properties": {
            "frontendIPConfigurations": [
                {
                    "name": "fe",
                    "properties": {
                        "publicIPAddress": {
                            "id": "[resourceId('Microsoft.Network/publicIPAddresses', 'pip')]"
                        }
                    },
                }
            ],
            "inboundNatPools": [nat_pool],
        },
    }
    pip = {
        "type": "Microsoft.Network/publicIPAddresses",
        "apiVersion": "2023-09-01",
        "name": "pip",
        "location": "[resourceGroup().location]",
        "sku": {"name": "Standard"},
        "properties": {"publicIPAllocationMethod": "Static"},
    }
    doc = template(
        parameters={
            "name": {"type": "string", "minLength": 3, "maxLength": 8},
            "skuName": {"type": "string", "allowedValues": ["Standard", "Basic"]},
            "settings": {"$ref": "#/definitions/settingsType"},
            "lock": {"$ref": "#/definitions/lockType"},
        },
        outputs={"settings": {"type": "object", "value": "[parameters('settings')]"}},
    )
    doc.update(languageVersion="2.0", definitions=AVM_DEFINITIONS)
    doc["resources"] = {"pip": pip, "lb": balancer}
    return doc


def test_fill_missing_gives_a_user_defined_type_a_value_of_its_shape() -> None:
    deployment = load(avm_style_template(), fill_missing=True)
    settings = dict(deployment.outputs)["settings"]
    assert settings == {
        "natPools": [
            {
                "name": "lbsimnamexxx",  # minLength 12
                "frontendPortRangeStart": 50000,
                "backendPort": 2,
                "protocol": "Tcp",
            }
        ],
        "pair": ["lbsimpair0", 5],
        "probe": {"port": 2, "protocol": "Tcp"},
        "diagnostics": [],  # not nullable, but may be empty
    }
    (balancer,) = deployment.load_balancers
    (pool,) = balancer.inbound_nat_pools
    assert (pool.frontend_port_range_start, pool.frontend_port_range_end) == (50000, 50009)
    filled = {str(w.at) for w in deployment.warnings if w.code == "ParameterValuePlaceholder"}
    assert filled == {"/parameters/name", "/parameters/skuName", "/parameters/settings"}


def test_without_fill_missing_a_typed_parameter_is_still_required() -> None:
    problems = problems_of(avm_style_template())
    assert {(p.code, str(p.at)) for p in problems} == {
        ("InvalidTemplate", "/parameters/name"),
        ("InvalidTemplate", "/parameters/skuName"),
        ("InvalidTemplate", "/parameters/settings"),
    }


def test_a_type_that_refers_to_itself_gets_a_bounded_placeholder() -> None:

    definitions = {
        "node": {"type": "object", "properties": {"child": {"$ref": "#/definitions/node"}}}
    }
    value = placeholder_value({"$ref": "#/definitions/node"}, "tree", definitions)
    depth = 0
    while isinstance(value, dict) and "child" in value and depth < 100:
        value, depth = value["child"], depth + 1
    assert value == {}
    assert depth < 100


# --- 2. deployment(): template, parameters and templateHash ---------------------------------
DEPLOYMENT_OUTPUTS: Json = {
    "name": {"type": "string", "value": "[deployment().name]"},
    "template": {"type": "object", "value": "[deployment().properties.template]"},
    "parameters": {"type": "object", "value": "[deployment().properties.parameters]"},
    "hash": {"type": "string", "value": "[deployment().properties.templateHash]"},
}


def inner_template(tag: str) -> Json:
    return template(
        parameters={"size": {"type": "int"}, "tag": {"type": "string", "defaultValue": tag}},
        outputs=DEPLOYMENT_OUTPUTS,
    )


def nested_deployment(name: str, **properties: Any) -> Json:
    return {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2022-09-01",
        "name": name,
        "properties": {"mode": "Incremental", **properties},
    }


def root_with_deployments() -> Json:
    inline = nested_deployment(
        "inline",
        expressionEvaluationOptions={"scope": "inner"},
        template=inner_template("inline"),
        parameters={"size": {"value": "[add(parameters('count'), 1)]"}},
    )
    linked = nested_deployment(
        "linked",
        templateLink={"relativePath": "linked.json"},
        parameters={"size": {"value": 7}},
    )
    outputs = dict(DEPLOYMENT_OUTPUTS)
    for name in ("inline", "linked"):
        outputs[name] = {"type": "object", "value": f"[reference('{name}').outputs]"}
    return template(
        inline,
        linked,
        parameters={"count": {"type": "int"}, "label": {"type": "string", "defaultValue": "x"}},
        outputs=outputs,
    )


def load_with_link(doc: Json, **options: Any) -> dict[str, Any]:
    linked = inner_template("linked")

    def resolve(target: str, from_file: str | None) -> tuple[Any, str] | None:
        return (linked, "linked.json") if target == "linked.json" else None

    return dict(load(doc, resolve_link=resolve, **options).outputs)


def test_deployment_has_the_template_and_the_parameters_as_given() -> None:
    doc = root_with_deployments()
    outputs = load_with_link(
        doc,
        parameters_file=parameters_file(count=2),
        parameters_file_name="p.json",
        cli_parameters={"label": "from-cli"},
    )
    assert outputs["template"] == doc
    assert outputs["parameters"] == {"count": {"value": 2}, "label": {"value": "from-cli"}}
    assert outputs["hash"].isdigit()


def test_nested_and_linked_deployments_each_see_their_own() -> None:
    doc = root_with_deployments()
    outputs = load_with_link(doc, cli_parameters={"count": "2"})
    inline, linked = outputs["inline"], outputs["linked"]
    assert inline["name"]["value"] == "inline"
    assert inline["template"]["value"] == inner_template("inline")
    assert inline["parameters"]["value"] == {"size": {"value": 3}}
    assert linked["name"]["value"] == "linked"
    assert linked["template"]["value"] == inner_template("linked")
    assert linked["parameters"]["value"] == {"size": {"value": 7}}
    hashes = {outputs["hash"], inline["hash"]["value"], linked["hash"]["value"]}
    assert len(hashes) == 3  # three templates, three hashes


def test_the_template_hash_is_stable_and_follows_the_content() -> None:
    doc = root_with_deployments()
    first = load_with_link(doc, cli_parameters={"count": "2"})["hash"]
    # the same content, keys in another order, other parameter values: the same hash
    reordered = dict(reversed(list(root_with_deployments().items())))
    assert load_with_link(reordered, cli_parameters={"count": "5"})["hash"] == first
    changed = root_with_deployments()
    changed["contentVersion"] = "1.0.0.1"
    assert load_with_link(changed, cli_parameters={"count": "2"})["hash"] != first


def test_a_language_version_2_template_sees_the_documented_subset() -> None:
    doc = template(
        parameters={"count": {"type": "int", "defaultValue": 1}},
        outputs={"deployment": {"type": "object", "value": "[deployment()]"}},
    )
    doc.update(languageVersion="2.0", resources={})
    outputs = dict(load(doc, template_link="file:///t/azuredeploy.json").outputs)
    assert outputs["deployment"] == {
        "name": "deployment1",
        "properties": {
            "template": {"contentVersion": "1.0.0.0"},
            "templateLink": {"uri": "file:///t/azuredeploy.json"},
        },
    }


# --- 5. misspelt property names ---------------------------------------------------------------
def misspelt(doc: Json) -> dict[str, str]:
    """The UnknownPropertyName warnings of ``doc``: pointer -> message."""
    deployment = load(doc)
    return {str(w.at): w.message for w in deployment.warnings if w.code == "UnknownPropertyName"}


def test_a_misspelt_nat_pool_property_is_a_warning_with_a_suggestion() -> None:
    pool = nat_pool("ssh", 50000, 50119, 22)
    pool["properties"]["idleTimeoutInMinuts"] = 4
    pool["propertes"] = {}
    doc = vmss_behind_lb(2, nat_pools=[pool])
    assert misspelt(doc) == {
        "/resources/2/properties/inboundNatPools/0/properties/idleTimeoutInMinuts": (
            "'idleTimeoutInMinuts' is not a property of inboundNatPools; did you mean "
            "'idleTimeoutInMinutes'? Azure ignores properties it does not know, so this one "
            "has no effect."
        ),
        "/resources/2/properties/inboundNatPools/0/propertes": (
            "'propertes' is not a property of inboundNatPools; did you mean 'properties'? "
            "Azure ignores properties it does not know, so this one has no effect."
        ),
    }


def test_a_misspelt_required_property_is_an_error_and_named_as_a_warning() -> None:
    pool = nat_pool("ssh", 50000, 50119, 22)
    pool["properties"]["frontendPortRangeStrat"] = pool["properties"].pop("frontendPortRangeStart")
    problems = problems_of(vmss_behind_lb(2, nat_pools=[pool]))
    at = "/resources/2/properties/inboundNatPools/0/properties"
    assert {(p.code, str(p.at)) for p in problems} == {
        ("InvalidLoadBalancerPort", f"{at}/frontendPortRangeStart")
    }
    pool["properties"]["frontendPortRangeStart"] = 50000  # now valid: only the warning stays
    warnings = misspelt(vmss_behind_lb(2, nat_pools=[pool]))
    assert warnings[f"{at}/frontendPortRangeStrat"].startswith(
        "'frontendPortRangeStrat' is not a property of inboundNatPools; did you mean "
        "'frontendPortRangeStart'?"
    )


def test_misspelt_names_are_found_in_every_object_that_is_checked() -> None:
    rule = security_rule("ssh", 100, port="22")
    rule["properties"]["destinationPortRnage"] = "22"
    doc = vmss_behind_lb(2)
    balancer = doc["resources"][2]
    balancer["properties"]["frontendIPConfigurations"][0]["properties"]["publicIPAdress"] = {}
    web, nat = lb_rule("web", 80, 80), nat_rule("r", 22, port=50200)
    web["properties"]["backendPrt"] = 80
    nat["properties"]["enableTcpRest"] = True
    balancer["properties"]["loadBalancingRules"] = [web]
    balancer["properties"]["inboundNatRules"] = [nat]
    balancer["properties"]["probes"] = [
        {"name": "p", "properties": {"protocol": "Tcp", "port": 80, "intervalInSecond": 5}}
    ]
    profile = doc["resources"][3]["properties"]["virtualMachineProfile"]["networkProfile"]
    profile["healthProbes"] = {}
    nic = profile["networkInterfaceConfigurations"][0]["properties"]
    nic["enableAcceleratedNetworkng"] = True
    nic["ipConfigurations"][0]["properties"]["loadBalancerInboundNatPool"] = []
    doc["resources"].append(nsg("nsg", rule))
    found = misspelt(doc)
    owners = {
        pointer.rsplit("/", 1)[-1]: message.split(";")[0] for pointer, message in found.items()
    }
    assert owners == {
        "publicIPAdress": "'publicIPAdress' is not a property of frontendIPConfigurations",
        "backendPrt": "'backendPrt' is not a property of loadBalancingRules",
        "intervalInSecond": "'intervalInSecond' is not a property of probes",
        "enableTcpRest": "'enableTcpRest' is not a property of inboundNatRules",
        "healthProbes": "'healthProbes' is not a property of networkProfile",
        "enableAcceleratedNetworkng": (
            "'enableAcceleratedNetworkng' is not a property of networkInterfaceConfigurations"
        ),
        "loadBalancerInboundNatPool": (
            "'loadBalancerInboundNatPool' is not a property of ipConfigurations"
        ),
        "destinationPortRnage": "'destinationPortRnage' is not a property of securityRules",
    }


def test_known_azure_properties_and_unrelated_names_give_no_warning() -> None:
    pool = nat_pool("ssh", 50000, 50119, 22)
    pool["properties"]["provisioningState"] = "Succeeded"  # Azure's, not checked by lbsim
    pool["properties"]["ENABLETCPRESET"] = True  # names match in any letter case
    pool["properties"]["comment"] = "far from every known name"
    doc = vmss_behind_lb(2, nat_pools=[pool])
    nic = doc["resources"][3]["properties"]["virtualMachineProfile"]["networkProfile"]
    nic["networkInterfaceConfigurations"][0]["properties"]["deleteOption"] = "Delete"
    assert misspelt(doc) == {}


def test_a_misspelt_name_in_a_child_security_rule_is_found() -> None:
    child: Json = {
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "apiVersion": "2023-09-01",
        "name": "nsg/ssh",
        "dependsOn": ["[resourceId('Microsoft.Network/networkSecurityGroups', 'nsg')]"],
        "properties": {**security_rule("ssh", 200)["properties"], "sourcePortRanges ": ["1"]},
    }
    child["properties"]["priorty"] = 300
    doc = template(nsg("nsg"), child)
    assert misspelt(doc) == {
        "/resources/1/properties/priorty": (
            "'priorty' is not a property of securityRules; did you mean 'priority'? Azure "
            "ignores properties it does not know, so this one has no effect."
        ),
        "/resources/1/properties/sourcePortRanges ": (
            "'sourcePortRanges ' is not a property of securityRules; did you mean "
            "'sourcePortRanges'? Azure ignores properties it does not know, so this one has no "
            "effect."
        ),
    }
