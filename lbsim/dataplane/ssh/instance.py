"""What an SSH server knows of the instance it stands for: its names, its address, its NAT
ports in the current plan, its host key and its temporary home (where SFTP and scp write;
shared by the instance's SSH ports: see :mod:`.homes`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from lbsim.control.types import Backend, Plan
from lbsim.dataplane.instances import InstanceIdentity

if TYPE_CHECKING:
    from lbsim.dataplane.ssh.handoff import Handoff
    from lbsim.dataplane.ssh.homes import Home
    from lbsim.dataplane.ssh.lib import asyncssh

__all__ = ["SshInstance"]

INSTANCE_FILE = "/etc/lbsim-instance"


@attrs.define(eq=False)
class SshInstance:
    """One running SSH server of a built-in instance (one per SSH port), and its
    connections."""

    backend: Backend
    identity: InstanceIdentity
    key: asyncssh.SSHKey
    home: Home
    plan: Callable[[], Plan]  # the plan running now (NAT ports change with it)
    own: Callable[[int], tuple[str, int] | None]  # its own server for a TCP port (trio thread)
    connections: set[Handoff] = attrs.Factory(set)  # (the SSH loop's thread only)

    @property
    def current(self) -> Backend:
        """The backend as the running plan has it now (its computer name may have come
        later than the server), else as the server started."""
        key = self.backend.key
        found = next((b for b in self.plan().backends if b.key == key), None)
        return found or self.backend

    @property
    def hostname(self) -> str:
        """``hostname``: the computer name Azure gives the VM, else the instance's name."""
        return self.current.computer_name or self.identity.name

    @property
    def private_ip(self) -> str:
        return self.backend.private_ip_address

    @property
    def label(self) -> str:
        return self.identity.label

    def fingerprint(self) -> str:
        return str(self.key.get_fingerprint("sha256"))

    def nat_ports(self) -> list[dict[str, Any]]:
        """The plan's NAT entries that reach this instance."""
        key = self.backend.key
        return [
            {
                "frontend": entry.frontend.address,
                "frontendPort": entry.frontend_port,
                "backendPort": entry.backend_port,
                "protocol": entry.protocol.value,
                "rule": entry.rule_name,
            }
            for entry in self.plan().nat
            if entry.backend is not None and entry.backend.key == key
        ]

    def describe(self) -> str:
        """The text of ``/etc/lbsim-instance``: which instance this is, as JSON."""
        facts = {
            "scaleSet": self.identity.scale_set,
            "instanceId": self.identity.instance_id,
            "name": self.identity.name,
            "computerName": self.hostname,
            "privateIp": self.private_ip,
            "natPorts": self.nat_ports(),
            "hostKey": self.fingerprint(),
        }
        return json.dumps(facts, indent=2) + "\n"

    def remove_home(self) -> None:
        """This server no longer holds the home (the last one to let go removes it)."""
        self.home.release()
