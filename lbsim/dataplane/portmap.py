"""Where a frontend listens on this machine, as against where Azure would put it.

The plan stays Azure's: a NAT pool's frontend port 50000 is 50000 in the NAT table, in every
NSG judgement and in the flow logs. A port map changes only the local address a listener
binds, so that several lbsims running the same template at once (pytest-xdist's workers)
never fight over one address and port:

- ``azure``: Azure's exact port on the frontend's loopback address (``lbsim up``'s default);
- ``per-worker`` / ``per-worker:N``: Azure's exact ports, but worker N's frontends listen on
  ``127.0.<N+1>.d`` instead of ``127.0.0.d`` and its built-in instances take their addresses
  from ``127.<100+N>.0.0/16`` (the worker of a bare ``per-worker`` is pytest-xdist's
  ``PYTEST_XDIST_WORKER``, ``gwN``; 0 outside xdist). Frontends stay inside 127.0.0.0/16
  because 127.1.0.0/16 is where ``lbsim up``'s built-in instances live: another lbsim on
  the machine never serves on a worker's address;
- ``offset:N``: every frontend port plus N, all on 127.0.0.1;
- ``ephemeral``: any free port the system gives (bind to port 0), all on 127.0.0.1.

The last two are for machines where only 127.0.0.1 is usable (macOS, some containers): every
frontend of 127.0.0.x listens on 127.0.0.1 and every built-in instance serves on 127.0.0.1,
each on a free port of its own (``instance_network`` is then the one address 127.0.0.1/32).
Under ``offset:N`` two frontends with one Azure port (two public IPs with a rule on port 80
each) both want 127.0.0.1:80+N, so the second fails to bind (``FrontendBindFailed``).

Frontends that are not on ``127.0.0.x`` (``::1``, or an address given with ``--frontend``)
keep their address under every map. The handle (``endpoint``, ``ports``) always says where a
listener is bound.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from enum import Enum

import attrs

DEFAULT_INSTANCE_NETWORK = "127.1.0.0/16"
SHARED_LOOPBACK = "127.0.0.1"  # offset:N and ephemeral: every listener and instance here
MAX_WORKER = 155  # worker N's instances are in 127.<100+N>.0.0/16
_WORKER = re.compile(r"gw(\d+)")


class PortMapKind(Enum):
    AZURE = "azure"
    PER_WORKER = "per-worker"
    OFFSET = "offset"
    EPHEMERAL = "ephemeral"


@attrs.frozen
class PortMap:
    """How a frontend's Azure address and port become the address a listener binds."""

    kind: PortMapKind = PortMapKind.AZURE
    value: int = 0  # the worker of per-worker, the N of offset:N

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] | None = None) -> PortMap:
        """``azure``, ``per-worker``, ``per-worker:N``, ``offset:N`` or ``ephemeral``;
        ValueError says what is wrong (the settings name where it came from)."""
        name, sep, number = str(text).strip().lower().partition(":")
        try:
            kind = PortMapKind(name)
        except ValueError:
            raise ValueError(
                "choose azure, per-worker, per-worker:N, offset:N or ephemeral"
            ) from None
        if kind is PortMapKind.PER_WORKER:
            worker = _number(number, "per-worker:N") if sep else xdist_worker(environ)
            if worker > MAX_WORKER:
                raise ValueError(f"worker {worker}: per-worker serves workers 0 to {MAX_WORKER}")
            return cls(kind, worker)
        if kind is PortMapKind.OFFSET:
            if not sep:
                raise ValueError("offset takes a number: offset:N")
            return cls(kind, _number(number, "offset:N"))
        if sep:
            raise ValueError(f"{kind.value} takes no ':{number}'")
        return cls(kind)

    def __str__(self) -> str:
        if self.kind in (PortMapKind.PER_WORKER, PortMapKind.OFFSET):
            return f"{self.kind.value}:{self.value}"
        return str(self.kind.value)

    @property
    def instance_network(self) -> str:
        """Where built-in instances take their loopback addresses from."""
        if self.kind is PortMapKind.PER_WORKER:
            return f"127.{100 + self.value}.0.0/16"
        if self.kind in (PortMapKind.OFFSET, PortMapKind.EPHEMERAL):
            return f"{SHARED_LOOPBACK}/32"  # one address: every instance on a free port
        return DEFAULT_INSTANCE_NETWORK

    def listen(self, address: str, port: int) -> tuple[str, int]:
        """The local address and port to bind for a frontend at ``address``:``port``. A
        port past 65535 (``offset:N`` too large) is returned as it is: binding it fails
        with a clear message (:func:`check_port`)."""
        if self.kind is PortMapKind.OFFSET:
            return _shared_address(address), port + self.value
        if self.kind is PortMapKind.EPHEMERAL:
            return _shared_address(address), 0
        if self.kind is PortMapKind.PER_WORKER:
            return _worker_address(address, self.value), port
        return address, port


AZURE_PORTS = PortMap()  # the default: Azure's own addresses and ports


def check_port(port: int, port_map: PortMap) -> None:
    """An OSError (as a failed bind) for a mapped port that is no port."""
    if not 0 <= port <= 65535:
        raise OSError(0, f"port map {port_map} moves it to port {port}, past 65535")


def xdist_worker(environ: Mapping[str, str] | None = None) -> int:
    """pytest-xdist's worker number (``PYTEST_XDIST_WORKER=gw3`` is 3); 0 outside xdist."""
    env = os.environ if environ is None else environ
    found = _WORKER.fullmatch(env.get("PYTEST_XDIST_WORKER", ""))
    return int(found.group(1)) if found else 0


def _worker_address(address: str, worker: int) -> str:
    ip = _azure_loopback(address)
    return address if ip is None else f"127.0.{worker + 1}.{ip.packed[3]}"


def _shared_address(address: str) -> str:
    """127.0.0.1 for a frontend lbsim numbered in 127.0.0.0/24; any other as it is."""
    return address if _azure_loopback(address) is None else SHARED_LOOPBACK


def _azure_loopback(address: str) -> ipaddress.IPv4Address | None:
    """The address when it is one of the loopback addresses lbsim gives frontends."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if not isinstance(ip, ipaddress.IPv4Address) or ip not in _AZURE_LOOPBACK:
        return None
    return ip


def _number(text: str, form: str) -> int:
    """A whole number in ASCII digits, at most 5 of them (a port or an offset is below
    100000). ``str.isdigit`` alone takes other scripts' digits and superscripts, and
    ``int()`` of those or of thousands of digits fails with Python's own message."""
    if not (text.isascii() and text.isdigit() and len(text) <= 5):
        shown = text if len(text) <= 20 else f"{text[:20]}... ({len(text)} characters)"
        raise ValueError(f"{form} takes a whole number of at most 5 ASCII digits, not {shown!r}")
    return int(text)


_AZURE_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/24")  # public IPs, internal frontends
