"""String functions: concat, format, case, search, split/join, padding, hashes."""

from __future__ import annotations

from typing import Any

from lbsim.arm import hashing
from lbsim.arm.functions.base import (
    ArgumentError,
    Env,
    Kind,
    Registry,
    expect_array,
    expect_int,
    expect_str,
    json_equals,
    to_arm_string,
)
from lbsim.arm.functions.formatting import dotnet_format
from lbsim.arm.limits import check_length

register = Registry()


@register("concat", min_args=1)
def _concat(*args: Any) -> Any:
    parts = []
    for arg in args:
        if type(arg) is str:
            parts.append(arg)
        elif isinstance(arg, list | dict):
            return _concat_arrays(args)
        else:
            parts.append(to_arm_string(arg))
    return "".join(parts)


def _concat_arrays(args: tuple[Any, ...]) -> list[Any]:
    if any(isinstance(a, dict) for a in args):
        raise ArgumentError("objects cannot be concatenated; use union() to merge objects.")
    if not all(isinstance(a, list) for a in args):
        raise ArgumentError("the arguments must be either all arrays or all strings.")
    return [item for a in args for item in a]


@register("format", min_args=1)
def _format(template: Any, *args: Any) -> str:
    text = expect_str(template, 1)
    # each placeholder may repeat an argument: bound the result before it is built
    longest = max((len(to_arm_string(a)) for a in args if isinstance(a, str)), default=0)
    check_length(len(text) + text.count("{") * longest)
    return dotnet_format(text, args)


@register("string")
def _string(value: Any) -> str:
    return to_arm_string(value)


@register("toLower")
def _to_lower(value: Any) -> str:
    return expect_str(value, 1).lower()


@register("toUpper")
def _to_upper(value: Any) -> str:
    return expect_str(value, 1).upper()


@register("trim")
def _trim(value: Any) -> str:
    return expect_str(value, 1).strip()


@register("substring")
def _substring(value: Any, start: Any = 0, length: Any = None) -> str:
    text, begin = expect_str(value, 1), expect_int(start, 2)
    count = len(text) - begin if length is None else expect_int(length, 3)
    if begin < 0 or count < 0 or begin + count > len(text):
        raise ArgumentError(
            "The index and length parameters must refer to a location within the string. "
            f"The index parameter: '{begin}', the length parameter: '{count}', "
            f"the length of the string parameter: '{len(text)}'."
        )
    return text[begin : begin + count]


@register("replace")
def _replace(value: Any, old: Any, new: Any) -> str:
    text, target, replacement = expect_str(value, 1), expect_str(old, 2), expect_str(new, 3)
    if not target:
        raise ArgumentError("the string to replace (argument 2) must not be empty.")
    if len(replacement) > len(target):
        check_length(len(text) + text.count(target) * (len(replacement) - len(target)))
    return text.replace(target, replacement)


def _split_any(text: str, delimiters: list[str]) -> list[str]:
    parts, start, i = [], 0, 0
    while i < len(text):
        hit = next((d for d in delimiters if text.startswith(d, i)), None)
        if hit is None:
            i += 1
            continue
        parts.append(text[start:i])
        i += len(hit)
        start = i
    parts.append(text[start:])
    return parts


@register("split")
def _split(value: Any, delimiter: Any) -> list[str]:
    text = expect_str(value, 1)
    if isinstance(delimiter, list):
        delimiters = [d for d in (expect_str(d, 2) for d in delimiter) if d]
    else:
        delimiters = [d for d in [expect_str(delimiter, 2)] if d]
    return _split_any(text, delimiters) if delimiters else [text]


@register("join")
def _join(values: Any, delimiter: Any) -> str:
    items = expect_array(values, 1)
    for item in items:
        if isinstance(item, list | dict):
            raise ArgumentError("the array to join must hold strings, integers or booleans.")
    return expect_str(delimiter, 2).join(to_arm_string(i) for i in items)


@register("padLeft")
def _pad_left(value: Any, total: Any, padding: Any = " ") -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ArgumentError("argument 1 must be a string or an integer.")
    fill = expect_str(padding, 3)
    if len(fill) != 1:
        raise ArgumentError("the padding character (argument 3) must be a single character.")
    length = expect_int(total, 2)
    check_length(length)  # before the string is built
    return to_arm_string(value).rjust(length, fill)


@register("startsWith")
def _starts_with(value: Any, prefix: Any) -> bool:
    return expect_str(value, 1).lower().startswith(expect_str(prefix, 2).lower())


@register("endsWith")
def _ends_with(value: Any, suffix: Any) -> bool:
    return expect_str(value, 1).lower().endswith(expect_str(suffix, 2).lower())


def _array_index(items: list[Any], item: Any, last: bool) -> int:
    order = range(len(items) - 1, -1, -1) if last else range(len(items))
    return next((i for i in order if json_equals(items[i], item)), -1)


@register("indexOf")
def _index_of(container: Any, item: Any) -> int:
    """Case-insensitive for strings; exact element match for arrays."""
    if isinstance(container, list):
        return _array_index(container, item, last=False)
    return expect_str(container, 1).lower().find(expect_str(item, 2).lower())


@register("lastIndexOf")
def _last_index_of(container: Any, item: Any) -> int:
    if isinstance(container, list):
        return _array_index(container, item, last=True)
    return expect_str(container, 1).lower().rfind(expect_str(item, 2).lower())


def _hash_args(args: tuple[Any, ...]) -> tuple[str, ...]:
    for position, arg in enumerate(args, start=1):
        if not isinstance(arg, str):
            raise ArgumentError(
                f"all arguments must be strings; argument {position} is not "
                "(InvalidTemplateFunctionParametersStringLiterals)."
            )
    return tuple(args)


@register("uniqueString", min_args=1)
def _unique_string(*args: Any) -> str:
    try:
        return hashing.unique_string(*_hash_args(args))
    except ValueError as error:
        raise ArgumentError(str(error)) from None


@register("guid", min_args=1)
def _guid(*args: Any) -> str:
    try:
        return hashing.arm_guid(*_hash_args(args))
    except ValueError as error:
        raise ArgumentError(str(error)) from None


@register("newGuid", kind=Kind.ENV)
def _new_guid(env: Env) -> str:
    """Deterministic in lbsim: derived from the deployment and the template location."""
    context = env.ctx.deployment
    return hashing.arm_guid(
        "lbsim.newGuid",
        context.subscription_id,
        context.resource_group,
        context.deployment_name,
        str(env.at or ""),
    )


FUNCTIONS = register.table
