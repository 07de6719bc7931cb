"""A small in-memory EvalContext for testing the expression evaluator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from lbsim.arm.context import UserFunction
from lbsim.errors import ExpressionError
from lbsim.model.deployment import DeploymentContext


@attrs.define
class FakeContext:
    """Parameters and variables from dicts (names case-insensitive, as in ARM); copy loops
    from ``copy_indexes`` (the key ``None`` is the resource loop); reference() and list*
    answer from ``references`` and ``keys``; warnings are collected in ``warnings``."""

    parameters: dict[str, Any] = attrs.Factory(dict)
    variables: dict[str, Any] = attrs.Factory(dict)
    copy_indexes: dict[str | None, int] = attrs.Factory(dict)
    references: dict[str, Any] = attrs.Factory(dict)
    keys: dict[str, Any] = attrs.Factory(dict)
    functions: dict[str, UserFunction] = attrs.Factory(dict)
    properties: dict[str, Any] = attrs.Factory(dict)
    context: DeploymentContext = attrs.Factory(DeploymentContext)
    warnings: list[tuple[str, str]] = attrs.Factory(list)
    calls: list[str] = attrs.Factory(list)

    @property
    def deployment(self) -> DeploymentContext:
        return self.context

    @property
    def deployment_properties(self) -> Mapping[str, Any]:
        return self.properties

    @property
    def user_functions(self) -> Mapping[str, UserFunction]:
        return self.functions

    @staticmethod
    def _lookup(table: Mapping[str, Any], name: str, what: str) -> Any:
        for key, value in table.items():
            if key.lower() == name.lower():
                return value
        raise ExpressionError("InvalidTemplate", f"The {what} '{name}' is not defined.")

    def parameter(self, name: str) -> Any:
        self.calls.append(f"parameters:{name}")
        return self._lookup(self.parameters, name, "parameter")

    def variable(self, name: str) -> Any:
        self.calls.append(f"variables:{name}")
        return self._lookup(self.variables, name, "variable")

    def copy_index(self, loop: str | None) -> int:
        if loop not in self.copy_indexes:
            raise ExpressionError("InvalidTemplate", f"copyIndex('{loop}') outside its loop.")
        return self.copy_indexes[loop]

    def reference(self, name_or_id: str, api_version: str | None, full: bool) -> Any:
        self.calls.append(f"reference:{name_or_id}:{api_version}:{full}")
        return self._lookup(self.references, name_or_id, "resource")

    def list_keys(self, resource_id: str, api_version: str | None) -> Any:
        self.calls.append(f"list:{resource_id}:{api_version}")
        return self._lookup(self.keys, resource_id, "resource")

    def warn(self, code: str, message: str) -> None:
        self.warnings.append((code, message))
