"""A tunnel opened with a lease closes once the lease runs out unrenewed (a killed
``lbsim bastion tunnel`` cannot close its own); renewing it holds it; one without a lease is
held until closed. Trio's autojump clock stands for the waiting."""

from __future__ import annotations

from typing import Any, cast

import pytest
import trio
import trio.testing
from vnet_harness import BASTION

from lbsim.dataplane.tunnels import Tunnels
from lbsim.errors import LbsimError


async def _open(tunnels: Tunnels, lease_s: float | None) -> str:
    made = await tunnels.open(BASTION, "vmss/1", "10.0.0.5", 22, lease_s=lease_s)
    return made.id


async def test_an_unrenewed_lease_closes_the_tunnel_and_says_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notices: list[str] = []
    tunnels = Tunnels(cast(Any, None), notices.append)
    async with trio.open_nursery() as nursery:
        await nursery.start(tunnels.run)
        leased = await _open(tunnels, 15)
        held = await _open(tunnels, None)
        for _ in range(3):  # renewed within each lease: held past three of them
            await trio.sleep(14)
            assert tunnels.renew(leased).to_json()["leaseSeconds"] == 15
        await trio.sleep(14)
        assert [t.id for t in tunnels.all()] == [leased, held]
        await trio.sleep(2)
        assert [t.id for t in tunnels.all()] == [held]
        with pytest.raises(LbsimError) as gone:
            tunnels.renew(leased)
        assert gone.value.code == "ResourceNotFound"
        await trio.sleep(3600)
        assert [t.id for t in tunnels.all()] == [held]
        assert "leaseSeconds" not in tunnels.all()[0].to_json()
        nursery.cancel_scope.cancel()
    assert notices == [f"bastion: tunnel {leased} closed: its 15 s lease ran out"]
