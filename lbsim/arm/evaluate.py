"""Evaluating ARM template expressions against an EvalContext.

Each distinct expression text is parsed once and compiled once into nested Python closures
(cached), so evaluating the same expression for a thousand copy-loop instances is a few
function calls per node. Errors are ExpressionError (code ``InvalidTemplate``) carrying the
JSON pointer of the string being evaluated.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from lbsim.arm.context import EvalContext, Placeholder, RuntimeObject
from lbsim.arm.expressions import (
    FunctionCall,
    IndexAccess,
    IntLiteral,
    Node,
    PropertyAccess,
    StringLiteral,
    is_expression,
    parse_expression,
)
from lbsim.arm.functions import FUNCTIONS, LIST_FUNCTION, ArgumentError, Env, Function, Kind
from lbsim.arm.functions.base import Compiled, Lambda, find_key, is_int, type_name
from lbsim.arm.functions.user import call_user_function
from lbsim.arm.limits import LimitExceeded, check_time, check_value
from lbsim.errors import ExpressionError
from lbsim.pointer import Pointer

__all__ = [
    "Env",
    "evaluate_expression",
    "evaluate_json",
    "evaluate_string",
    "is_expression",
]

_CONVERTED = (ArgumentError, TypeError, ValueError, ArithmeticError, LookupError)


def _error(message: str, env: Env) -> ExpressionError:
    return ExpressionError("InvalidTemplate", message, env.at)


def _function_error(name: str, problem: BaseException, env: Env) -> ExpressionError:
    detail = str(problem) or type(problem).__name__
    return _error(f"Unable to evaluate template language function '{name}': {detail}", env)


def get_property(value: Any, name: str, safe: bool, env: Env) -> Any:
    """``value.name``: object keys match case-insensitively, as in ARM. Runtime values lbsim
    cannot know (Placeholder, RuntimeObject) answer with further placeholders."""
    if isinstance(value, dict):
        if name in value:
            return value[name]
        key = find_key(value, name)
        if key is not None:
            return value[key]
        if isinstance(value, RuntimeObject):
            return value.missing(name)
        if safe:
            return None
        available = ", ".join(value)
        raise _error(
            f"The language expression property '{name}' doesn't exist, available properties "
            f"are '{available}'.",
            env,
        )
    if isinstance(value, Placeholder):
        return value.member(name)
    if value is None and safe:
        return None
    raise _error(
        f"The language expression property '{name}' can't be evaluated: the value is of type "
        f"'{type_name(value)}', not 'Object'.",
        env,
    )


def get_index(value: Any, index: Any, env: Env) -> Any:
    """``value[index]``: an array by integer, an object by (case-insensitive) key."""
    if isinstance(value, list) and is_int(index):
        if 0 <= index < len(value):
            return value[index]
        raise _error(
            f"The language expression property array index '{index}' is out of bounds "
            f"(the array has {len(value)} element(s)).",
            env,
        )
    if isinstance(value, dict) and isinstance(index, str):
        return get_property(value, index, False, env)
    if isinstance(value, Placeholder) and isinstance(index, str | int):
        return value.member(index)
    raise _error(
        f"The language expression can't index a value of type '{type_name(value)}' with a "
        f"value of type '{type_name(index)}'.",
        env,
    )


def _compile_literal(value: Any) -> Compiled:
    return lambda env: value


def _compile_property(node: PropertyAccess) -> Compiled:
    target, name, safe = compile_node(node.target), node.name, node.safe
    return lambda env: get_property(target(env), name, safe, env)


def _compile_index(node: IndexAccess) -> Compiled:
    target, index = compile_node(node.target), compile_node(node.index)
    return lambda env: get_index(target(env), index(env), env)


def _compile_lambda(node: FunctionCall) -> Compiled:
    message = "lambda() takes one or more parameter names (string literals) and a body."
    if len(node.args) < 2:
        return _raiser(message)
    *names, body = node.args
    if not all(isinstance(n, StringLiteral) for n in names):
        return _raiser(message)
    params = tuple(n.value for n in names if isinstance(n, StringLiteral))
    compiled_body = compile_node(body)
    value = Lambda(params, compiled_body)
    return lambda env: value


def _raiser(message: str) -> Compiled:
    def run(env: Env) -> Any:
        raise _error(message, env)

    return run


def _bind(function: Function, name: str, args: tuple[Compiled, ...]) -> Compiled:
    impl = function.impl
    if function.kind is Kind.LAZY:

        def lazy(env: Env) -> Any:
            try:
                return _bounded(impl(env, *args), env)
            except _CONVERTED as problem:
                raise _function_error(name, problem, env) from None
            except LimitExceeded as error:
                raise _placed(error, env) from None

        return lazy
    with_env = function.kind is Kind.ENV
    # parameters() and variables() hand back values that were checked when they were made
    bounded = _bounded if function.name.lower() not in _PASSED_ON else _timed

    def run(env: Env) -> Any:
        values = [arg(env) for arg in args]
        try:
            return bounded(impl(env, *values) if with_env else impl(*values), env)
        except _CONVERTED as problem:
            raise _function_error(name, problem, env) from None
        except LimitExceeded as error:
            raise _placed(error, env) from None

    return run


def _bounded(value: Any, env: Env) -> Any:
    """A function's result, if it stays within lbsim's limits (and the load's time)."""
    check_value(value, env.at)
    check_time(env.at)
    return value


_PASSED_ON = frozenset({"parameters", "variables"})


def _timed(value: Any, env: Env) -> Any:
    check_time(env.at)
    return value


def _placed(error: LimitExceeded, env: Env) -> LimitExceeded:
    return error if error.at is not None else LimitExceeded(error.code, error.message, env.at)


def _user_call(node: FunctionCall, args: tuple[Compiled, ...]) -> Compiled:
    key, name = node.key, node.name

    def run(env: Env) -> Any:
        function = env.ctx.user_functions.get(key)
        if function is None:
            raise _error(f"The template function '{name}' is not defined.", env)
        values = [arg(env) for arg in args]
        return call_user_function(function, values, env, evaluate_json_in)

    return run


def _compile_call(node: FunctionCall) -> Compiled:
    if node.key == "lambda":
        return _compile_lambda(node)
    args = tuple(compile_node(a) for a in node.args)
    if "." in node.key:
        return _user_call(node, args)
    function = FUNCTIONS.get(node.key)
    if function is None and node.key.startswith("list"):
        function = LIST_FUNCTION
    if function is None:
        return _raiser(f"The template function '{node.name}' is not valid or is not defined.")
    problem = function.arity_problem(len(args))
    if problem is not None:
        return _raiser(f"Unable to evaluate template language function '{node.name}': {problem}")
    return _bind(function, node.name, args)


_COMPILERS: dict[type, Callable[[Any], Compiled]] = {
    StringLiteral: lambda node: _compile_literal(node.value),
    IntLiteral: lambda node: _compile_literal(node.value),
    PropertyAccess: _compile_property,
    IndexAccess: _compile_index,
    FunctionCall: _compile_call,
}


def compile_node(node: Node) -> Compiled:
    """A closure that evaluates ``node`` in an Env."""
    return _COMPILERS[type(node)](node)


@functools.lru_cache(maxsize=16384)
def compile_expression(text: str) -> Compiled:
    """Parse and compile an expression string (``[...]``); cached by text."""
    node = parse_expression(text)
    try:
        return compile_node(node)
    except RecursionError:
        raise ExpressionError("InvalidTemplate", "The expression is nested too deeply.") from None


def _run(compiled: Compiled, env: Env) -> Any:
    try:
        result = compiled(env)
    except ExpressionError as error:
        if error.at is None and env.at is not None:
            raise ExpressionError(error.code, error.message, env.at) from None
        raise
    except RecursionError:
        raise _error("The expression is nested too deeply.", env) from None
    if _holds_lambda(result):
        raise _error("A lambda can only be passed to a function such as map() or filter().", env)
    return result


def _holds_lambda(value: Any) -> bool:
    """Whether ``value`` is a lambda or holds one (``createArray(lambda('x', 1))``): a
    lambda is not a JSON value, so no template value may keep one."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, Lambda):
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def _unescape(value: str) -> str:
    """A literal string: ``[[...]`` loses its first bracket, anything else is unchanged."""
    return value[1:] if value.startswith("[[") and value.endswith("]") else value


def evaluate_string(value: str, ctx: EvalContext, at: Pointer | None = None) -> Any:
    """The value of a JSON string from a template: an expression's result, or the literal."""
    if not is_expression(value):
        return _unescape(value)
    try:
        compiled = compile_expression(value)
    except ExpressionError as error:
        raise ExpressionError(error.code, error.message, at) from None
    return _run(compiled, Env(ctx, at))


def evaluate_expression(node: Node, ctx: EvalContext, at: Pointer | None = None) -> Any:
    """The value of an already parsed expression."""
    return _run(compile_node(node), Env(ctx, at))


def evaluate_json_in(value: Any, env: Env) -> Any:
    """``value`` with every string in it (at any depth) evaluated in ``env``."""
    if isinstance(value, str):
        if not is_expression(value):
            return _unescape(value)
        try:
            return _run(compile_expression(value), env)
        except ExpressionError as error:
            raise ExpressionError(error.code, error.message, error.at or env.at) from None
    if isinstance(value, dict):
        return {k: evaluate_json_in(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate_json_in(v, env) for v in value]
    return value


def evaluate_json(value: Any, ctx: EvalContext, at: Pointer | None = None) -> Any:
    """``value`` (any JSON) with every expression string in it evaluated."""
    return evaluate_json_in(value, Env(ctx, at))
