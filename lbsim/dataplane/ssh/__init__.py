"""Built-in instances that speak real SSH (being written: see issue 13)."""

from __future__ import annotations

import trio

from lbsim.dataplane.settings import SshSettings
from lbsim.dataplane.vnet import VirtualNetwork

__all__ = ["SshHost"]


class SshHost:
    """Runs the SSH servers of every built-in instance of one runtime."""

    def __init__(self, settings: SshSettings, vnet: VirtualNetwork) -> None:
        self.settings = settings
        self.vnet = vnet

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled."""
        task_status.started()
        await trio.sleep_forever()
