"""How the values of lbsim's settings are read: ASCII digits only, finite numbers, ports,
addresses and paths checked, each refusal a ValueError that the settings table turns into
``InvalidSetting`` naming the setting (see :mod:`lbsim.api.config`)."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from typing import Any

from lbsim.dataplane.portmap import PortMap
from lbsim.errors import ConfigError

_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")
_DECIMAL = re.compile(r"[+-]?([0-9]{1,18}(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?")
# a host name as DNS spells one: labels of 1-63 letters, digits and hyphens (RFC 1035)
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def digits(value: Any, pattern: re.Pattern[str], what: str) -> str:
    """The text of a number written in ASCII digits. Python's int() and float() also take
    other scripts' digits (Arabic-Indic, fullwidth), underscores and any length: a setting
    takes 0-9 only, so that what a user reads is what lbsim uses."""
    text = str(value).strip()
    if not pattern.fullmatch(text):
        raise ValueError(f"not {what} (ASCII digits 0-9)")
    return text


def integer(value: Any) -> int:
    return int(digits(value, _INTEGER, "an integer"))


def decimal(value: Any) -> float:
    result = float(digits(value, _DECIMAL, "a number"))
    if not math.isfinite(result):
        raise ValueError("not a finite number")
    return result


def positive(
    kind: Callable[[Any], Any], *, above: float | None = None, why: str = ""
) -> Callable[[Any], Any]:
    """A number not below 0 (with ``above``: greater than it, ``why`` saying why)."""

    def parse(value: Any) -> Any:
        result = kind(value)
        if above is not None and result <= above:
            raise ValueError(f"must be greater than {above:g}{why}")
        if result < 0:
            raise ValueError("must not be negative")
        return result

    return parse


def choice(*options: str) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = str(value).lower()
        if text not in options:
            raise ValueError(f"choose one of {', '.join(options)}")
        return text

    return parse


def switch(value: Any) -> bool:
    text = str(value).lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("choose true or false")


def port(value: Any) -> int:
    port = integer(value)
    if not 0 <= port <= 65535:
        raise ValueError("not a port number")
    return port


def port_or_off(value: Any) -> int | None:
    """A port to listen on: 0 picks a free one, ``off`` serves nothing."""
    if str(value).lower() == "off":
        return None
    return port(value)


def address(value: Any) -> str:
    """An IP address or a host name that can be looked up: a name whose label is over 63
    characters (or not ASCII) fails inside the resolver's IDNA codec, at bind time."""
    text = str(value).strip()
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    labels = text.removesuffix(".").split(".")
    if len(text) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise ValueError(
            "not an IP address or a host name (labels of 1-63 letters, digits and hyphens)"
        )
    return text


def file_path(value: Any) -> str:
    """A file or folder name: the operating system takes no NUL in one."""
    text = str(value)
    if not text or "\0" in text:
        raise ValueError("not a file name (empty, or holds a NUL character)")
    return text


def parse_port_map(value: Any) -> PortMap:
    """A port map (lbsim.dataplane.portmap); a bare per-worker reads PYTEST_XDIST_WORKER."""
    return value if isinstance(value, PortMap) else PortMap.parse(str(value))


def port_list(value: Any) -> frozenset[int]:
    """Ports 1-65535, comma-separated (``22,2222``) or a list."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    ports = frozenset(port(item) for item in items if str(item).strip())
    if 0 in ports:
        raise ValueError("port 0 is not a backend port")
    return ports


def endpoint_or_off(value: Any) -> tuple[str, int] | None:
    """``ADDRESS:PORT`` (``[v6]:PORT``), a bare port (on 127.0.0.1), or ``off``."""
    text = str(value).strip()
    if text.lower() == "off":
        return None
    if text.isascii() and text.isdigit():
        return "127.0.0.1", port(text)
    host, sep, number = text.rpartition(":")
    if not sep:
        raise ValueError("not ADDRESS:PORT, a port, or off")
    return address(host), port(number)


def ip_address(value: Any) -> str:
    """An IP address (no host name)."""
    try:
        return str(ipaddress.ip_address(str(value).strip().strip("[]")))
    except ValueError:
        raise ValueError("not an IP address") from None


def read_authorized_keys(path: str) -> tuple[str, ...]:
    """The key lines of an OpenSSH authorized_keys file (comments and blank lines left out)."""
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(1 << 20)
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            "InvalidSetting", f"ssh_authorized_keys: cannot read {path!r}: {error}"
        ) from None
    lines = tuple(
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    )
    if not lines:
        raise ConfigError("InvalidSetting", f"ssh_authorized_keys: {path!r} holds no key.")
    return lines
