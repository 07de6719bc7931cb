"""Runtime tests run on both TCP engines: the reactor (Linux) and the portable streams one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import runtime_harness

from lbsim.dataplane.settings import DEFAULT_TCP_ENGINE, TcpEngine

# The modules whose every test runs once per engine (the others test one engine only).
_BOTH_ENGINES = {"test_runtime", "test_runtime_lifecycle", "test_runtime_families"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__ in _BOTH_ENGINES and "tcp_engine" in metafunc.fixturenames:
        metafunc.parametrize("tcp_engine", list(TcpEngine), indirect=True, ids=lambda e: e.value)


@pytest.fixture(autouse=True)
def tcp_engine(request: pytest.FixtureRequest) -> Iterator[TcpEngine]:
    """The engine that ``runtime_harness.settings`` gives the test's runtime."""
    engine: TcpEngine = getattr(request, "param", DEFAULT_TCP_ENGINE)
    runtime_harness.TCP_ENGINE = engine
    yield engine
    runtime_harness.TCP_ENGINE = DEFAULT_TCP_ENGINE
