""".NET composite formatting (``String.Format`` with the invariant culture), as ``format()``
uses it: ``{index[,alignment][:formatString]}`` items, ``{{``/``}}`` escapes, standard numeric
formats (D, N, F, X, E, P, C, G, R) and the common custom ones (``000``, ``#,##0.00``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from lbsim.arm.functions.base import ArgumentError, is_int, is_number, to_arm_string

_ITEM = re.compile(r"\s*(\d+)\s*(?:,\s*(-?\d+)\s*)?(?::(.*))?", re.DOTALL)
_STANDARD = re.compile(r"([A-Za-z])(\d{0,2})")
_BAD_FORMAT = "Input string was not in a correct format."


def dotnet_format(template: str, args: Sequence[Any]) -> str:
    """``String.Format(InvariantCulture, template, args)``."""
    out: list[str] = []
    i, n = 0, len(template)
    while i < n:
        char = template[i]
        if char in "{}" and i + 1 < n and template[i + 1] == char:
            out.append(char)
            i += 2
        elif char == "}":
            raise ArgumentError(_BAD_FORMAT)
        elif char == "{":
            close = template.find("}", i)
            if close < 0:
                raise ArgumentError(_BAD_FORMAT)
            out.append(_format_item(template[i + 1 : close], args))
            i = close + 1
        else:
            stop = min(
                (p for p in (template.find("{", i), template.find("}", i)) if p >= 0), default=n
            )
            out.append(template[i:stop])
            i = stop
    return "".join(out)


def _format_item(spec: str, args: Sequence[Any]) -> str:
    match = _ITEM.fullmatch(spec)
    if match is None:
        raise ArgumentError(_BAD_FORMAT)
    index = int(match.group(1))
    if index >= len(args):
        raise ArgumentError(
            "Index (zero based) must be greater than or equal to zero and less than the size "
            f"of the argument list: the format refers to {{{index}}} but {len(args)} "
            "argument(s) follow the format string."
        )
    text = format_value(args[index], match.group(3) or "")
    width = int(match.group(2) or 0)
    return text.rjust(width) if width >= 0 else text.ljust(-width)


def format_value(value: Any, spec: str) -> str:
    """``value.ToString(spec, InvariantCulture)`` for JSON values."""
    if not spec or not is_number(value):
        return to_arm_string(value)
    standard = _STANDARD.fullmatch(spec)
    if standard is not None:
        letter, digits = standard.group(1), standard.group(2)
        return _standard(value, letter, int(digits) if digits else None)
    return _custom(Decimal(value), spec)


def _round(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _grouped(digits: str) -> str:
    head = len(digits) % 3 or 3
    groups = [digits[:head]] + [digits[i : i + 3] for i in range(head, len(digits), 3)]
    return ",".join(groups)


def _fixed(value: Decimal, places: int, group: bool) -> str:
    rounded = _round(value, places)
    sign = "-" if rounded < 0 else ""
    text = f"{abs(rounded):f}"
    whole, _, fraction = text.partition(".")
    whole = _grouped(whole) if group else whole
    return sign + whole + ("." + fraction if places else "")


def _exponent(value: Decimal, places: int, letter: str) -> str:
    if value == 0:
        mantissa, exponent = Decimal(0), 0
    else:
        exponent = value.copy_abs().adjusted()
        mantissa = _round(value.scaleb(-exponent), places)
        if abs(mantissa) >= 10:
            exponent += 1
            mantissa = _round(value.scaleb(-exponent), places)
    sign = "-" if exponent < 0 else "+"
    return f"{_fixed(mantissa, places, group=False)}{letter}{sign}{abs(exponent):03d}"


def _standard(value: Any, letter: str, precision: int | None) -> str:
    upper = letter.upper()
    number = Decimal(value)
    if upper in "DX" and not is_int(value):
        raise ArgumentError(f"Format specifier '{letter}' is only valid for integers.")
    if upper == "D":
        sign = "-" if value < 0 else ""
        return sign + str(abs(value)).zfill(precision or 0)
    if upper == "X":
        text = format(value & 0xFFFFFFFFFFFFFFFF if value < 0 else value, "x")
        return (text.upper() if letter == "X" else text).zfill(precision or 0)
    if upper in "NF":
        return _fixed(number, 2 if precision is None else precision, group=upper == "N")
    if upper == "E":
        return _exponent(number, 6 if precision is None else precision, letter)
    if upper == "P":
        return _fixed(number * 100, 2 if precision is None else precision, group=True) + " %"
    if upper == "C":
        text = _fixed(abs(number), 2 if precision is None else precision, group=True)
        return ("-" if number < 0 else "") + "¤" + text
    if upper in "GR":
        return to_arm_string(value)
    raise ArgumentError(f"Format specifier '{letter}' is not supported.")


def _split_pattern(pattern: str) -> tuple[str, str, str]:
    """(prefix literal, digit placeholders, suffix literal) of a custom numeric format."""
    placeholders = [i for i, c in enumerate(pattern) if c in "0#"]
    if not placeholders:
        return pattern, "", ""
    first, last = placeholders[0], placeholders[-1]
    return pattern[:first], pattern[first : last + 1], pattern[last + 1 :]


def _literal(text: str) -> str:
    return text.replace("'", "").replace('"', "").replace("\\", "")


def _custom(value: Decimal, spec: str) -> str:
    pattern = spec.split(";", maxsplit=1)[0]
    prefix, core, suffix = _split_pattern(pattern)
    if "%" in prefix + suffix:
        value *= 100
    whole, _, fraction = core.partition(".")
    min_whole = whole.count("0")
    min_fraction, max_fraction = fraction.count("0"), fraction.count("0") + fraction.count("#")
    rounded = _round(value, max_fraction)
    digits, _, decimals = f"{abs(rounded):f}".partition(".")
    digits = digits.lstrip("0").zfill(min_whole)
    if "," in whole:
        digits = _grouped(digits) if digits else digits
    decimals = decimals.rstrip("0").ljust(min_fraction, "0")
    sign = "-" if rounded < 0 else ""
    body = digits + ("." + decimals if decimals else "")
    return sign + _literal(prefix) + body + _literal(suffix)
