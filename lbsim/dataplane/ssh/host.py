"""The SSH servers of a runtime's built-in instances: one asyncio event loop in a thread of
its own runs asyncssh for every instance; trio keeps accepting.

A built-in instance's SSH port is an ordinary trio instance server (so stopping the instance
stops it as any other); each connection it accepts is handed over as a duplicate of its
socket (:func:`socket.fromfd`: trio then closes its own descriptor as usual) to the loop,
where :func:`asyncssh.run_server` speaks SSH. The trio task waits for the connection's end,
and cancelling it (the instance stopped, the runtime ended) aborts the connection.

The loop's thread calls back into trio only without waiting for it (``run_sync_soon``) or
from a worker thread (:meth:`~lbsim.dataplane.vnet.VirtualNetwork.resolve_from_thread`), so
neither thread ever waits for the other while holding it up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path

import trio

from lbsim.control.types import Backend, Plan
from lbsim.dataplane.instances import InstanceIdentity, ssh_banner
from lbsim.dataplane.settings import SshSettings
from lbsim.dataplane.ssh import shell
from lbsim.dataplane.ssh.instance import SshInstance
from lbsim.dataplane.ssh.keys import HostKeys
from lbsim.dataplane.ssh.lib import asyncssh
from lbsim.dataplane.ssh.server import Context, InstanceConnection
from lbsim.dataplane.vnet import VirtualNetwork

__all__ = ["SshHost"]

_LOGIN_TIMEOUT_S = 120.0  # a peer that never finishes logging in is dropped then


class SshHost:
    """Runs the SSH servers of every built-in instance of one runtime, keeps their host keys
    (:class:`HostKeys`) and counts connections in ``counts``: ``accepted`` (logged in),
    ``failed`` (bad input, a handshake cut short), ``closed`` (a peer that said nothing, as
    a TCP health probe), ``auth_failed`` (a refused password or key), ``forwarded``."""

    def __init__(
        self,
        settings: SshSettings,
        vnet: VirtualNetwork,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.vnet = vnet
        self.notice = notice or _ignore
        self.counts: Counter[str] = Counter()
        self.keys = HostKeys(settings.host_key_dir)
        self._authorized = _authorized(settings)
        self._plan = Plan()
        self._instances: set[SshInstance] = set()  # (trio thread)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._context: Context | None = None

    def fingerprint(self, backend: Backend) -> str | None:
        """The SHA256 fingerprint of the instance's host key (``SHA256:...``, as
        ``ssh-keygen -l`` prints it); None until its SSH server first starts."""
        return self.keys.fingerprint(backend)

    def commit(self, plan: Plan) -> None:
        """The plan now running: instances that left it forget their host keys, reimaged ones
        their old generation's."""
        self.keys.keep_only(plan.backends, self._plan.backends)
        self._plan = plan

    # --- the loop ---------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the SSH loop's thread until cancelled; then end every connection, stop the
        loop, join its thread and remove every instance's temporary home."""
        token = trio.lowlevel.current_trio_token()
        self._context = Context(self.settings, self.vnet, token, self.counts)
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="lbsim ssh", daemon=True)
        thread.start()
        self._loop = loop
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            self._loop = None  # no new connection is handed over from here on
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(_stop, loop, thread)
            for instance in self._instances:
                instance.remove_home()
            self._instances.clear()

    # --- instances ---------------------------------------------------------------------------
    async def start(self, backend: Backend, identity: InstanceIdentity) -> SshInstance:
        """An SSH server's state for a built-in instance: its host key (made now, off the trio
        thread, so the first client, ``ssh-keyscan`` say, finds it) and a temporary home."""
        instance = await trio.to_thread.run_sync(self._make, backend, identity)
        self._instances.add(instance)
        return instance

    def _make(self, backend: Backend, identity: InstanceIdentity) -> SshInstance:
        key = self.keys.key(backend)
        home = Path(tempfile.mkdtemp(prefix="lbsim-ssh-"))
        return SshInstance(backend, identity, key, home, lambda: self._plan)

    def stop(self, instance: SshInstance) -> None:
        """The instance's SSH server stopped: end its connections and remove its home."""
        if instance not in self._instances:
            return
        self._instances.discard(instance)
        loop = self._loop
        if loop is None:
            instance.remove_home()
            return
        loop.call_soon_threadsafe(_retire, instance)

    async def serve(self, instance: SshInstance, stream: trio.SocketStream) -> None:
        """Speak SSH on a connection the instance's trio server accepted, until it ends."""
        loop = self._loop
        if loop is None or instance not in self._instances:
            return
        sock = socket.fromfd(stream.socket.fileno(), stream.socket.family, stream.socket.type)
        await stream.aclose()  # (the duplicate holds the connection)
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()
        future = asyncio.run_coroutine_threadsafe(self._connection(instance, sock), loop)
        future.add_done_callback(lambda _: _wake(token, done))
        try:
            await done.wait()
        finally:
            _cancel(future, loop)

    async def _connection(self, instance: SshInstance, sock: socket.socket) -> None:
        """One SSH connection on the loop: log in, serve, and end; bad input ends this
        connection only, counted and told."""
        task = asyncio.current_task()
        instance.connections.add(task)
        heard = _Heard()
        try:
            try:
                conn = await asyncssh.run_server(sock, options=self._options(instance, heard))
            except Exception as error:  # a peer's bad input ends its connection only
                sock.close()
                self._failed(instance, heard, error)
                return
            self.counts["accepted"] += 1
            try:
                await conn.wait_closed()
            finally:
                conn.abort()
        finally:
            instance.connections.discard(task)

    def _options(self, instance: SshInstance, heard: _Heard) -> asyncssh.SSHServerConnectionOptions:
        assert self._context is not None
        return asyncssh.SSHServerConnectionOptions(
            server_factory=partial(_Tracked, heard, instance, self._context),
            server_host_keys=[instance.key],
            server_version=_version(instance),
            authorized_client_keys=self._authorized,
            kbdint_auth=False,
            process_factory=partial(shell.session, instance),
            sftp_factory=partial(_files, instance.home),
            allow_scp=True,
            agent_forwarding=False,
            x11_forwarding=False,
            login_timeout=_LOGIN_TIMEOUT_S,
        )

    def _failed(self, instance: SshInstance, heard: _Heard, error: Exception) -> None:
        if not heard.anything:
            self.counts["closed"] += 1
            return
        self.counts["failed"] += 1
        reason = str(error) or type(error).__name__
        self._tell(f"ssh: {instance.label}: a connection failed: {reason}")

    def _tell(self, line: str) -> None:
        """Give ``notice`` one line, on the trio thread."""
        context = self._context
        if context is not None:
            with contextlib.suppress(trio.RunFinishedError):
                context.token.run_sync_soon(self.notice, line)


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


def _authorized(settings: SshSettings) -> asyncssh.SSHAuthorizedKeys | None:
    if settings.authorized_keys is None:
        return None
    return asyncssh.import_authorized_keys("\n".join(settings.authorized_keys) + "\n")


def _files(home: Path, channel: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
    """SFTP (and scp) rooted at the instance's home. The shell's channels carry text; file
    copies carry bytes, so this channel drops the text encoding before any data comes."""
    channel.set_encoding(None)
    return _Files(channel, chroot=os.fsencode(home))


class _Files(asyncssh.SFTPServer):
    def exit(self) -> None:
        """The session ended: say so with exit status 0, as an sftp-server process does
        (``scp`` takes a session with no exit status for a failed copy)."""
        self.channel.exit(0)


def _retire(instance: SshInstance) -> None:
    """On the loop: end an instance's connections, then remove its home."""
    tasks = list(instance.connections)
    for task in tasks:
        task.cancel()

    async def remove_after() -> None:
        await asyncio.gather(*tasks, return_exceptions=True)
        instance.remove_home()

    instance.connections.add(asyncio.ensure_future(remove_after()))  # (awaited at shutdown)


def _wake(token: trio.lowlevel.TrioToken, done: trio.Event) -> None:
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(done.set)


def _cancel(future: concurrent.futures.Future[None], loop: asyncio.AbstractEventLoop) -> None:
    """Cancel a connection still running (not once the loop has closed)."""
    if not future.done() and not loop.is_closed():
        future.cancel()


def _stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """(A worker thread.) End every task on the loop, stop it, join its thread, close it."""
    asyncio.run_coroutine_threadsafe(_shutdown(loop), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


async def _shutdown(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task but this one and wait for them (their connections abort), then
    let the transports close and the default executor's threads end."""
    me = asyncio.current_task()
    while tasks := [t for t in asyncio.all_tasks() if t is not me]:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(3):
        await asyncio.sleep(0)  # connection_lost callbacks run, sockets close
    await loop.shutdown_default_executor()
    await loop.shutdown_asyncgens()


def _ignore(line: str) -> None:
    """A notice nobody reads."""
