"""Placeholder values for ``--fill-missing``: a value that meets a parameter's declared type.

A plain parameter needs little: a string of the allowed length, an integer in range, one of
the ``allowedValues``. A parameter typed by a user-defined type (``"$ref":
"#/definitions/NAME"``, as Bicep and the Azure Verified Modules write them) needs a value of
that shape: an object with each property that is not ``nullable`` (ARM's types have no other
way to make a property optional), arrays of typed ``items`` or ``prefixItems`` as long as
``minLength`` asks, a discriminated union's first member, and the constraints of every
property on the way (``minLength``, ``minValue``...). Nested ``$ref`` are followed; a type that
refers back to itself stops at ``MAX_DEPTH`` with the smallest value of its kind.

The rules of the type system are Microsoft's:
https://learn.microsoft.com/azure/azure-resource-manager/templates/definitions
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lbsim.arm import limits

MAX_DEPTH = 16
SECRET = "Lbsim-Placeholder-1!"  # noqa: S105 (a placeholder, meant to be seen)
_EMPTY: dict[str, Any] = {}


def placeholder_value(
    schema: Mapping[str, Any], name: str, definitions: Mapping[str, Any] | None = None
) -> Any:
    """A value for the parameter (or property) ``name`` declared by ``schema``."""
    return _value(schema, name, definitions or _EMPTY, 0)


def resolve(schema: Any, definitions: Mapping[str, Any]) -> Mapping[str, Any]:
    """``schema`` with its ``$ref`` chain merged in, its own keys winning; an unknown
    reference (reported where the template is checked) leaves what is known."""
    body: Mapping[str, Any] = schema if isinstance(schema, Mapping) else _EMPTY
    for _ in range(MAX_DEPTH):
        ref = body.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/definitions/"):
            break
        target = definitions.get(ref.removeprefix("#/definitions/"))
        if not isinstance(target, Mapping):
            break
        body = {**target, **{k: v for k, v in body.items() if k != "$ref"}}
    return body


def _value(schema: Mapping[str, Any], name: str, definitions: Mapping[str, Any], depth: int) -> Any:
    body = resolve(schema, definitions)
    kind = str(body.get("type", "")).lower()
    allowed = body.get("allowedValues")
    if isinstance(allowed, list) and allowed:
        if kind == "array":
            return [allowed[0]] * max(1, _int(body, "minLength", 0))
        return allowed[0]
    discriminator = body.get("discriminator")
    if isinstance(discriminator, Mapping):
        return _union_member(discriminator, name, definitions, depth)
    if depth > MAX_DEPTH:
        return _smallest(kind)
    if kind in ("object", "secureobject"):
        return _object(body, definitions, depth)
    if kind == "array":
        return _array(body, name, definitions, depth)
    if kind == "int":
        return _integer(body)
    if kind == "bool":
        return False
    return _string(body, name, secret=kind == "securestring")


def _object(body: Mapping[str, Any], definitions: Mapping[str, Any], depth: int) -> dict[str, Any]:
    """Every property that is not nullable, each a value of its own type."""
    properties = body.get("properties")
    out: dict[str, Any] = {}
    for key, declared in properties.items() if isinstance(properties, Mapping) else ():
        if resolve(declared, definitions).get("nullable") is True:
            continue
        out[key] = _value(declared, key, definitions, depth + 1)
    return out


def _array(
    body: Mapping[str, Any], name: str, definitions: Mapping[str, Any], depth: int
) -> list[Any]:
    """A tuple's items, then as many more items as ``minLength`` asks."""
    tuple_items = body.get("prefixItems")
    out = [
        _value(item, f"{name}{i}", definitions, depth + 1)
        for i, item in enumerate(tuple_items if isinstance(tuple_items, list) else [])
    ]
    items = body.get("items")
    element = items if isinstance(items, Mapping) else None
    while len(out) < _int(body, "minLength", 0):
        out.append(
            "placeholder" if element is None else _value(element, name, definitions, depth + 1)
        )
    return out


def _union_member(
    discriminator: Mapping[str, Any], name: str, definitions: Mapping[str, Any], depth: int
) -> Any:
    """The first member of a tagged union, with its tag property set."""
    mapping = discriminator.get("mapping")
    tag = discriminator.get("propertyName")
    if not isinstance(mapping, Mapping) or not mapping:
        return {}
    key, member = next(iter(mapping.items()))
    value = _value(member if isinstance(member, Mapping) else _EMPTY, name, definitions, depth + 1)
    if isinstance(value, dict) and isinstance(tag, str):
        value[tag] = key
    return value


def _integer(body: Mapping[str, Any]) -> int:
    lo, hi = body.get("minValue"), body.get("maxValue")
    value = 2 if not isinstance(lo, int) else max(lo, 2)
    return min(value, hi) if isinstance(hi, int) else value


def _string(body: Mapping[str, Any], name: str, *, secret: bool) -> str:
    base = SECRET if secret else f"lbsim{name.lower()}"
    short, long = _int(body, "minLength", 0), body.get("maxLength")
    if len(base) < short:
        base = base + "x" * (short - len(base))
    if isinstance(long, int) and len(base) > long:
        base = base[: max(long, 0)]
    return base


def _smallest(kind: str) -> Any:
    return {"object": {}, "secureobject": {}, "array": [], "int": 0, "bool": False}.get(kind, "")


def _int(body: Mapping[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    found = value if isinstance(value, int) and not isinstance(value, bool) else default
    if key == "minLength" and found > limits.MAX_VALUE_ITEMS:  # before it is built
        raise limits.exceeded(
            "PlaceholderTooLarge",
            f"minLength {found} asks for a placeholder longer than lbsim builds "
            f"({limits.MAX_VALUE_ITEMS:,}); give the parameter a value.",
        )
    return found
