"""The root template's outputs are evaluated, as Azure does at the end of a deployment."""

from __future__ import annotations

from typing import Any

import pytest

from lbsim.arm.loader import load_template
from lbsim.errors import TemplateInvalid

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
PIP = {
    "type": "Microsoft.Network/publicIPAddresses",
    "apiVersion": "2023-09-01",
    "name": "pip",
    "location": "westus",
    "properties": {
        "publicIPAllocationMethod": "Static",
        "dnsSettings": {"domainNameLabel": "demo"},
    },
}


def with_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    return {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "resources": [PIP], "outputs": outputs}


def test_outputs_see_runtime_values_of_resources() -> None:
    doc = with_outputs(
        {
            "fqdn": {"type": "string", "value": "[reference('pip').dnsSettings.fqdn]"},
            "ip": {"type": "string", "value": "[reference('pip').ipAddress]"},
        }
    )
    outputs = dict(load_template(doc, "t.json").outputs)
    assert outputs == {"fqdn": "demo.westus.cloudapp.azure.com", "ip": "127.0.0.1"}


def test_output_copy_loops_and_conditions() -> None:
    doc = with_outputs(
        {
            "ports": {"type": "array", "copy": {"count": 3, "input": "[add(50000, copyIndex())]"}},
            "hidden": {"type": "string", "condition": "[equals(1, 2)]", "value": "no"},
        }
    )
    assert dict(load_template(doc, "t.json").outputs) == {"ports": [50000, 50001, 50002]}


def test_an_output_that_fails_is_an_error_at_the_output() -> None:
    doc = with_outputs({"bad": {"type": "string", "value": "[reference('pip').nope]"}})
    with pytest.raises(TemplateInvalid) as caught:
        load_template(doc, "t.json")
    ((code, at),) = {(p.code, str(p.at)) for p in caught.value.problems}
    assert (code, at) == ("InvalidTemplate", "/outputs/bad/value")
