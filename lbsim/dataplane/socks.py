"""A SOCKS5 endpoint standing for a VM inside the virtual network (being written: issue 13)."""

from __future__ import annotations

import trio

from lbsim.dataplane.vnet import VirtualNetwork

__all__ = ["serve"]


async def serve(
    vnet: VirtualNetwork,
    address: tuple[str, int],
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve SOCKS5 CONNECT on ``address`` until cancelled; reports the bound address."""
    task_status.started(address)
    await trio.sleep_forever()
