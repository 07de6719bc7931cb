"""Template parameters: declared types, supplied values, defaults and constraints.

Values come, strongest first, from ``--param name=value`` (a string converted to the declared
type), the parameters file, and the declaration's ``defaultValue`` (which may be an
expression, evaluated by the caller). Azure reports every parameter mistake under the code
``InvalidTemplate``; lbsim keeps that code and points at the declaration.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from typing import Any

import attrs

from lbsim.arm.limits import MAX_JSON_DEPTH, LimitExceeded, too_deep
from lbsim.arm.placeholders import placeholder_value
from lbsim.errors import Problem, Severity
from lbsim.pointer import Pointer

TYPES = {
    "string": "String",
    "securestring": "SecureString",
    "int": "Int",
    "bool": "Bool",
    "object": "Object",
    "secureobject": "SecureObject",
    "array": "Array",
}


@attrs.frozen
class ParameterDecl:
    name: str
    type: str  # Azure's canonical spelling, from TYPES
    raw: Mapping[str, Any]  # the declaration, with a ``$ref`` type resolved into it
    at: Pointer
    definitions: Mapping[str, Any] = attrs.field(factory=dict)  # the template's user types

    @property
    def has_default(self) -> bool:
        return "defaultValue" in self.raw

    @property
    def nullable(self) -> bool:
        """A ``nullable`` parameter (languageVersion 2.0) may have no value: it is null."""
        return self.raw.get("nullable") is True

    def constraint(self, key: str) -> Any:
        return self.raw.get(key)


def declarations(
    raw: Any, at: Pointer, definitions: Any = None
) -> tuple[list[ParameterDecl], list[Problem]]:
    """The template's parameter declarations, with a problem for each malformed one. A
    declaration typed by ``"$ref": "#/definitions/NAME"`` (user-defined types) takes the
    referenced definition's type and constraints, its own keys winning."""
    decls: list[ParameterDecl] = []
    problems: list[Problem] = []
    if not isinstance(raw, Mapping):
        return decls, problems
    for name, declared in raw.items():
        where = at / name
        body, problem = _resolve_type(declared, definitions, where)
        if problem is not None:
            problems.append(problem)
            continue
        kind = body.get("type") if isinstance(body, Mapping) else None
        if not isinstance(kind, str) or kind.lower() not in TYPES:
            msg = f"The parameter '{name}' has no valid type (got {kind!r}); allowed: " + ", ".join(
                TYPES.values()
            )
            problems.append(Problem("InvalidTemplate", msg, where / "type"))
            continue
        types = definitions if isinstance(definitions, Mapping) else {}
        decls.append(ParameterDecl(name, TYPES[kind.lower()], body, where, types))
    return decls, problems


_MAX_REF_DEPTH = 16


def _resolve_type(declared: Any, definitions: Any, at: Pointer) -> tuple[Any, Problem | None]:
    """``declared`` with its ``$ref`` chain into ``definitions`` merged in."""
    body = declared
    for _ in range(_MAX_REF_DEPTH):
        ref = body.get("$ref") if isinstance(body, Mapping) else None
        if not isinstance(ref, str):
            return body, None
        name = ref.removeprefix("#/definitions/")
        target = definitions.get(name) if isinstance(definitions, Mapping) else None
        if not ref.startswith("#/definitions/") or not isinstance(target, Mapping):
            msg = f"The type reference '{ref}' names no entry of the template's definitions."
            return body, Problem("InvalidTemplate", msg, at / "$ref")
        body = {**target, **{k: v for k, v in body.items() if k != "$ref"}}
    return body, Problem("InvalidTemplate", "Type references nest too deeply.", at / "$ref")


_INTEGER = re.compile(r"[+-]?[0-9]+")
_JSON_EXAMPLE = {
    "Object": '{"key": "value"}',
    "SecureObject": '{"key": "value"}',
    "Array": "[1, 2]",
}


def convert_cli_value(decl: ParameterDecl, text: str) -> Any:
    """A ``--param`` string converted to the declared type; raises ValueError, whose text is
    the whole message for the user, if it cannot be."""
    if decl.type == "Int" and _INTEGER.fullmatch(text.strip()):
        if len(text.strip().lstrip("+-")) > 19:  # past 64 bits (and int()'s digit limit)
            raise ValueError(_not_valid(decl, text[:40], "expected a 64-bit integer"))
        return int(text)
    if decl.type == "Bool" and text.strip().lower() in ("true", "false"):
        return text.strip().lower() == "true"
    if decl.type in _JSON_EXAMPLE:
        return _json_cli_value(decl, text)
    if decl.type in ("String", "SecureString"):
        return text
    expected = "a whole number such as 3" if decl.type == "Int" else "true or false"
    raise ValueError(_not_valid(decl, text, f"expected {expected}"))


def _json_cli_value(decl: ParameterDecl, text: str) -> Any:
    wanted = "an array" if decl.type == "Array" else "an object"
    expected = f"expected {wanted} in JSON, such as {_JSON_EXAMPLE[decl.type]}"
    try:
        value = json.loads(text)
        if too_deep(value) is not None:
            raise ValueError(_not_valid(decl, text[:40], f"nested over {MAX_JSON_DEPTH} levels"))
    except RecursionError:
        raise ValueError(_not_valid(decl, text[:40], "nested too deeply")) from None
    except json.JSONDecodeError as error:
        raise ValueError(
            _not_valid(decl, text, f"{expected}; the JSON breaks at character {error.pos + 1}")
        ) from None
    if isinstance(value, _JSON_KIND[decl.type]):
        return value
    raise ValueError(_not_valid(decl, text, f"{expected}, not {_json_type_name(value)}"))


def _not_valid(decl: ParameterDecl, text: str, why: str) -> str:
    shown = "(a secret)" if decl.type.startswith("Secure") else f"'{text}'"
    return f"The value of --param {decl.name} is not a valid {decl.type}: {shown} ({why})."


def undeclared_message(name: str, declared: list[str]) -> str:
    """Azure refuses a supplied parameter the template does not declare; the message names the
    declared parameter it is probably a misspelling of, or else lists them all."""
    by_lower = {d.lower(): d for d in declared}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.75)
    if close:
        return (
            f"Parameter '{name}' is not declared in the template; did you mean "
            f"'{by_lower[close[0]]}'? A parameter the template does not declare cannot be "
            "given at deployment time."
        )
    return (
        f"Parameter '{name}' is not declared in the template, so it cannot be given at "
        f"deployment time; the template declares: {', '.join(declared) or 'none'}."
    )


_JSON_KIND = {
    "String": (str,),
    "SecureString": (str,),
    "Int": (int,),
    "Bool": (bool,),
    "Object": (dict,),
    "SecureObject": (dict,),
    "Array": (list,),
}


def type_problem(decl: ParameterDecl, value: Any) -> str | None:
    """Azure's complaint when a supplied value has the wrong JSON type, else None."""
    if value is None:
        return None
    kinds = _JSON_KIND[decl.type]
    wrong_bool = isinstance(value, bool) and decl.type == "Int"
    if isinstance(value, kinds) and not wrong_bool:
        return None
    actual = _json_type_name(value)
    return (
        f"The value of the template parameter '{decl.name}' is of type '{actual}', "
        f"expected '{decl.type}'."
    )


def _json_type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "Boolean"
    for kind, name in ((int, "Integer"), (float, "Float"), (str, "String")):
        if isinstance(value, kind):
            return name
    return "Array" if isinstance(value, list) else "Object"


def constraint_problems(decl: ParameterDecl, value: Any) -> list[str]:
    """What is wrong with ``value`` against allowedValues, min/max value and length."""
    out: list[str] = []
    if value is None and decl.nullable:
        return out  # a nullable parameter without a value is null, whatever its constraints
    allowed = decl.constraint("allowedValues")
    if isinstance(allowed, list):
        items = value if decl.type == "Array" and isinstance(value, list) else [value]
        bad = [v for v in items if v not in allowed]
        if bad:
            shown = "" if decl.type.startswith("Secure") else f" {_show(bad[0])}"
            out.append(
                f"The provided value{shown} for the template parameter '{decl.name}' "
                f"is not part of the allowed value(s): {_show_list(allowed)}."
            )
    out += _range_problems(decl, value)
    return out


def _range_problems(decl: ParameterDecl, value: Any) -> list[str]:
    out: list[str] = []
    lo, hi = decl.constraint("minValue"), decl.constraint("maxValue")
    if isinstance(value, int) and not isinstance(value, bool):
        if isinstance(lo, int) and value < lo:
            out.append(f"The value {value} of parameter '{decl.name}' is less than minValue {lo}.")
        if isinstance(hi, int) and value > hi:
            out.append(f"The value {value} of parameter '{decl.name}' exceeds maxValue {hi}.")
    short, long = decl.constraint("minLength"), decl.constraint("maxLength")
    if isinstance(value, str | list):
        size = len(value)
        if isinstance(short, int) and size < short:
            out.append(
                f"The length {size} of parameter '{decl.name}' is less than minLength {short}."
            )
        if isinstance(long, int) and size > long:
            out.append(f"The length {size} of parameter '{decl.name}' exceeds maxLength {long}.")
    return out


def _show(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else json.dumps(value)


def _show_list(values: list[Any]) -> str:
    return "'" + ", ".join(str(v) for v in values) + "'"


def placeholder(decl: ParameterDecl) -> Any:
    """A value that satisfies ``decl``'s type and constraints, for ``--fill-missing``."""
    try:
        return placeholder_value(decl.raw, decl.name, decl.definitions)
    except LimitExceeded as error:
        raise LimitExceeded(error.code, error.message, decl.at) from None


def placeholder_warning(decl: ParameterDecl, value: Any) -> Problem:
    shown = "a secret placeholder" if decl.type.startswith("Secure") else json.dumps(value)
    return Problem(
        "ParameterValuePlaceholder",
        f"The parameter '{decl.name}' has no value; using {shown} (--fill-missing).",
        decl.at,
        severity=Severity.WARNING,
    )


def file_values(raw: Any, at: Pointer) -> tuple[dict[str, tuple[Any, Pointer]], list[Problem]]:
    """The values of a deploymentParameters document, keyed by parameter name."""
    problems: list[Problem] = []
    values: dict[str, tuple[Any, Pointer]] = {}
    params = raw.get("parameters") if isinstance(raw, Mapping) else None
    if not isinstance(params, Mapping):
        problems.append(
            Problem("InvalidTemplate", "A parameters file has a 'parameters' object.", at)
        )
        return values, problems
    for name, entry in params.items():
        where = at / "parameters" / name
        if isinstance(entry, Mapping) and "value" in entry:
            values[name] = (entry["value"], where / "value")
        elif isinstance(entry, Mapping) and "reference" in entry:
            values[name] = (_KEY_VAULT, where / "reference")
        else:
            msg = f"The parameter '{name}' in the parameters file has no 'value' nor 'reference'."
            problems.append(Problem("InvalidTemplate", msg, where))
    return values, problems


def given_parameters(template: Any, file: Any, cli: Mapping[str, str]) -> dict[str, Any]:
    """``deployment().properties.parameters`` of the root deployment: the parameters as given,
    ``{name: {"value": ...}}``, from the parameters file and then ``--param`` (converted to the
    declared type where it can be; a wrong value is reported where the parameter is bound)."""
    entries = file.get("parameters") if isinstance(file, Mapping) else None
    out = dict(entries) if isinstance(entries, Mapping) else {}
    raw = template if isinstance(template, Mapping) else {}
    decls, _ = declarations(raw.get("parameters"), Pointer.root(), raw.get("definitions"))
    by_name = {d.name.lower(): d for d in decls}
    for name, text in cli.items():
        decl = by_name.get(name.lower())
        try:
            value = convert_cli_value(decl, text) if decl else text
        except ValueError:
            value = text
        out[name] = {"value": value}
    return out


_KEY_VAULT = object()


def is_key_vault_reference(value: Any) -> bool:
    return value is _KEY_VAULT
