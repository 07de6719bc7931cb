"""Runtime tests run on every way lbsim can relay TCP: the reactor as a trio task (Linux),
the reactor owning the thread with trio as its guest (``lbsim up`` on Linux), and the
portable streams engine."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import runtime_harness
import trio

from lbsim.dataplane import host
from lbsim.dataplane.fastpath import FastPath
from lbsim.dataplane.reactor import Reactor
from lbsim.dataplane.settings import DEFAULT_TCP_ENGINE, TcpEngine

# How the tests name the ways: the reactor hosted is the reactor engine, run by host.run.
_HOSTED = "hosted"
_ENGINES = [TcpEngine.REACTOR.value, _HOSTED, TcpEngine.STREAMS.value]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked ``every_engine`` runs once per engine (the ``tcp_engine`` fixture)."""
    every = metafunc.definition.get_closest_marker("every_engine") is not None
    if every and "tcp_engine" in metafunc.fixturenames:
        metafunc.parametrize("tcp_engine", _ENGINES, indirect=True)


def _hosted_run(fn: Callable[[], Awaitable[Any]], **_trio_options: Any) -> Any:
    """pytest-trio's runner for the hosted way (no test of these modules passes a clock)."""
    return host.run(fn)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        hosted = callspec is not None and callspec.params.get("tcp_engine") == _HOSTED
        if hosted and inspect.iscoroutinefunction(getattr(item, "obj", None)):
            # First among the item's trio markers: pytest-trio runs the test with host.run.
            item.add_marker(pytest.mark.trio(run=_hosted_run), append=False)


@pytest.fixture(autouse=True)
def tcp_engine(request: pytest.FixtureRequest) -> Iterator[TcpEngine]:
    """The engine that ``runtime_harness.settings`` gives the test's runtime."""
    name: str = getattr(request, "param", DEFAULT_TCP_ENGINE.value)
    engine = TcpEngine.REACTOR if name == _HOSTED else TcpEngine(name)
    runtime_harness.TCP_ENGINE = engine
    yield engine
    runtime_harness.TCP_ENGINE = DEFAULT_TCP_ENGINE


@pytest.fixture
async def a_reactor(nursery: trio.Nursery) -> Reactor:
    """A reactor of the test's own, running in the test's nursery (stopped with the test)."""
    made = Reactor(FastPath())
    await nursery.start(made.run)
    return made
