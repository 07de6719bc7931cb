"""What a template declares, bound for one deployment: parameter values (with their checks)
and user-defined functions.

Values come, strongest first, from ``--param``, the parameters file, the declaration's
default (an expression, which may use other parameters declared before or after it: each is
bound on first use) and ``--fill-missing`` placeholders.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import attrs

from lbsim.arm import parameters as params
from lbsim.arm import secrets
from lbsim.arm.context import UserFunction
from lbsim.arm.deepeval import evaluate_value
from lbsim.arm.scope import Scope, TemplateState
from lbsim.errors import LbsimError, Problem, Severity
from lbsim.pointer import Pointer

_MISSING = object()


@attrs.define
class Binder:
    """Binds the parameters of one template; problems go to ``problems``."""

    state: TemplateState
    supplied: Mapping[str, tuple[Any, Pointer]]
    cli: Mapping[str, str]
    fill_missing: bool
    problems: list[Problem]

    def bind(self, parameters_file_name: str | None) -> None:
        state = self.state
        raw = state.raw
        decls, found = params.declarations(
            raw.get("parameters"), state.base / "parameters", raw.get("definitions")
        )
        self.problems += [p.located(state.file) for p in found]
        self._unknown_parameters(decls, parameters_file_name)
        state.unbound = {d.name.lower(): functools.partial(self._bind, d) for d in decls}
        for decl in decls:
            state.bind_parameter(decl.name)

    def _unknown_parameters(
        self, decls: list[params.ParameterDecl], parameters_file_name: str | None
    ) -> None:
        """Azure refuses a supplied parameter that the template does not declare."""
        supplied, state = self.supplied, self.state
        known = {d.name.lower() for d in decls}
        for name in [*supplied, *self.cli]:
            if name.lower() not in known:
                where = supplied[name][1] if name in supplied else None
                msg = params.undeclared_message(name, [d.name for d in decls])
                file = parameters_file_name if name in supplied else None
                self.problems.append(Problem("InvalidTemplate", msg, where, file or state.file))

    def _bind(self, decl: params.ParameterDecl) -> None:
        state = self.state
        value = self._parameter_value(decl)
        if value is _MISSING:
            return
        if secrets.is_secure(decl.type):
            secrets.collect(value, state.loader.secrets)
        state.parameters[decl.name.lower()] = value
        hint = ""
        if _pipeline_placeholder(value):
            hint = (
                f" {value!r} is a placeholder that the Azure quickstart templates' test "
                "pipeline replaces: give a value with --param, or use --fill-missing."
            )
        for message in params.constraint_problems(decl, value):
            self.problems.append(Problem("InvalidTemplate", message + hint, decl.at, state.file))

    def _parameter_value(self, decl: params.ParameterDecl) -> Any:
        state, name = self.state, decl.name.lower()
        lookup = {k.lower(): v for k, v in self.cli.items()}
        by_name = {k.lower(): v for k, v in self.supplied.items()}
        if secrets.is_secure(decl.type):  # before any check can quote it
            given = [lookup[name]] if name in lookup else []
            given += [by_name[name][0]] if name in by_name else []
            secrets.collect(given, state.loader.secrets)
        if name in lookup:
            return self._cli_value(decl, lookup[name])
        if name in by_name:
            return self._file_value(decl, *by_name[name])
        if decl.has_default:
            try:
                return evaluate_value(
                    decl.raw["defaultValue"], Scope(state), decl.at / "defaultValue"
                )
            except LbsimError as error:
                self.problems.append(error.problem(state.file))
                return _MISSING
        return self._missing(decl)

    def _cli_value(self, decl: params.ParameterDecl, text: str) -> Any:
        try:
            return params.convert_cli_value(decl, text)
        except ValueError as error:
            self.problems.append(Problem("InvalidTemplate", str(error), decl.at, self.state.file))
            return _MISSING

    def _file_value(self, decl: params.ParameterDecl, value: Any, at: Pointer) -> Any:
        file = at.document
        if params.is_key_vault_reference(value):
            msg = f"The parameter '{decl.name}' is a Key Vault reference; lbsim uses a placeholder."
            self.problems.append(
                Problem("KeyVaultReferencePlaceholder", msg, at, file, Severity.WARNING)
            )
            return params.placeholder(decl)
        if self.fill_missing and _pipeline_placeholder(value):
            filled = params.placeholder(decl)
            shown = "a secret placeholder" if decl.type.startswith("Secure") else repr(filled)
            msg = (
                f"The parameters file gives '{decl.name}' the value {value!r}, a placeholder "
                "that the Azure quickstart templates' test pipeline replaces; lbsim uses "
                f"{shown} (--fill-missing)."
            )
            self.problems.append(
                Problem("ParameterValuePlaceholder", msg, at, file, Severity.WARNING)
            )
            return filled
        complaint = params.type_problem(decl, value)
        if complaint:
            self.problems.append(Problem("InvalidTemplate", complaint, at, file))
            return _MISSING
        return value

    def _missing(self, decl: params.ParameterDecl) -> Any:
        state = self.state
        if decl.nullable:
            return None
        if self.fill_missing:
            value = params.placeholder(decl)
            self.problems.append(params.placeholder_warning(decl, value).located(state.file))
            return value
        msg = (
            f"The value for the template parameter '{decl.name}' is not provided "
            "(give it with -p FILE, --param NAME=VALUE, or use --fill-missing)."
        )
        self.problems.append(Problem("InvalidTemplate", msg, decl.at, state.file))
        return _MISSING


# The values the Azure quickstart templates' parameters files hold for their test pipeline to
# replace: GEN-UNIQUE, GEN-UNIQUE-8, GEN-PASSWORD, GEN-SSH-PUB-KEY, GEN-GUID, ...
_PIPELINE_PLACEHOLDER = re.compile(r"GEN-[A-Z0-9]+(?:-[A-Z0-9]+)*")


def _pipeline_placeholder(value: Any) -> bool:
    return isinstance(value, str) and _PIPELINE_PLACEHOLDER.fullmatch(value) is not None


def user_functions(raw: Any, at: Pointer) -> dict[str, UserFunction]:
    out: dict[str, UserFunction] = {}
    if not isinstance(raw, list):
        return out
    for i, namespace in enumerate(raw):
        members = namespace.get("members") if isinstance(namespace, Mapping) else None
        if not isinstance(members, Mapping):
            continue
        ns = str(namespace.get("namespace", ""))
        for name, member in members.items():
            declared = member.get("parameters") or []
            output = member.get("output") or {}
            fn = UserFunction(
                ns,
                name,
                tuple((str(p.get("name")), str(p.get("type"))) for p in declared),
                str(output.get("type", "")),
                output.get("value"),
                at / i / "members" / name,
            )
            out[f"{ns}.{name}".lower()] = fn
    return out
