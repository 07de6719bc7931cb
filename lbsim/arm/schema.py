"""JSON Schema checks of raw templates, parameter files and evaluated resources.

The schemas (draft 2020-12) live in the top-level ``schemas/`` directory, shipped as the
package ``lbsim.schemas``; ``schemas/README.md`` lists them with their error codes. A schema
names the error code of each constrained property with the keyword ``x-lbsim-code``, and what
the property expects with ``x-lbsim-expects``; a property without a code reports the code of
the schema at the root ("InvalidTemplate", "InvalidRequestFormat", ...).

ARM matches property names without regard to letter case (``apiversion`` works as well as
``apiVersion``), so objects are checked under the spelling the schemas use, and violations are
reported at the spelling the document uses.
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import attrs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

from lbsim.errors import Problem
from lbsim.pointer import Pointer

BASE_URI = "https://lbsim.invalid/schemas/"
TEMPLATE_SCHEMA = "deploymentTemplate.json"
PARAMETERS_SCHEMA = "deploymentParameters.json"

JsonPath = tuple[str | int, ...]


@attrs.frozen
class SchemaViolation:
    """One value that breaks a schema: where it is inside the checked object, and why."""

    path: JsonPath
    code: str
    message: str

    def problem(self, at: Pointer | None = None, file: str | None = None) -> Problem:
        """The violation as a template ``Problem``, ``at`` being where the object sits."""
        return Problem(self.code, self.message, (at or Pointer.root()).join(self.path), file)


def validate_resource(resource: Mapping[str, Any]) -> list[SchemaViolation]:
    """Check an evaluated resource object against the schema of its ``type`` (any letter
    case). A type lbsim has no schema for passes unchecked."""
    kind = next((value for key, value in resource.items() if str(key).lower() == "type"), None)
    uri = _store().by_type.get(kind.lower()) if isinstance(kind, str) else None
    return _validate(uri, resource, "The resource") if uri else []


def resource_schema(kind: Any) -> dict[str, Any] | None:
    """The schema of resource type ``kind`` (any letter case), its ``$ref`` inlined; None if
    lbsim has none."""
    uri = _store().by_type.get(kind.lower()) if isinstance(kind, str) else None
    return _validator(uri).schema if uri else None


def validate_template(raw: Any) -> list[SchemaViolation]:
    """Check the structure of a raw template (before its expressions are evaluated). A
    template with an ``apiProfile`` may leave out its resources' ``apiVersion``: the
    profile supplies it."""
    found = _validate(BASE_URI + TEMPLATE_SCHEMA, raw, "The template")
    return [v for v in found if not _profile_supplies(raw, v)]


def _profile_supplies(raw: Any, violation: SchemaViolation) -> bool:
    """Whether ``violation`` is a missing ``apiVersion`` in a template with an apiProfile."""
    if violation.path[-1:] != ("apiVersion",) or "is missing" not in violation.message:
        return False
    node, profile = raw, raw.get("apiProfile") if isinstance(raw, Mapping) else None
    for key in violation.path[:-1]:
        node = _child(node, key)
        if key == "template" and isinstance(node, Mapping):
            profile = node.get("apiProfile")  # a nested template has its own profile
    return isinstance(profile, str) and bool(profile)


def _child(node: Any, key: str | int) -> Any:
    if isinstance(node, Mapping):
        return node.get(key)
    return node[key] if isinstance(node, list) and isinstance(key, int) else None


def validate_parameters_file(raw: Any) -> list[SchemaViolation]:
    """Check the structure of a parameters file."""
    return _validate(BASE_URI + PARAMETERS_SCHEMA, raw, "The parameters file")


def schema_resource_types() -> frozenset[str]:
    """The resource types (lower case) that have a schema."""
    return frozenset(_store().by_type)


# --- loading --------------------------------------------------------------------------------
@attrs.frozen
class _Store:
    registry: Registry[Any]
    by_type: Mapping[str, str]  # lower-case resource type -> schema URI
    spellings: Mapping[str, str]  # lower-case property name -> the schemas' spelling


def _schema_dir() -> Traversable:
    try:
        return importlib.resources.files("lbsim.schemas")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / "schemas"


@functools.cache
def _store() -> _Store:
    documents = {
        entry.name: json.loads(entry.read_text("utf-8"))
        for entry in _schema_dir().iterdir()
        if entry.name.endswith(".json")
    }
    registry: Registry[Any] = Registry().with_resources(
        (document["$id"], Resource.from_contents(document)) for document in documents.values()
    )
    by_type = {_resource_type(name): BASE_URI + name for name in documents}
    by_type.pop("", None)
    spellings: dict[str, str] = {}
    for document in documents.values():
        for name in _property_names(document):
            spellings.setdefault(name.lower(), name)
    return _Store(registry.crawl(), by_type, spellings)


def _resource_type(file_name: str) -> str:
    """``Microsoft.Network.loadBalancers.inboundNatRules.json`` names the type
    ``microsoft.network/loadbalancers/inboundnatrules``; other files name none."""
    parts = file_name.removesuffix(".json").split(".")
    if parts[0] != "Microsoft" or len(parts) < 3:
        return ""
    return (".".join(parts[:2]) + "/" + "/".join(parts[2:])).lower()


def _property_names(schema: Any) -> Iterator[str]:
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict):
            yield from properties
        for value in schema.values():
            yield from _property_names(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _property_names(value)


@functools.cache
def _validator(uri: str) -> Draft202012Validator:
    store = _store()
    schema = _inline(store.registry.contents(uri), ())
    return Draft202012Validator(schema, registry=store.registry)


def _inline(schema: Any, seen: tuple[str, ...]) -> Any:
    """``schema`` with each ``$ref`` replaced by what it points to, except a recursive one.
    jsonschema resolves a reference each time it is crossed, which is most of the time taken
    to check a resource; the schemas say the same thing inlined."""
    if isinstance(schema, list):
        return [_inline(item, seen) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if not isinstance(ref, str) or ref in seen:
        return {key: _inline(value, seen) for key, value in schema.items()}
    target = _inline(_lookup(ref), (*seen, ref))
    siblings = {key: _inline(value, seen) for key, value in schema.items() if key != "$ref"}
    if not isinstance(target, dict) or set(siblings) - {"x-lbsim-code", "x-lbsim-expects"}:
        return {**siblings, "allOf": [target]} if "allOf" not in siblings else schema
    return {**target, **siblings}


def _lookup(ref: str) -> Any:
    """The schema a ``$ref`` points to. Every ``$ref`` in lbsim's schemas names its file."""
    return _store().registry.resolver().lookup(urljoin(BASE_URI, ref)).contents


# --- validating -----------------------------------------------------------------------------
def _validate(uri: str, instance: Any, label: str) -> list[SchemaViolation]:
    validator = _validator(uri)
    root_code = validator.schema["x-lbsim-code"]
    renamed: dict[int, dict[str, str]] = {}
    canonical = _respell(instance, _store().spellings, renamed)
    found: dict[JsonPath, SchemaViolation] = {}
    for error in _specific(validator.iter_errors(canonical)):
        path = _original_path(canonical, tuple(error.absolute_path), renamed)
        violation = _violation(error, path, root_code, label)
        found.setdefault(violation.path, violation)
    return sorted(found.values(), key=lambda v: (_sort_key(v.path), v.code, v.message))


def _specific(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """Each error, or for an ``anyOf``/``oneOf`` without a summary of its own, the most
    relevant error among its alternatives."""
    for error in errors:
        chosen = error
        while (
            chosen.validator in ("anyOf", "oneOf")
            and chosen.context
            and not _has(chosen.schema, "x-lbsim-expects")
        ):
            chosen = best_match(chosen.context)
        yield chosen


def _respell(value: Any, spellings: Mapping[str, str], renamed: dict[int, dict[str, str]]) -> Any:
    """A copy of ``value`` whose keys use the schemas' spelling; ``renamed`` records, per copied
    object, which keys were respelled from what."""
    if isinstance(value, list):
        return [_respell(item, spellings, renamed) for item in value]
    if not isinstance(value, Mapping):
        return value
    copy: dict[str, Any] = {}
    back: dict[str, str] = {}
    for key, item in value.items():
        spelled = spellings.get(key.lower(), key) if isinstance(key, str) else key
        if spelled != key and (spelled in value or spelled in copy):
            spelled = key
        copy[spelled] = _respell(item, spellings, renamed)
        if spelled != key:
            back[spelled] = key
    if back:
        renamed[id(copy)] = back
    return copy


def _original_path(root: Any, path: JsonPath, renamed: Mapping[int, Mapping[str, str]]) -> JsonPath:
    node: Any = root
    original: list[str | int] = []
    for part in path:
        if isinstance(node, dict) and isinstance(part, str):
            original.append(renamed.get(id(node), {}).get(part, part))
            node = node.get(part)
        else:
            original.append(part)
            in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
            node = node[part] if in_list else None
    return tuple(original)


def _sort_key(path: JsonPath) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, part, "") if isinstance(part, int) else (1, 0, part) for part in path)


# --- reporting ------------------------------------------------------------------------------
def _violation(
    error: ValidationError, path: JsonPath, root_code: str, label: str
) -> SchemaViolation:
    """The violation ``error`` describes, found at ``path`` as the document spells it."""
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "required":
        missing = _missing(error)
        note = schema.get("x-lbsim-note")
        code = _code_of(schema.get("properties", {}).get(missing)) or _code_of(schema)
        message = f"Required property '{missing}' is missing" + (f"; {note}." if note else ".")
        return SchemaViolation((*path, missing), code or root_code, message)
    name = _name(path, label)
    expects = schema.get("x-lbsim-expects") or _expects(error)
    message = f"{name} must be {expects}, not {_show(error.instance)}."
    return SchemaViolation(path, _code_of(schema) or root_code, message)


def _missing(error: ValidationError) -> str:
    required = error.validator_value if isinstance(error.validator_value, list) else []
    named = (str(name) for name in required if error.message.startswith(repr(name)))
    return next(named, str(required[0]) if required else "?")


def _code_of(schema: Any) -> str | None:
    """The ``x-lbsim-code`` of a schema, or of the schema its ``$ref`` points to."""
    if not isinstance(schema, dict):
        return None
    if "x-lbsim-code" in schema:
        return str(schema["x-lbsim-code"])
    return _code_of(_lookup(schema["$ref"])) if "$ref" in schema else None


def _has(schema: Any, keyword: str) -> bool:
    return isinstance(schema, dict) and keyword in schema


def _name(path: JsonPath, label: str) -> str:
    if not path:
        return label
    if isinstance(path[-1], str):
        return path[-1]
    owner = next((part for part in reversed(path) if isinstance(part, str)), None)
    return f"item {path[-1]} of {owner}" if owner else f"item {path[-1]}"


_TYPES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}
_CHOICES = re.compile(r"\^\(\?i:(.*)\)\$")


def _expects(error: ValidationError) -> str:
    value = error.validator_value
    if error.validator == "type":
        types = value if isinstance(value, list) else [value]
        return " or ".join(_TYPES.get(str(kind), str(kind)) for kind in types)
    if error.validator == "pattern":
        choices = _CHOICES.fullmatch(str(value))
        if choices:
            names = choices.group(1).replace("\\", "").split("|")
            return f"one of {', '.join(names)} (in any letter case)"
        return f"a string matching {value}"
    if error.validator in ("minimum", "maximum"):
        return f"{'at least' if error.validator == 'minimum' else 'at most'} {value}"
    if error.validator == "const":
        return json.dumps(value)
    if error.validator == "enum" and isinstance(value, list):
        return "one of " + ", ".join(json.dumps(choice) for choice in value)
    return f"valid here ({error.message})"


def _show(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
