"""Host keys: one Ed25519 key per instance, made the first time its SSH server starts.

A key belongs to an instance's life: it is keyed by the backend's key and its generation
(a reimage is a new OS disk, so a new key), kept while the instance stops and starts, and
forgotten when the instance leaves the plan, so a deleted and re-created instance meets its
users with "REMOTE HOST IDENTIFICATION HAS CHANGED" as a real one does. With a directory,
keys are files (mode 0600) that outlive the run.

Keys are made and read off the trio thread (``trio.to_thread``): every method may block on
the disk, and a lock keeps the store whole between threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
from collections.abc import Iterable
from pathlib import Path

from lbsim.control.types import Backend
from lbsim.dataplane.ssh.lib import asyncssh

__all__ = ["HostKeys", "key_file_name"]

KeyId = tuple[str, int]  # (backend key, generation)
_UNSAFE = re.compile(r"[^a-z0-9]+")


def key_file_name(key: str, generation: int) -> str:
    """A file name safe on any file system for a backend's key (an ARM resource id): its
    last words for people, a hash of the whole id for uniqueness."""
    words = _UNSAFE.sub("_", key.lower()).strip("_")[-48:]
    digest = hashlib.sha256(key.lower().encode()).hexdigest()[:16]
    return f"{words}.{digest}.g{generation}.ed25519"


class HostKeys:
    """The host keys of a runtime's instances, in memory and, with ``directory``, on disk."""

    def __init__(self, directory: str | None = None) -> None:
        self.directory = Path(directory) if directory is not None else None
        self._keys: dict[KeyId, asyncssh.SSHKey] = {}
        self._lock = threading.Lock()

    def key(self, backend: Backend) -> asyncssh.SSHKey:
        """The instance's key: the one it has, else read from the directory, else new."""
        wanted = (backend.key, backend.generation)
        with self._lock:
            found = self._keys.get(wanted)
            if found is None:
                found = self._keys[wanted] = self._load_or_make(wanted)
            return found

    def fingerprint(self, backend: Backend) -> str | None:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it; None before the key is made."""
        with self._lock:
            found = self._keys.get((backend.key, backend.generation))
        return None if found is None else found.get_fingerprint("sha256")

    def keep_only(self, backends: Iterable[Backend], previous: Iterable[Backend]) -> None:
        """Forget the keys of instances that left the plan (in ``previous``, not in
        ``backends``) and of generations an instance left behind (a reimage), files too."""
        current = {b.key: b.generation for b in backends}
        left = {b.key for b in previous} - current.keys()
        with self._lock:
            for ident in list(self._keys):
                key, generation = ident
                if key in left or current.get(key, generation) != generation:
                    del self._keys[ident]
                    self._remove(ident)

    def _load_or_make(self, ident: KeyId) -> asyncssh.SSHKey:
        if self.directory is None:
            return asyncssh.generate_private_key("ssh-ed25519")
        path = self.directory / key_file_name(*ident)
        with contextlib.suppress(FileNotFoundError):
            return asyncssh.import_private_key(path.read_bytes())
        key = asyncssh.generate_private_key("ssh-ed25519")
        _write_private(path, key.export_private_key())
        return key

    def _remove(self, ident: KeyId) -> None:
        if self.directory is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.directory / key_file_name(*ident)).unlink()


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600 from the start, then renamed
    into place, so a reader never sees half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)
