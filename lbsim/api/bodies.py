"""What a request may carry: JSON Schemas (draft 2020-12) for bodies and query strings.

Every schema closes its objects (``additionalProperties: false``), so a misspelt field is an
error naming it, never silently ignored. All problems of a request are reported at once, each
with its ``target``: the JSON path of the field (``$.capacity``) for a body, the parameter's
name for a query string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator, ValidationError

from lbsim.api.replies import Detail, Refused
from lbsim.dataplane.faults import ATTRIBUTES, FaultType, Stream

BODY_LIMIT = 1 << 20  # bytes; every body the API takes is a few dozen

# A scale set holds up to 1,000 instances (https://learn.microsoft.com/en-us/azure/
# virtual-machine-scale-sets/overview).
CAPACITY: dict[str, Any] = {
    "type": "object",
    "properties": {"capacity": {"type": "integer", "minimum": 0, "maximum": 1000}},
    "required": ["capacity"],
    "additionalProperties": False,
}
NOTHING: dict[str, Any] = {"type": "object", "additionalProperties": False}
# As Azure's instance model spells it: properties.protectionPolicy.protectFromScaleIn.
PROTECTION: dict[str, Any] = {
    "type": "object",
    "properties": {"protectFromScaleIn": {"type": "boolean"}},
    "required": ["protectFromScaleIn"],
    "additionalProperties": False,
}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
CHECK: dict[str, Any] = {
    "type": "object",
    "properties": {
        "source": {"type": "string", "minLength": 1},
        "frontendPort": _PORT,
        "destination": {"type": "string", "minLength": 1},
        "protocol": {"type": "string"},  # Tcp or Udp in any letter case
        "frontend": {"type": "string", "minLength": 1},
    },
    "required": ["source"],
    "additionalProperties": False,
}


def _attributes(kind: FaultType) -> dict[str, Any]:
    """The attributes a fault type takes (Toxiproxy's names), each a number not below 0."""
    known = ATTRIBUTES[kind]
    return {
        "type": "object",
        "properties": {
            key: {"type": "integer" if spec.integer else "number", "minimum": 0}
            for key, spec in known.items()
        },
        "required": [key for key, spec in known.items() if spec.default is None],
        "additionalProperties": False,
    }


# A toxic as Toxiproxy's API takes it (name, type, stream, toxicity, attributes), with lbsim's
# target and seed; the attributes a type takes are checked against that type.
FAULT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,100}$"},
        "type": {"enum": [kind.value for kind in FaultType]},
        "stream": {"enum": [way.value for way in Stream]},
        "toxicity": {"type": "number", "minimum": 0, "maximum": 1},
        "seed": {"type": "integer"},
        "attributes": {"type": "object"},
        "target": {
            "type": "object",
            "properties": {
                "frontendPort": _PORT,
                "rule": {"type": "string", "minLength": 1},
                "instance": {"type": "string", "minLength": 1},
            },
            "additionalProperties": False,
        },
    },
    "required": ["type"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"type": {"const": kind.value}}, "required": ["type"]},
            "then": {"properties": {"attributes": _attributes(kind)}},
        }
        for kind in FaultType
    ],
}
# A bastion tunnel, as ``az network bastion tunnel`` asks for one: the target instance
# (web/1, or a VM's name), its port, the local port (0: a free one) and which bastion host;
# with leaseSeconds, the tunnel closes once that long passes without a renewal.
TUNNEL: dict[str, Any] = {
    "type": "object",
    "properties": {
        "target": {"type": "string", "minLength": 1},
        "resourcePort": _PORT,
        "port": {"type": "integer", "minimum": 0, "maximum": 65535},
        "bastion": {"type": "string", "minLength": 1},
        "leaseSeconds": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
    },
    "required": ["target", "resourcePort"],
    "additionalProperties": False,
}
RULES_QUERY: dict[str, Any] = {
    "type": "object",
    "properties": {
        "instance": {"type": "string", "minLength": 1},
        "direction": {"enum": ["Inbound", "Outbound"]},
    },
    "required": ["instance"],
    "additionalProperties": False,
}


def parse_body(raw: bytes, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The body as JSON, checked against ``schema``; an empty body is ``{}``."""
    if not raw.strip():
        document: Any = {}
    else:
        try:
            document = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError:
            raise _bad_body("the body is not UTF-8 text") from None
        except (json.JSONDecodeError, ValueError) as error:
            raise _bad_body(f"the body is not JSON: {error}") from None
    _check(document, schema, "InvalidRequestContent", _json_path)
    return dict(document)


def parse_query(query: Mapping[str, list[str]], schema: Mapping[str, Any]) -> dict[str, str]:
    """A query string's parameters, each given once, checked against ``schema``."""
    twice = [
        Detail("InvalidQueryParameterValue", f"{name}: given {len(values)} times", name)
        for name, values in query.items()
        if len(values) > 1
    ]
    if twice:
        raise _refused(twice)
    document = {name: values[0] for name, values in query.items()}
    _check(document, schema, "InvalidQueryParameterValue", _parameter)
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _bad_body(message: str) -> Refused:
    return Refused(400, "InvalidRequestContent", message, "$")


def _check(document: Any, schema: Mapping[str, Any], code: str, name: Any) -> None:
    details = _details(document, schema, code, name)
    if details:
        raise _refused(details)


def _details(document: Any, schema: Mapping[str, Any], code: str, name: Any) -> list[Detail]:
    validator = Draft202012Validator(schema)
    return [
        Detail(code, f"{target}: {message}", target)
        for error in sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path])
        for target, message in _explain(error, name)
    ]


def fault_problems(document: Any) -> list[Detail]:
    """What is wrong with a fault's JSON (the config file's ``[[faults]]`` reads it too)."""
    return _details(document, FAULT, "InvalidFault", _json_path)


def _refused(details: list[Detail]) -> Refused:
    first = details[0]
    return Refused(400, first.code, first.message, first.target, details=details)


def _explain(error: ValidationError, name: Any) -> list[tuple[str, str]]:
    """(target, message) for one schema error: a missing or unknown field is named itself,
    not the object that lacks or holds it."""
    path = list(error.absolute_path)
    if error.validator == "required":
        missing = [p for p in error.validator_value if p not in error.instance]
        return [(name([*path, p]), "is required") for p in missing]
    if error.validator == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(known))
        hint = f"; known: {', '.join(known)}" if known else ""
        return [(name([*path, p]), f"is not a known field{hint}") for p in extra]
    return [(name(path), error.message)]


def _json_path(path: list[Any]) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)


def _parameter(path: list[Any]) -> str:
    return ".".join(str(p) for p in path) or "?"
