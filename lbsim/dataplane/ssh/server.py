"""One SSH connection to a built-in instance: who may log in, and where its ``direct-tcpip``
channels (``ssh -L``, ``ssh -J``) may go inside the virtual network.

Authentication follows :class:`~lbsim.dataplane.settings.SshSettings`: any user name; a
password (any, or only the one set) and a public key (any, or only the listed ones: those
asyncssh checks itself with ``authorized_client_keys``). "Any key" still has asyncssh
verify the client's signature, so the client proves it holds the key. The settings are read
as they are now (a reload changes them) for each connection.

A channel to another address is judged as the instance's own connection would be: by the
destination's NSGs with this instance's private address as source. A channel to the instance
itself (``localhost``, ``127.0.0.1``, ``::1``, its computer name or private address) reaches
its own ports unfiltered, as local traffic on a VM is. Remote forwarding (``ssh -R``) is
refused."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
from collections import Counter
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import attrs
import trio

from lbsim.control.vnet import Outcome
from lbsim.dataplane.settings import SshAuth, SshSettings
from lbsim.dataplane.ssh.instance import SshInstance
from lbsim.dataplane.ssh.lib import asyncssh
from lbsim.dataplane.vnet import Resolved, VirtualNetwork, VnetError

__all__ = ["Context", "InstanceConnection"]


@attrs.frozen
class Context:
    """What every connection of a runtime shares."""

    vnet: VirtualNetwork
    token: trio.lowlevel.TrioToken
    counts: Counter[str]

    @property
    def settings(self) -> SshSettings:
        """The SSH settings the runtime runs with now."""
        return self.vnet.settings.ssh


class InstanceConnection(asyncssh.SSHServer):
    """The server side of one connection (asyncssh makes one per connection)."""

    def __init__(self, instance: SshInstance, context: Context) -> None:
        self.instance = instance
        self.context = context
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return True  # every user authenticates (any user name is accepted)

    def password_auth_supported(self) -> bool:
        return self.context.settings.auth is not SshAuth.PUBLICKEY

    def validate_password(self, username: str, password: str) -> bool:
        wanted = self.context.settings.password
        if wanted is None or hmac.compare_digest(password.encode(), wanted.encode()):
            return True
        self.context.counts["auth_failed"] += 1
        return False

    def public_key_auth_supported(self) -> bool:
        return self.context.settings.auth is not SshAuth.PASSWORD

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        """Reached for keys ``authorized_client_keys`` did not list: any key when no list
        is set (asyncssh then checks the signature), else none."""
        if self.context.settings.authorized_keys is None:
            return True
        self.context.counts["auth_failed"] += 1
        return False

    def connection_requested(
        self, dest_host: str, dest_port: int, orig_host: str, orig_port: int
    ) -> Awaitable[asyncssh.SSHTCPSession[bytes]]:
        return self._forward(dest_host, dest_port)

    def server_requested(self, listen_host: str, listen_port: int) -> bool:
        return False  # no remote forwarding: nothing listens on an instance's behalf

    async def _forward(self, host: str, port: int) -> asyncssh.SSHTCPSession[bytes]:
        """Judge, then connect and relay both ways (half-close passes through)."""
        assert self.conn is not None
        target = await self._target(host, port)
        session = await self.conn.forward_connection(*target)
        self.context.counts["forwarded"] += 1
        return cast("asyncssh.SSHTCPSession[bytes]", session)

    async def _target(self, host: str, port: int) -> tuple[str, int]:
        if host.lower() in self._own_names():
            return await self._own(port)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise _refusal(
                asyncssh.OPEN_CONNECT_FAILED,
                f"{host}: an lbsim instance resolves no names; use a private IP address",
            ) from None
        resolved = await _resolve(self.context, self.instance.private_ip, host, port)
        try:
            return resolved.check()
        except VnetError as error:
            denied = error.reach.outcome is Outcome.DENIED
            code = asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED if denied else None
            raise _refusal(code or asyncssh.OPEN_CONNECT_FAILED, error.message) from None

    def _own_names(self) -> set[str]:
        instance = self.instance
        names = {"localhost", "127.0.0.1", "::1", instance.private_ip, instance.hostname}
        return {name.lower() for name in names}

    async def _own(self, port: int) -> tuple[str, int]:
        """The instance's own server for ``port`` (no NSG judges local traffic)."""
        own = partial(trio.from_thread.run_sync, self.instance.own, port)
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                None, partial(own, trio_token=self.context.token)
            )
        except trio.RunFinishedError:
            raise _refusal(asyncssh.OPEN_CONNECT_FAILED, "lbsim is stopping") from None
        if found is None:
            where = f"{self.instance.label} ({self.instance.private_ip}:{port})"
            raise _refusal(asyncssh.OPEN_CONNECT_FAILED, f"{where}: nothing listens there")
        return found


def _refusal(code: int, reason: str) -> asyncssh.ChannelOpenError:
    return asyncssh.ChannelOpenError(code, reason)


async def _resolve(context: Context, source: str, host: str, port: int) -> Resolved:
    """Ask the runtime's trio thread (from a worker thread: this loop must not block)."""
    resolve: Callable[[], Resolved] = lambda: context.vnet.resolve_from_thread(  # noqa: E731
        context.token, source, host, port
    )
    try:
        return await asyncio.get_running_loop().run_in_executor(None, resolve)
    except trio.RunFinishedError:
        raise _refusal(asyncssh.OPEN_CONNECT_FAILED, "lbsim is stopping") from None
