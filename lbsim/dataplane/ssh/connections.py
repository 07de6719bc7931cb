"""The asyncio side of the SSH servers: one connection from handshake to end, and the
asyncssh options each instance's connections get.

This module (with asyncssh and the ``cryptography`` package under it) is loaded when the
first built-in SSH server starts, off the trio thread: a run with no built-in instance never
pays for it."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from functools import partial

from lbsim.dataplane.instances import ssh_banner
from lbsim.dataplane.settings import SshSettings
from lbsim.dataplane.ssh import shell
from lbsim.dataplane.ssh.homes import Home
from lbsim.dataplane.ssh.instance import SshInstance
from lbsim.dataplane.ssh.keys import HostKeys
from lbsim.dataplane.ssh.lib import asyncssh
from lbsim.dataplane.ssh.server import Context, InstanceConnection
from lbsim.dataplane.vnet import Throttle

__all__ = ["Speaker"]

_LOGIN_TIMEOUT_S = 30.0  # a peer that never finishes logging in is dropped then


class Speaker:
    """Speaks SSH for every instance of one runtime (on its SSH loop), and keeps their host
    keys; ``tell`` gives the operator one line (from any thread). At most
    ``max_startups()`` connections are in handshake or authentication at once: more are
    closed at once, counted ``refused`` (a flood of half-open logins never starves the rest).
    """

    def __init__(
        self,
        settings: SshSettings,
        context: Context,
        tell: Callable[[str], None],
        max_startups: Callable[[], int],
    ):
        self.keys = HostKeys(settings.host_key_dir, tell)
        self.context = context
        self.counts = context.counts
        self.tell = tell
        self.max_startups = max_startups
        self._starting = 0  # connections not yet logged in (the loop's thread)
        self._authorized: tuple[tuple[str, ...] | None, asyncssh.SSHAuthorizedKeys | None]
        self._authorized = (None, None)
        self._told = Throttle(tell)  # bad input: at most one line a second, the rest counted

    async def connection(self, instance: SshInstance, sock: socket.socket) -> None:
        """One SSH connection: log in, serve, and end; bad input ends this connection only,
        counted and told. (The caller closes ``sock`` if asyncssh never took it.)"""
        if self._starting >= self.max_startups():
            self.counts["refused"] += 1
            return
        heard = _Heard()
        self._starting += 1
        try:
            conn = await asyncssh.run_server(sock, options=self._options(instance, heard))
        except Exception as error:  # a peer's bad input ends its connection only
            self._failed(instance, heard, error)
            return
        finally:
            self._starting -= 1
        self.counts["accepted"] += 1
        try:
            await conn.wait_closed()
        finally:
            conn.abort()

    def _options(self, instance: SshInstance, heard: _Heard) -> asyncssh.SSHServerConnectionOptions:
        return asyncssh.SSHServerConnectionOptions(
            server_factory=partial(_Tracked, heard, instance, self.context),
            server_host_keys=[instance.key],
            server_version=_version(instance),
            authorized_client_keys=self._authorized_keys(),
            kbdint_auth=False,
            process_factory=partial(shell.session, instance),
            sftp_factory=partial(_files, instance.home),
            allow_scp=True,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=_LOGIN_TIMEOUT_S,
        )

    def _authorized_keys(self) -> asyncssh.SSHAuthorizedKeys | None:
        """The keys the settings list now (parsed again only when the list changed)."""
        listed = self.context.settings.authorized_keys
        if listed != self._authorized[0]:
            self._authorized = (listed, _authorized(listed))
        return self._authorized[1]

    def _failed(self, instance: SshInstance, heard: _Heard, error: Exception) -> None:
        """Count a connection that never logged in; tell the operator of bad input only, at
        most one line a second: a peer that just went away (a banner check, a port scan)
        is counted, not told."""
        if not heard.anything:
            self.counts["closed"] += 1
            return
        self.counts["failed"] += 1
        if isinstance(error, asyncssh.ConnectionLost):
            return
        reason = str(error) or type(error).__name__
        self._told("failed", f"ssh: {instance.label}: a connection failed: {reason}")


class _Heard:
    """Whether a connection's peer said anything (a TCP health probe says nothing)."""

    def __init__(self) -> None:
        self.anything = False


class _Tracked(InstanceConnection):
    """An instance connection that notes whether its peer sent an identification line."""

    def __init__(self, heard: _Heard, instance: SshInstance, context: Context) -> None:
        super().__init__(instance, context)
        self.heard = heard

    def connection_lost(self, exc: Exception | None) -> None:
        said = self.conn is not None and bool(self.conn.get_extra_info("client_version"))
        broken = exc is not None and not isinstance(exc, asyncssh.ConnectionLost)
        self.heard.anything = said or broken


def _version(instance: SshInstance) -> str:
    """The identification line's software version and comment, as instances always sent
    (``lbsim_web_1 lbsim instance web/1 at 10.0.0.5``): asyncssh allows any printable
    ASCII after ``SSH-2.0-``, spaces included, up to 245 characters."""
    return ssh_banner(instance.identity)[len(b"SSH-2.0-") : -2].decode("ascii")


def _authorized(listed: tuple[str, ...] | None) -> asyncssh.SSHAuthorizedKeys | None:
    if listed is None:
        return None
    return asyncssh.import_authorized_keys("\n".join(listed) + "\n")


def _files(home: Home, channel: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
    """SFTP (and scp) rooted at the instance's home (made now, at its first use). The
    shell's channels carry text; file copies carry bytes, so this channel drops the text
    encoding before any data comes."""
    channel.set_encoding(None)
    return _Files(channel, chroot=os.fsencode(home.path()))


class _Files(asyncssh.SFTPServer):
    """SFTP confined to the home by real paths, not only by name: every path the client
    names is resolved (symbolic links followed) and refused unless it stays inside. Making
    links is refused outright: the home is a folder of the host's, not the VM's disk."""

    def map_path(self, path: bytes) -> bytes:
        mapped = super().map_path(path)
        root = os.path.realpath(self._home)
        real = os.path.realpath(mapped)
        if real != root and not real.startswith(root + b"/"):
            raise asyncssh.SFTPPermissionDenied("outside the home of an lbsim instance")
        return mapped

    @property
    def _home(self) -> bytes:
        return super().map_path(b"/")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("links are not available on an lbsim instance")

    def link(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPOpUnsupported("links are not available on an lbsim instance")

    def exit(self) -> None:
        """The session ended: say so with exit status 0, as an sftp-server process does
        (``scp`` takes a session with no exit status for a failed copy)."""
        self.channel.exit(0)
