"""lbsim as a library: ``lbsim.serve`` under trio, ``lbsim.run_in_thread`` for synchronous
code. Both load the template, start the load balancer, and hand back its handle once every
listener is bound; on the way out they stop it and let open flows drain.

```python
async with lbsim.serve("azuredeploy.json", parameters="azuredeploy.parameters.json") as lb:
    host, port = lb.endpoint("web", 0, 22)
    await lb.scale("web", 5)

with lbsim.run_in_thread("azuredeploy.json", params={"instanceCount": 2}) as lb:
    lb.stop("web", 1)
```

Settings (``config``) are a TOML file's path or a mapping of the same keys as ``lbsim.toml``
(``{"idle_timeout_scale": 0.01, "backends": {"web": "127.0.0.1:{2200+instance}"}}``). Unlike
``lbsim up``, the library serves no control API and logs no flows unless ``config`` asks
(``api_port``, ``log_flows``), and reads no ``LBSIM_*`` variables. ``ready_file`` and ``watch``
are ``lbsim up``'s: to reload on a file change here, run
:func:`lbsim.api.watch.watch_files` in a nursery of your own. (The mapping: lbsim.api.libconfig.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from lbsim.api import assertions
from lbsim.api.config import resolve
from lbsim.api.handle import ChangeReport
from lbsim.api.libconfig import config_args
from lbsim.api.session import Session
from lbsim.api.source import Source
from lbsim.dataplane.faults import Fault
from lbsim.errors import LbsimError

__all__ = ["ThreadedLoadBalancer", "run_in_thread", "serve"]

T = TypeVar("T")
_START_TIMEOUT_S = 60.0
_config_args = config_args  # (its name here before it had a module of its own)


@asynccontextmanager
async def serve(
    template: str | Path,
    *,
    parameters: str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    config: str | Path | Mapping[str, Any] | None = None,
    fill_missing: bool = False,
    context: Mapping[str, Any] | None = None,
    links: Mapping[str, str] | None = None,
) -> AsyncIterator[Session]:
    """Run a load balancer for ``template`` inside the caller's trio run."""
    source = Source.of(
        template,
        parameters=parameters,
        params=params,
        fill_missing=fill_missing,
        context=context,
        links=links,
    )
    args = config_args(config)
    session = Session(source, resolve(args, {}), config_args=args, environ={})
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(session.run)
            try:
                yield session
            finally:
                session.shutdown()
    except BaseExceptionGroup as group:  # a bind failure, the caller's own assertion: itself
        raise unwrapped(group) from None


def unwrapped(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error inside trio's exception groups (cancellations aside), else the first
    lbsim error, else the group itself."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        error = pending.pop(0)
        if isinstance(error, BaseExceptionGroup):
            pending = list(error.exceptions) + pending
        elif not isinstance(error, trio.Cancelled):
            leaves.append(error)
    if len(leaves) == 1:
        return leaves[0]
    return next((e for e in leaves if isinstance(e, LbsimError)), group)


class ThreadedLoadBalancer:
    """The handle of a load balancer running in a thread of its own: the same methods as
    :class:`~lbsim.api.session.Session`, synchronous."""

    def __init__(self, session: Session, token: trio.lowlevel.TrioToken) -> None:
        self.session = session
        self._token = token

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return trio.from_thread.run_sync(lambda: fn(*args, **kwargs), trio_token=self._token)

    def _change(self, fn: Callable[..., Any], *args: Any) -> ChangeReport:
        report: ChangeReport = trio.from_thread.run(fn, *args, trio_token=self._token)
        return report

    @property
    def api_url(self) -> str | None:
        return self.session.api_url

    def readiness(self) -> str | None:
        return self._call(self.session.readiness)

    def ports(self) -> list[dict[str, Any]]:
        return self._call(self.session.ports)

    def instances(self) -> list[dict[str, Any]]:
        return self._call(self.session.instances)

    def endpoint(
        self, scale_set: str, instance_id: int, backend_port: int, protocol: str = "Tcp"
    ) -> tuple[str, int]:
        return self._call(self.session.endpoint, scale_set, instance_id, backend_port, protocol)

    def check(self, **flow: Any) -> dict[str, Any]:
        return self._call(self.session.check, **flow)

    def rules(self, instance: str, direction: str = "Inbound") -> dict[str, Any]:
        return self._call(self.session.rules, instance, direction)

    def metrics(self) -> bytes:
        return self._call(self.session.metrics)

    def probed(self, scale_set: str, instance_id: int) -> dict[str, bool | None]:
        return self._call(self.session.probed, scale_set, instance_id)

    def scale(self, scale_set: str, capacity: int) -> ChangeReport:
        return self._change(self.session.scale, scale_set, capacity)

    def start(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._change(self.session.start, scale_set, instance_id)

    def stop(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._change(self.session.stop, scale_set, instance_id)

    def restart(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._change(self.session.restart, scale_set, instance_id)

    def delete(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._change(self.session.delete, scale_set, instance_id)

    def reimage(self, scale_set: str, instance_id: int) -> ChangeReport:
        return self._change(self.session.reimage, scale_set, instance_id)

    def protect(self, scale_set: str, instance_id: int, on: bool = True) -> ChangeReport:
        return self._change(self.session.protect, scale_set, instance_id, on)

    def reload(self) -> ChangeReport:
        return self._change(self.session.reload)

    def faults(self) -> list[dict[str, Any]]:
        return self._call(self.session.faults)

    def add_fault(self, fault: Fault | str, **options: Any) -> dict[str, Any]:
        """As :meth:`lbsim.api.session.Session.add_fault`."""
        return self._call(self.session.add_fault, fault, **options)

    def remove_fault(self, name: str) -> dict[str, Any]:
        return self._call(self.session.remove_fault, name)

    @contextmanager
    def fault(self, fault: Fault | str, **options: Any) -> Iterator[dict[str, Any]]:
        """``with lb.fault("latency", latency=200):`` set inside the block, removed after."""
        made = self.add_fault(fault, **options)
        try:
            yield made
        finally:
            if any(f["name"] == made["name"] for f in self.faults()):
                self.remove_fault(made["name"])

    def open_tunnel(
        self, target: str, resource_port: int, port: int = 0, bastion: str | None = None
    ) -> dict[str, Any]:
        """As :meth:`lbsim.api.session.Session.open_tunnel`."""
        made: dict[str, Any] = trio.from_thread.run(
            self.session.open_tunnel, target, resource_port, port, bastion, trio_token=self._token
        )
        return made

    def close_tunnel(self, tunnel_id: str) -> dict[str, Any]:
        return self._call(self.session.close_tunnel, tunnel_id)

    def tunnels(self) -> list[dict[str, Any]]:
        return self._call(self.session.tunnels)

    @contextmanager
    def bastion_tunnel(
        self, target: str, resource_port: int, port: int = 0, bastion: str | None = None
    ) -> Iterator[tuple[str, int]]:
        """``with lb.bastion_tunnel("web/1", 22) as (host, port):`` open inside the block."""
        made = self.open_tunnel(target, resource_port, port, bastion)
        try:
            yield made["listenAddress"], made["listenPort"]
        finally:
            if any(t["id"] == made["id"] for t in self.tunnels()):
                self.close_tunnel(made["id"])

    # --- for tests (see lbsim.api.assertions and docs/testing.md) ---------------------------
    def assert_reachable(
        self,
        scale_set: str,
        instance_id: int,
        backend_port: int,
        source: str | None = None,
        protocol: str = "Tcp",
    ) -> None:
        """Connect for real through the instance's NAT entry, as a client the NSGs see as
        ``source`` (None: as lbsim presents 127.0.0.1); AssertionError, explained with the
        NAT entry and the deciding NSG rule, unless the flow gets through."""
        self._expect(True, scale_set, instance_id, backend_port, source=source, protocol=protocol)

    def assert_denied(
        self,
        scale_set: str,
        instance_id: int,
        backend_port: int,
        source: str | None = None,
        protocol: str = "Tcp",
    ) -> None:
        """As :meth:`assert_reachable`, expecting the flow not to get through (reset,
        refused; for UDP, no answer)."""
        self._expect(False, scale_set, instance_id, backend_port, source=source, protocol=protocol)

    def wait_for(
        self, condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.05
    ) -> T:
        """Call ``condition`` until it returns something true, and return that; a
        TimeoutError naming what it returned last when ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            seen = condition()
            if seen:
                return seen
            if time.monotonic() >= deadline:
                raise TimeoutError(f"not true within {timeout:g} s; last seen: {seen!r}")
            time.sleep(interval)

    def wait_probed_up(self, scale_set: str, instance_id: int, timeout: float = 10.0) -> None:
        """Wait until every health probe that watches the instance says it is up."""
        if not self.probed(scale_set, instance_id):
            raise LbsimError(
                "ResourceNotFound", f"no health probe watches {scale_set}/{instance_id}."
            )

        def up() -> dict[str, bool | None] | None:
            now = self.probed(scale_set, instance_id)
            return None if not all(now.values()) else now

        try:
            self.wait_for(up, timeout)
        except TimeoutError:
            now = self.probed(scale_set, instance_id)
            raise TimeoutError(
                f"{scale_set}/{instance_id} not probed up within {timeout:g} s: {now}"
            ) from None

    def _expect(
        self,
        reach: bool,
        scale_set: str,
        instance_id: int,
        backend_port: int,
        *,
        source: str | None,
        protocol: str,
    ) -> None:
        target = self.endpoint(scale_set, instance_id, backend_port, protocol)
        client = "127.0.0.1"
        if source is not None:
            client = trio.from_thread.run(self.session.client_for, source, trio_token=self._token)
        tried = assertions.attempt(client, target, protocol, assertions.HOLD_S)
        if assertions.silent(tried):  # open, no byte: a down fault holds it, or a quiet server
            fault = self._call(self._holding, scale_set, instance_id, backend_port, protocol)
            if fault is not None:
                tried = assertions.held(tried, fault)
        if tried.reached == reach:
            return
        what = f"{protocol} port {backend_port} of {scale_set}/{instance_id}"
        expected = "reachable" if reach else "denied"
        entry = next(
            (
                row
                for row in self.ports()
                if (row.get("listenAddress"), row.get("listenPort")) == target
                and row["protocol"].lower() == protocol.lower()
            ),
            None,
        )
        if entry is None:  # the plan changed while the attempt was made
            host, port = target
            raise LbsimError(
                "ResourceNotFound",
                f"{what}: expected {expected}; from {client} to {host}:{port}: "
                f"{tried.outcome}; and no {protocol} NAT entry listens at {host}:{port} now "
                "to explain it (did the plan change while the assertion ran?)",
            )
        presented = source or self._call(self.session.runtime.settings.sources.present, client)
        verdict = self.check(
            source=presented,
            frontend_port=entry["frontendPort"],
            frontend=entry["frontendIPAddress"],
            protocol=protocol,
        )
        raise AssertionError(assertions.explain(expected, what, tried, entry, verdict))

    def _holding(
        self, scale_set: str, instance_id: int, backend_port: int, protocol: str
    ) -> Fault | None:
        """The ``down`` fault that holds new flows to the instance's port, if any (called
        in lbsim's thread: the faults and the plan are read there)."""
        session = self.session
        entry = assertions.nat_entry(session.plan, scale_set, instance_id, backend_port, protocol)
        return assertions.holding_fault(session.runtime.faults, entry)


@contextmanager
def run_in_thread(template: str | Path, **options: Any) -> Iterator[ThreadedLoadBalancer]:
    """:func:`serve` in a thread of its own running trio, for synchronous code; takes the
    same options. Returns once ready; a template that does not load raises here."""
    started = threading.Event()
    found: dict[str, Any] = {}

    async def main() -> None:
        done = trio.Event()
        found["done"] = done
        async with serve(template, **options) as session:
            found["handle"] = ThreadedLoadBalancer(session, trio.lowlevel.current_trio_token())
            started.set()
            await done.wait()

    def thread_main() -> None:
        try:
            trio.run(main)
        except BaseException as error:  # handed to the caller's thread
            found["error"] = error
        finally:
            started.set()

    thread = threading.Thread(target=thread_main, name="lbsim", daemon=True)
    thread.start()
    if not started.wait(_START_TIMEOUT_S):
        raise LbsimError(
            "StartTimeout",
            f"lbsim did not start within {_START_TIMEOUT_S:g} s (its thread goes on)",
        )
    if "error" in found:
        thread.join()
        raise found["error"]
    handle: ThreadedLoadBalancer = found["handle"]
    try:
        yield handle
    finally:
        trio.from_thread.run_sync(found["done"].set, trio_token=handle._token)
        thread.join()
        if "error" in found:
            raise found["error"]
