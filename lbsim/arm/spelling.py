"""Warnings for property names that are probably misspelt.

Azure ignores a property it does not know in most places (lbsim's schemas, as lenient, let
unknown properties pass), so ``frontendPortRangeStrat`` silently does nothing and the pool
fails later for want of ``frontendPortRangeStart``. The objects whose names are worth
checking (load balancer frontends, NAT pools and rules, rules and probes, security rules, a
scale set's network profile) carry ``x-lbsim-known-properties`` in their schema: the names
Azure knows there besides those the schema checks. A name of such an object that is none of
them but close to one is reported, as a warning, with the one it resembles.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from lbsim.arm.schema import JsonPath, SchemaViolation, resource_schema


def misspelt_properties(resource: Mapping[str, Any]) -> list[SchemaViolation]:
    """Property names of an evaluated resource that are close to a known one, for warnings.

    Azure ignores a property it does not know in most places, so a misspelt name silently
    does nothing. A schema object with ``x-lbsim-known-properties`` (the names Azure knows
    there besides those the schema checks) has its names compared with the known ones; a
    name within a small edit distance of one (``difflib.get_close_matches``) is reported
    with it."""
    kind = next((value for key, value in resource.items() if str(key).lower() == "type"), None)
    schema = resource_schema(kind)
    if schema is None or not isinstance(kind, str):
        return []
    found: list[SchemaViolation] = []
    _near_misses(schema, resource, (), kind.rsplit("/", 1)[-1], found)
    return found


def _near_misses(
    schema: Any, value: Any, path: JsonPath, owner: str, found: list[SchemaViolation]
) -> None:
    if not isinstance(schema, dict):
        return
    if isinstance(value, list):
        items = schema.get("items")
        for i, item in enumerate(value):
            _near_misses(items, item, (*path, i), owner, found)
        return
    if not isinstance(value, Mapping):
        return
    properties = _properties_of(schema)
    known = schema.get("x-lbsim-known-properties")
    if isinstance(known, list):
        names = {str(name).lower(): str(name) for name in [*properties.values(), *known]}
        for key in value:
            if isinstance(key, str) and key.lower() not in names:
                close = difflib.get_close_matches(key.lower(), names, n=1, cutoff=0.8)
                if close:
                    found.append(_misspelt((*path, key), owner, names[close[0]]))
    for key, item in value.items():
        spelled = properties.get(str(key).lower())
        if spelled is not None:
            inner = spelled if spelled not in ("properties", "") else owner
            _near_misses(_property_schema(schema, spelled), item, (*path, key), inner, found)


def _properties_of(schema: dict[str, Any]) -> dict[str, str]:
    """The property names a schema object declares (its own and its ``allOf``'s), keyed by
    their lower case."""
    out: dict[str, str] = {}
    for part in [schema, *(s for s in schema.get("allOf", []) if isinstance(s, dict))]:
        declared = part.get("properties")
        if isinstance(declared, dict):
            out.update({name.lower(): name for name in declared})
    return out


def _property_schema(schema: dict[str, Any], name: str) -> Any:
    for part in [schema, *(s for s in schema.get("allOf", []) if isinstance(s, dict))]:
        declared = part.get("properties")
        if isinstance(declared, dict) and name in declared:
            return declared[name]
    return None


def _misspelt(path: JsonPath, owner: str, known: str) -> SchemaViolation:
    message = (
        f"'{path[-1]}' is not a property of {owner}; did you mean '{known}'? Azure ignores "
        "properties it does not know, so this one has no effect."
    )
    return SchemaViolation(path, MISSPELT_PROPERTY, message)


MISSPELT_PROPERTY = "UnknownPropertyName"
