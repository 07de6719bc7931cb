"""Fixtures: the control API over a FakeHandle, in the test's own nursery (stopped with the
test)."""

from __future__ import annotations

import pytest
import trio
from api_client import TOKEN, Served, serve


@pytest.fixture
async def api(nursery: trio.Nursery) -> Served:
    """The API without a token."""
    return await serve(nursery, None)


@pytest.fixture
async def secured(nursery: trio.Nursery) -> Served:
    """The API that requires ``Authorization: Bearer TOKEN``."""
    return await serve(nursery, TOKEN)
