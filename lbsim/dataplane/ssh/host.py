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
import contextlib
import importlib
import threading
from collections import Counter
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import trio

from lbsim.control.types import Backend, Plan
from lbsim.dataplane.instances import InstanceIdentity
from lbsim.dataplane.settings import SshSettings
from lbsim.dataplane.ssh.handoff import HandedSocket, Handoff
from lbsim.dataplane.ssh.homes import Homes
from lbsim.dataplane.ssh.instance import SshInstance
from lbsim.dataplane.vnet import Target, VirtualNetwork

if TYPE_CHECKING:  # (loaded with the first SSH server: see _load)
    from lbsim.dataplane.ssh.connections import Speaker

__all__ = ["SshHost"]


class SshHost:
    """Runs the SSH servers of every built-in instance of one runtime, keeps their host keys
    (:class:`~lbsim.dataplane.ssh.keys.HostKeys`) and counts connections in ``counts``:
    ``accepted`` (logged in), ``failed`` (bad input, a handshake cut short), ``closed`` (a
    peer that said nothing, as a TCP health probe), ``auth_failed`` (a refused password or
    key), ``forwarded``, ``refused`` (beyond ``max_startups`` connections not yet logged
    in, as sshd's ``MaxStartups``). The SSH code itself (asyncssh) loads with the first
    server. Authentication follows the runtime's settings as they are when a connection
    starts (a reload changes them); ``host_key_dir`` is read once, at the first server."""

    max_startups = 100  # connections in handshake or authentication at once; more are closed

    def __init__(
        self,
        settings: SshSettings,
        vnet: VirtualNetwork,
        notice: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.vnet = vnet
        self.notice = notice
        self.counts: Counter[str] = Counter()
        self._speaker: Speaker | None = None  # (asyncssh, loaded with the first server)
        self._loading = trio.Lock()
        self._plan = Plan()
        self._instances: set[SshInstance] = set()  # (trio thread)
        self._retiring: set[asyncio.Future[None]] = set()  # (the SSH loop's thread)
        self.homes = Homes()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None

    def fingerprint(self, backend: Backend) -> str | None:
        """The SHA256 fingerprint of the instance's host key (``SHA256:...``, as
        ``ssh-keygen -l`` prints it); None until its SSH server first starts."""
        return None if self._speaker is None else self._speaker.keys.fingerprint(backend)

    def commit(self, plan: Plan) -> None:
        """The plan now running: instances that left it forget their host keys, reimaged ones
        their old generation's."""
        if self._speaker is not None:
            gone = self._speaker.keys.keep_only(plan.backends, self._plan.backends)
            if gone and self._loop is not None:  # (files are removed off the trio thread)
                _call(self._loop, partial(_in_executor, self._speaker.keys.remove, gone))
        self._plan = plan

    # --- the loop ---------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the SSH loop's thread until cancelled; then end every connection, stop the
        loop, join its thread and remove every instance's temporary home (all under one
        parent folder, so a removal cut short still leaves nothing)."""
        token = trio.lowlevel.current_trio_token()
        self._token = token
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
                await trio.to_thread.run_sync(_stop, loop, thread, list(self._instances))
                self._instances.clear()
                await trio.to_thread.run_sync(self.homes.close)

    # --- instances ---------------------------------------------------------------------------
    async def start(
        self, backend: Backend, identity: InstanceIdentity, own: Callable[[int], Target | None]
    ) -> SshInstance:
        """An SSH server's state for a built-in instance: its host key (made now, off the trio
        thread, so the first client, ``ssh-keyscan`` say, finds it) and the instance's home
        (made on first use); ``own`` finds the instance's own server for a TCP port (for
        ``ssh -L 8080:localhost:80``)."""
        async with self._loading:
            if self._speaker is None:
                self._speaker = await trio.to_thread.run_sync(self._load)
        make = partial(self._make, self._speaker, backend, identity, own)
        instance = await trio.to_thread.run_sync(make)
        self._instances.add(instance)
        return instance

    def _load(self) -> Speaker:
        """(A worker thread.) asyncssh, and what speaks SSH with it."""
        connections = importlib.import_module("lbsim.dataplane.ssh.connections")
        server = importlib.import_module("lbsim.dataplane.ssh.server")
        assert self._token is not None
        context = server.Context(self.vnet, self._token, self.counts)
        speaker: Speaker = connections.Speaker(
            self.settings, context, self._tell, lambda: self.max_startups
        )
        return speaker

    def _make(
        self,
        speaker: Speaker,
        backend: Backend,
        identity: InstanceIdentity,
        own: Callable[[int], Target | None],
    ) -> SshInstance:
        key = speaker.keys.key(backend)
        home = self.homes.hold(backend)
        return SshInstance(backend, identity, key, home, lambda: self._plan, own)

    def stop(self, instance: SshInstance) -> None:
        """The instance's SSH server stopped: end its connections and remove its home."""
        if instance not in self._instances:
            return
        self._instances.discard(instance)
        loop = self._loop
        if loop is not None:  # (else lbsim is ending: every home goes with the runtime's)
            loop.call_soon_threadsafe(self._retire, instance)

    def _retire(self, instance: SshInstance) -> None:
        """On the loop: end an instance's connections, then let go of its home, even if
        lbsim stops meanwhile (which cancels the wait)."""
        handoffs = list(instance.connections)
        for handoff in handoffs:
            handoff.abort()
        tasks = [h.task for h in handoffs if h.task is not None]

        async def remove_after() -> None:
            try:
                await asyncio.gather(*tasks, return_exceptions=True)
            finally:
                instance.remove_home()

        task = asyncio.ensure_future(remove_after())
        self._retiring.add(task)  # (held so that it is not collected before it ends)
        task.add_done_callback(self._retiring.discard)

    async def serve(self, instance: SshInstance, stream: trio.SocketStream) -> None:
        """Speak SSH on a connection the instance's trio server accepted, until it ends."""
        try:
            sock = HandedSocket.duplicate(stream.socket)
        finally:
            stream.socket.close()  # (no checkpoint: the duplicate holds the connection)
        loop, speaker = self._loop, self._speaker
        if loop is None or speaker is None or instance not in self._instances:
            sock.close()  # (stopping: no checkpoint from here to the handoff)
            return
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()
        serve = partial(speaker.connection, instance)
        handoff = Handoff(sock, serve, partial(_wake, token, done), instance.connections)
        loop.call_soon_threadsafe(handoff.start)
        try:
            await done.wait()
        finally:
            if not done.is_set():
                _call(loop, handoff.abort)

    def _tell(self, line: str) -> None:
        """Give ``notice`` one line, on the trio thread (from any thread)."""
        if self._token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                self._token.run_sync_soon(self.notice, line)


def _in_executor(work: Callable[[list[str]], None], items: list[str]) -> None:
    """On the loop: run ``work(items)`` in its default executor (a blocking call)."""
    asyncio.get_running_loop().run_in_executor(None, work, items)


def _wake(token: trio.lowlevel.TrioToken, done: trio.Event) -> None:
    with contextlib.suppress(trio.RunFinishedError):
        token.run_sync_soon(done.set)


def _call(loop: asyncio.AbstractEventLoop, call: Callable[[], None]) -> None:
    """Run ``call`` on the loop, unless it has closed (it ended every connection then)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(call)


def _stop(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, instances: list[SshInstance]
) -> None:
    """(A worker thread.) End every task on the loop, stop it, join its thread, close it."""
    asyncio.run_coroutine_threadsafe(_shutdown(loop, instances), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


async def _shutdown(loop: asyncio.AbstractEventLoop, instances: list[SshInstance]) -> None:
    """End every connection (started or not) and every task but this one, wait for them,
    then let the transports close and the default executor's threads end."""
    for instance in instances:
        for handoff in list(instance.connections):
            handoff.abort()
    me = asyncio.current_task()
    while tasks := [t for t in asyncio.all_tasks() if t is not me]:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(3):
        await asyncio.sleep(0)  # connection_lost callbacks run, sockets close
    await loop.shutdown_default_executor()
    await loop.shutdown_asyncgens()
