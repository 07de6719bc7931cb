"""Secure parameters and outputs are never shown (issue 14 part 4, the template side): a
recognisable secret goes through every path that could print it, and no output holds it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lbsim.arm.loader import LoadOptions, load_template
from lbsim.arm.secrets import SecureValue
from lbsim.cli import main
from lbsim.errors import LbsimError, TemplateInvalid

SECRET = "S3cr3t-lbsim-XYZ"
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
PARAMETERS_SCHEMA = (
    "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
)
Json = dict[str, Any]


def doc(parameters: Json, **parts: Any) -> Json:
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "parameters": parameters,
        "resources": [],
        **parts,
    }


def scale_set(capacity: str) -> Json:
    return {
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "apiVersion": "2023-03-01",
        "name": "web",
        "location": "westus",
        "sku": {"name": "Standard_B1s", "capacity": capacity},
        "properties": {"overprovision": "[parameters('s')]"},
    }


SECURE_STRING = {"s": {"type": "securestring"}}
SECURE_OBJECT = {"s": {"type": "secureObject"}}
# (template, --param value) pairs, each failing on the secret in its own way
CASES: dict[str, tuple[Json, str]] = {
    "allowedValues": (doc({"s": {"type": "securestring", "allowedValues": ["a", "b"]}}), SECRET),
    "maxLength": (doc({"s": {"type": "securestring", "maxLength": 3}}), SECRET),
    "int() of it": (
        doc(SECURE_STRING, outputs={"o": {"type": "int", "value": "[int(parameters('s'))]"}}),
        SECRET,
    ),
    "json() of it": (
        doc(SECURE_STRING, outputs={"o": {"type": "object", "value": "[json(parameters('s'))]"}}),
        SECRET,
    ),
    "a missing property": (
        doc(SECURE_OBJECT, outputs={"o": {"type": "string", "value": "[parameters('s').nothere]"}}),
        json.dumps({SECRET: SECRET}),
    ),
    "a schema error": (doc(SECURE_STRING, resources=[scale_set("[parameters('s')]")]), SECRET),
    "a resource name": (
        doc(
            SECURE_STRING, resources=[{**scale_set("1"), "name": "[concat(parameters('s'), '/x')]"}]
        ),
        SECRET,
    ),
    "a copy count": (
        doc(
            SECURE_STRING,
            resources=[{**scale_set("1"), "copy": {"name": "c", "count": "[parameters('s')]"}}],
        ),
        SECRET,
    ),
    "--param JSON": (doc(SECURE_OBJECT), '{"k": "' + SECRET + '"'),
    "--param type": (doc(SECURE_OBJECT), json.dumps([SECRET])),
}


@pytest.mark.parametrize("case", list(CASES))
def test_no_error_message_shows_a_secure_value(case: str) -> None:
    template, given = CASES[case]
    with pytest.raises(TemplateInvalid) as caught:
        load_template(template, "t.json", LoadOptions(cli_parameters={"s": given}))
    shown = "\n".join(str(p) for p in caught.value.problems) + str(caught.value)
    assert caught.value.problems
    assert SECRET not in shown
    assert "S3cr3t" not in shown


def test_a_wrong_type_in_the_parameters_file_does_not_show_the_value() -> None:
    template = doc(SECURE_OBJECT)
    values = {"$schema": PARAMETERS_SCHEMA, "parameters": {"s": {"value": SECRET}}}
    with pytest.raises(TemplateInvalid) as caught:
        load_template(template, "t.json", LoadOptions(parameters_file=values))
    problem = caught.value.problems[0]
    assert (problem.code, str(problem.at)) == ("InvalidTemplate", "/parameters/s/value")
    assert SECRET not in str(problem)


def test_a_secure_output_has_no_value() -> None:
    outputs = {
        "secret": {"type": "securestring", "value": "[parameters('s')]"},
        "obj": {"type": "secureObject", "value": {"k": "[parameters('s')]"}},
        "plain": {"type": "string", "value": "shown"},
    }
    deployment = load_template(
        doc(SECURE_STRING, outputs=outputs), "t.json", LoadOptions(cli_parameters={"s": SECRET})
    )
    found = dict(deployment.outputs)
    assert found["secret"] == SecureValue("securestring")
    assert found["obj"] == SecureValue("secureObject")
    assert found["plain"] == "shown"
    assert SECRET not in repr(deployment)


def test_validate_prints_no_secure_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outputs = {
        "secret": {"type": "securestring", "value": "[parameters('s')]"},
        "echo": {"type": "string", "value": "[parameters('n')]"},
    }
    template = doc({**SECURE_STRING, "n": {"type": "string"}}, outputs=outputs)
    path = tmp_path / "t.json"
    path.write_text(json.dumps(template))
    code = main(["validate", str(path), "--param", f"s={SECRET}", "--param", "n=visible"])
    out = capsys.readouterr()
    assert code == 0
    assert "output secret: (securestring: no value shown)" in out.out
    assert "output echo: visible" in out.out
    assert SECRET not in out.out + out.err


def test_a_param_without_a_name_does_not_show_its_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc(SECURE_STRING)))
    code = main(["validate", str(path), "--param", f"={SECRET}"])
    out = capsys.readouterr()
    assert code != 0
    assert "InvalidParameterArgument" in out.out + out.err
    assert SECRET not in out.out + out.err


def test_an_invalid_template_run_through_validate_does_not_show_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template, given = CASES["a schema error"]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(template))
    code = main(["validate", str(path), "--param", f"s={given}"])
    out = capsys.readouterr()
    assert code == 2
    assert "t.json#/resources/0" in out.out + out.err
    assert SECRET not in out.out + out.err


def test_warnings_do_not_show_the_secret() -> None:
    template = doc(
        SECURE_STRING,
        outputs={"o": {"type": "object", "value": "[reference(parameters('s'))]"}},
    )
    try:
        deployment = load_template(template, "t.json", LoadOptions(cli_parameters={"s": SECRET}))
    except LbsimError as error:  # pragma: no cover - the point is what is shown
        pytest.fail(str(error))
    assert deployment.warnings
    assert all(SECRET not in str(w) for w in deployment.warnings)
