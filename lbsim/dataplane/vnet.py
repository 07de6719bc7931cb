"""Connections inside the virtual network, for what stands in it: an SSH instance's
``direct-tcpip`` channels (``ssh -J``, ``ssh -L``), the SOCKS endpoint and bastion tunnels.

Each connection is judged by the destination's NSGs with the sender's private address as
source (:func:`lbsim.control.vnet.reach`), then reaches what serves that instance's port: its
built-in server, or the user's service (``backends``). A built-in instance serves the ports
its plan's rules and probes reach, and its operating system's remote-login port (22, or 3389
on Windows) as a VM does; any other port refuses the connection.

Everything here runs in the runtime's trio thread; another thread (the SSH servers' asyncio
loop) asks through :meth:`VirtualNetwork.resolve_from_thread`.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs
import trio

from lbsim.control.vnet import Outcome, Reach, default_source, reach
from lbsim.errors import LbsimError
from lbsim.model import TransportProtocol

if TYPE_CHECKING:
    from lbsim.control.types import Plan
    from lbsim.dataplane.runtime import Runtime
    from lbsim.dataplane.settings import RuntimeSettings

__all__ = ["Refused", "Resolved", "Throttle", "VirtualNetwork", "VnetError", "listen"]

Target = tuple[str, int]


class VnetError(Exception):
    """A connection inside the virtual network that cannot be made; ``reach`` says why."""

    def __init__(self, reach: Reach, message: str) -> None:
        super().__init__(message)
        self.reach = reach
        self.message = message


class Refused(VnetError):
    """The destination is allowed and running, but nothing listens on that port."""


@attrs.frozen
class Resolved:
    """A judged connection and where it goes (None unless allowed and served)."""

    reach: Reach
    target: Target | None = None

    def check(self) -> Target:
        """The target; else the error that says why there is none."""
        if self.target is not None:
            return self.target
        if self.reach.outcome is Outcome.ALLOWED:
            where = f"{self.reach.destination}:{self.reach.port}"
            raise Refused(self.reach, f"{where}: connection refused (nothing listens there)")
        raise VnetError(self.reach, self.reach.describe())


class Throttle:
    """Notices of one kind at most once per ``every_s`` (a second): a peer that floods the
    SOCKS endpoint, or a client retrying a denied flow, must not flood ``lbsim up``'s stderr.
    What is held back is counted and told with the next line of its kind, "(and N more)"."""

    def __init__(
        self,
        notice: Callable[[str], None],
        every_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notice = notice
        self._every_s = every_s
        self._clock = clock
        self._quiet_until: dict[str, float] = {}
        self.untold: Counter[str] = Counter()

    def __call__(self, kind: str, line: str) -> None:
        now = self._clock()
        if now < self._quiet_until.get(kind, -math.inf):
            self.untold[kind] += 1
            return
        held = self.untold.pop(kind, 0)
        self._quiet_until[kind] = now + self._every_s
        self._notice(f"{line} (and {held} more)" if held else line)


class VirtualNetwork:
    """Judges and opens connections inside the virtual network of a running runtime, and
    counts them by outcome (``allowed``, ``denied``, ``stopped``, ``unreachable``,
    ``refused``, ``failed``)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.counts: Counter[str] = Counter()
        self.tell = Throttle(self.notice)  # refusals: at most one line a second per outcome

    @property
    def plan(self) -> Plan:
        """The plan the runtime runs now."""
        return self._runtime.plan

    @property
    def settings(self) -> RuntimeSettings:
        """The settings the runtime runs with now."""
        return self._runtime.settings

    def notice(self, line: str) -> None:
        """One line for the operator (``lbsim up`` writes them to stderr)."""
        self._runtime.notice(line)

    def default_source(self) -> str | None:
        """The address the SOCKS endpoint stands at unless set: see
        :func:`lbsim.control.vnet.default_source`."""
        return self._runtime.settings.socks_source or default_source(self._runtime.plan)

    def resolve(
        self, source: str, destination: str, port: int, *, network: str | None = None
    ) -> Resolved:
        """Judge a TCP connection from ``source`` to ``destination``:``port`` on the current
        plan, inside the sender's virtual network (``network``; None: the one ``source`` is
        in), and find what serves it (trio thread only)."""
        runtime = self._runtime
        plan, guard = runtime.plan, runtime.guard
        judged = reach(plan, source, destination, port, network=network, guard=guard)
        target = None
        if judged.outcome is Outcome.ALLOWED:
            assert judged.backend is not None
            target = runtime.backends.target(judged.backend, TransportProtocol.TCP, port)
            if target is None:
                target = runtime.backends.user_target(runtime.settings, judged.backend, port)
        resolved = Resolved(judged, target)
        self._count(resolved)
        return resolved

    def _count(self, resolved: Resolved) -> None:
        outcome = resolved.reach.outcome
        if outcome is Outcome.ALLOWED and resolved.target is None:
            self.counts["refused"] += 1
        else:
            self.counts[outcome.value] += 1
        if outcome is not Outcome.ALLOWED:
            self.tell(outcome.value, f"vnet: {resolved.reach.describe()}")

    def resolve_from_thread(
        self, token: trio.lowlevel.TrioToken, source: str, destination: str, port: int
    ) -> Resolved:
        """:meth:`resolve`, from another thread (blocks it until the trio thread answers)."""
        return trio.from_thread.run_sync(self.resolve, source, destination, port, trio_token=token)

    async def open(
        self, source: str, destination: str, port: int, *, network: str | None = None
    ) -> tuple[trio.SocketStream, Reach]:
        """Judge and connect; raises :class:`VnetError` (:class:`Refused` when nothing
        listens, or the connect fails)."""
        resolved = self.resolve(source, destination, port, network=network)
        host, target_port = resolved.check()
        timeout = self._runtime.settings.connect_timeout_s
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_tcp_stream(host, target_port)
        except (OSError, trio.TooSlowError) as error:
            self.counts["failed"] += 1
            why = getattr(error, "strerror", None) or "no answer"
            where = f"{destination}:{port}"
            raise Refused(resolved.reach, f"{where}: connection failed ({why})") from None
        return stream, resolved.reach


async def listen(address: tuple[str, int], code: str, what: str) -> list[trio.SocketListener]:
    """TCP listeners on ``address`` for what stands in the network (the SOCKS endpoint, a
    tunnel); a port that cannot be bound is ``code``, an LbsimError naming ``what``."""
    host, port = address
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as error:
        why = error.strerror or str(error)
        raise LbsimError(code, f"cannot listen on {host}:{port} for {what}: {why}") from None
