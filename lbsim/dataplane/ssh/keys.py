"""Host keys: one Ed25519 key per instance, made the first time its SSH server starts.

A key belongs to an instance's life: it is keyed by the backend's key and its generation
(a reimage is a new OS disk, so a new key), kept while the instance stops and starts, and
forgotten when the instance leaves the plan, so a deleted and re-created instance meets its
users with "REMOTE HOST IDENTIFICATION HAS CHANGED" as a real one does.

With a directory (made mode 0700), each instance has ONE key file (mode 0600, named after its
resource id) that outlives the run: a reimage replaces it (the key's comment records the
generation), and a new run, whose instances start again at generation 0, takes the key the
file holds, which is the key the instance last had. A file lbsim cannot read as a key stops
the start with an error naming it; a key file others may read is used, and told.

Keys are made and read off the trio thread (``trio.to_thread``): every method may block on
the disk, and a lock keeps the store whole between threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from lbsim.control.types import Backend
from lbsim.dataplane.ssh.lib import asyncssh
from lbsim.errors import LbsimError

__all__ = ["HostKeys", "key_file_name"]

KeyId = tuple[str, int]  # (backend key, generation)
_UNSAFE = re.compile(r"[^a-z0-9]+")


def key_file_name(key: str) -> str:
    """A file name safe on any file system for a backend's key (an ARM resource id): its
    last words for people, a hash of the whole id for uniqueness."""
    words = _UNSAFE.sub("_", key.lower()).strip("_")[-48:]
    digest = hashlib.sha256(key.lower().encode()).hexdigest()[:16]
    return f"{words}.{digest}.ed25519"


class HostKeys:
    """The host keys of a runtime's instances, in memory and, with ``directory``, on disk;
    ``tell`` gives the operator one line."""

    def __init__(
        self, directory: str | None = None, tell: Callable[[str], None] | None = None
    ) -> None:
        self.directory = Path(directory) if directory is not None else None
        self.tell = tell or (lambda line: None)
        self._keys: dict[str, tuple[int, asyncssh.SSHKey]] = {}  # key -> (generation, key)
        self._lock = threading.Lock()

    def key(self, backend: Backend) -> asyncssh.SSHKey:
        """The instance's key: the one it has; at a new generation (a reimage) a new one;
        else read from the directory, else new."""
        with self._lock:
            had = self._keys.get(backend.key)
            if had is not None and had[0] == backend.generation:
                return had[1]
            found = self._make(backend) if had is not None else self._load_or_make(backend)
            self._keys[backend.key] = (backend.generation, found)
            return found

    def fingerprint(self, backend: Backend) -> str | None:
        """``SHA256:...`` as ``ssh-keygen -l`` prints it; None before the key is made."""
        with self._lock:
            had = self._keys.get(backend.key)
        if had is None or had[0] != backend.generation:
            return None
        return str(had[1].get_fingerprint("sha256"))

    def keep_only(self, backends: Iterable[Backend], previous: Iterable[Backend]) -> list[str]:
        """Forget the keys of instances that left the plan (in ``previous``, not in
        ``backends``); the names of their files, for :meth:`remove` (off the trio thread)."""
        current = {b.key for b in backends}
        left = {b.key for b in previous} - current
        with self._lock:
            for key in left:
                self._keys.pop(key, None)
        return [key_file_name(key) for key in sorted(left)] if self.directory else []

    def remove(self, names: list[str]) -> None:
        """Remove key files (named by :meth:`keep_only`); one that cannot be removed stays
        (a stale key file is harmless: the next instance of that id takes it)."""
        for name in names:
            if self.directory is not None:
                with contextlib.suppress(OSError):
                    (self.directory / name).unlink()

    def _load_or_make(self, backend: Backend) -> asyncssh.SSHKey:
        if self.directory is None:
            return asyncssh.generate_private_key("ssh-ed25519")
        path = self.directory / key_file_name(backend.key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return self._make(backend)
        except OSError as error:
            raise _unreadable(path, error.strerror or str(error)) from None
        self._check_mode(path)
        try:
            return asyncssh.import_private_key(data)
        except (asyncssh.KeyImportError, ValueError) as error:
            raise _unreadable(path, str(error)) from None

    def _make(self, backend: Backend) -> asyncssh.SSHKey:
        """A new key, and with a directory its file (replacing the previous generation's)."""
        key = asyncssh.generate_private_key("ssh-ed25519")
        if self.directory is not None:
            key.set_comment(f"lbsim {backend.key} generation {backend.generation}")
            path = self.directory / key_file_name(backend.key)
            try:
                _write_private(path, key.export_private_key())
            except OSError as error:
                raise _unreadable(path, error.strerror or str(error), verb="write") from None
        return key

    def _check_mode(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                self.tell(f"ssh: host key {path} is readable by others (chmod 600 it)")


def _unreadable(path: Path, reason: str, verb: str = "read") -> LbsimError:
    return LbsimError("HostKeyUnreadable", f"cannot {verb} the SSH host key {path}: {reason}")


def _write_private(path: Path, data: bytes) -> None:
    """Write a private key readable by its owner only (0600 from the start, then renamed
    into place, so a reader never sees half a key), in a folder only its owner may enter."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(partial, path)
