"""Date functions: utcNow, dateTimeAdd, dateTimeToEpoch, dateTimeFromEpoch.

lbsim has no clock: ``utcNow()`` is the deployment's ``timestamp`` if the loader put one in
``deployment_properties`` (an ISO 8601 string), otherwise the fixed instant ``LBSIM_NOW``.
Formats are .NET date and time format strings with the invariant culture.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from lbsim.arm.functions.base import ArgumentError, Env, Kind, Registry, expect_int, expect_str

register = Registry()

LBSIM_NOW = datetime(2025, 1, 1, tzinfo=UTC)
DEFAULT_NOW_FORMAT = "yyyyMMddTHHmmssZ"
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_DURATION = re.compile(
    r"(-)?P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
    r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?"
)
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\\.|%.|([a-zA-Z])\1*|.", re.DOTALL)
_STANDARD = {
    "d": "MM/dd/yyyy",
    "D": "dddd, dd MMMM yyyy",
    "f": "dddd, dd MMMM yyyy HH:mm",
    "F": "dddd, dd MMMM yyyy HH:mm:ss",
    "g": "MM/dd/yyyy HH:mm",
    "G": "MM/dd/yyyy HH:mm:ss",
    "m": "MMMM dd",
    "M": "MMMM dd",
    "o": "yyyy-MM-ddTHH:mm:ss.fffffffK",
    "O": "yyyy-MM-ddTHH:mm:ss.fffffffK",
    "r": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "R": "ddd, dd MMM yyyy HH':'mm':'ss 'GMT'",
    "s": "yyyy-MM-ddTHH:mm:ss",
    "t": "HH:mm",
    "T": "HH:mm:ss",
    "u": "yyyy-MM-dd HH:mm:ss'Z'",
    "U": "dddd, dd MMMM yyyy HH:mm:ss",
    "y": "yyyy MMMM",
    "Y": "yyyy MMMM",
}
_LAYOUTS = (  # how dateTimeAdd writes its result when no format is given: like the base
    (re.compile(r"\d{8}T\d{6}Z"), "yyyyMMddTHHmmssZ"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"), "u"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z"), "yyyy-MM-ddTHH:mm:ss.fffffffZ"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"), "yyyy-MM-ddTHH:mm:ss.fffZ"),
)


def parse_datetime(text: str) -> datetime:
    """An ISO 8601 date and time; without an offset it is taken as UTC."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ArgumentError(f"the value '{text}' is not a valid ISO 8601 date and time.") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _token(moment: datetime, token: str) -> str:
    char, count = token[0], len(token)
    if char in "'\"":
        return token[1:-1]
    if char in "\\%":
        return token[1:] if char == "\\" else format_datetime(moment, token[1:], single=False)
    return _field(moment, char, count)


def _field(moment: datetime, char: str, count: int) -> str:
    if char == "y":
        return str(moment.year % 100).zfill(count) if count < 3 else str(moment.year).zfill(count)
    if char == "M":
        if count >= 3:
            name = _MONTHS[moment.month - 1]
            return name if count == 4 else name[:3]
        return str(moment.month).zfill(count)
    if char == "d":
        if count >= 3:
            name = _DAYS[moment.weekday()]
            return name if count == 4 else name[:3]
        return str(moment.day).zfill(count)
    return _time_field(moment, char, count)


def _time_field(moment: datetime, char: str, count: int) -> str:
    simple = {"H": moment.hour, "h": moment.hour % 12 or 12, "m": moment.minute, "s": moment.second}
    if char in simple:
        return str(simple[char]).zfill(min(count, 2))
    if char in "fF":
        digits = f"{moment.microsecond:06d}0"[: min(count, 7)]
        return digits if char == "f" else digits.rstrip("0")
    if char == "t":
        return ("AM" if moment.hour < 12 else "PM")[:count]
    if char in "Kz":
        return _offset(moment, char, count)
    return char * count


def _offset(moment: datetime, char: str, count: int) -> str:
    delta = moment.utcoffset() or timedelta(0)
    if char == "K" and delta == timedelta(0):
        return "Z"
    minutes = int(delta.total_seconds()) // 60
    sign, minutes = ("-" if minutes < 0 else "+"), abs(minutes)
    hours = str(minutes // 60).zfill(1 if char == "z" and count == 1 else 2)
    return f"{sign}{hours}" if char == "z" and count < 3 else f"{sign}{hours}:{minutes % 60:02d}"


def format_datetime(moment: datetime, spec: str, single: bool = True) -> str:
    """``DateTime.ToString(spec, InvariantCulture)``."""
    if single and len(spec) == 1:
        if spec not in _STANDARD:
            raise ArgumentError(f"'{spec}' is not a valid date and time format.")
        spec = _STANDARD[spec]
    return "".join(_token(moment, m.group(0)) for m in _TOKEN.finditer(spec))


def _add_months(moment: datetime, months: int) -> datetime:
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    if not 1 <= year <= 9999:
        raise ArgumentError("the resulting date is out of range.")
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def add_duration(moment: datetime, duration: str) -> datetime:
    """``moment`` plus an ISO 8601 duration such as ``P1Y2M``, ``-P9D`` or ``PT1H30M``."""
    match = _DURATION.fullmatch(duration.strip())
    if match is None or duration.strip().rstrip("T").endswith("P"):
        raise ArgumentError(f"the value '{duration}' is not a valid ISO 8601 duration.")
    sign = -1 if match.group(1) else 1
    years, months, weeks, days, hours, minutes = (int(g or 0) for g in match.groups()[1:7])
    seconds = float(match.group(8) or 0)
    moment = _add_months(moment, sign * (years * 12 + months))
    delta = timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)
    try:
        return moment + sign * delta
    except OverflowError:
        raise ArgumentError("the resulting date is out of range.") from None


def _now(env: Env) -> datetime:
    stamp = env.ctx.deployment_properties.get("timestamp")
    return parse_datetime(stamp) if isinstance(stamp, str) else LBSIM_NOW


@register("utcNow", kind=Kind.ENV)
def _utc_now(env: Env, spec: Any = DEFAULT_NOW_FORMAT) -> str:
    return format_datetime(_now(env).astimezone(UTC), expect_str(spec, 1))


def _layout_of(text: str) -> str:
    return next(
        (fmt for pattern, fmt in _LAYOUTS if pattern.fullmatch(text)), "yyyy-MM-ddTHH:mm:ssZ"
    )


@register("dateTimeAdd")
def _date_time_add(base: Any, duration: Any, spec: Any = None) -> str:
    text = expect_str(base, 1)
    result = add_duration(parse_datetime(text), expect_str(duration, 2))
    layout = _layout_of(text.strip()) if spec is None else expect_str(spec, 3)
    return format_datetime(result.astimezone(UTC), layout)


@register("dateTimeToEpoch")
def _date_time_to_epoch(value: Any) -> int:
    return int(parse_datetime(expect_str(value, 1)).timestamp() // 1)


@register("dateTimeFromEpoch")
def _date_time_from_epoch(value: Any) -> str:
    try:
        moment = datetime.fromtimestamp(expect_int(value, 1), tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise ArgumentError(f"the epoch value {value} is out of range.") from None
    return format_datetime(moment, "yyyy-MM-ddTHH:mm:ssZ")


FUNCTIONS = register.table
