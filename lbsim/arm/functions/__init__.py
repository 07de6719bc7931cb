"""The table of ARM template functions, keyed by lower-case name.

``lambda`` is not in the table (the evaluator compiles it into a Lambda value), nor are the
``list*`` functions (any name starting with ``list`` uses ``LIST_FUNCTION``) or user-defined
``namespace.name`` functions (they come from the EvalContext).
"""

from __future__ import annotations

from collections.abc import Mapping

from lbsim.arm.functions import (
    arrays,
    cidr,
    dates,
    encoding,
    lambdas,
    logic,
    numeric,
    resources,
    scope,
    strings,
)
from lbsim.arm.functions.base import ArgumentError, Env, Function, Kind, Lambda
from lbsim.arm.functions.resources import LIST_FUNCTION


def _merge(*tables: Mapping[str, Function]) -> dict[str, Function]:
    merged: dict[str, Function] = {}
    for table in tables:
        for key, function in table.items():
            if key in merged:
                raise RuntimeError(f"template function '{key}' is defined twice")
            merged[key] = function
    return merged


FUNCTIONS: Mapping[str, Function] = _merge(
    strings.FUNCTIONS,
    encoding.FUNCTIONS,
    logic.FUNCTIONS,
    numeric.FUNCTIONS,
    arrays.FUNCTIONS,
    scope.FUNCTIONS,
    resources.FUNCTIONS,
    lambdas.FUNCTIONS,
    dates.FUNCTIONS,
    cidr.FUNCTIONS,
)

__all__ = ["FUNCTIONS", "LIST_FUNCTION", "ArgumentError", "Env", "Function", "Kind", "Lambda"]
