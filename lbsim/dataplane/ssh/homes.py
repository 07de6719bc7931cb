"""The temporary homes of a runtime's built-in instances, where SFTP and scp write.

An instance has one home, shared by all its SSH ports (a file copied in through port 22 is
there through port 2222), made on first use (the first SFTP or scp session), not when a
server starts. It is removed once the last of the instance's SSH servers stopped and their
connections ended (the instance stopped, deleted or reimaged). Every home of a runtime lies
under one parent folder, removed when the runtime ends, so a removal missed on the way (lbsim
stopping while one is pending) still leaves nothing behind.

A reimage is a new OS disk: the new generation's servers get a new, empty home.

Every method may be called from any thread (the SSH loop's, a worker's, trio's for
:meth:`Homes.hold`, which touches no disk); a lock keeps the records whole."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
from pathlib import Path

from lbsim.control.types import Backend

__all__ = ["Home", "Homes"]


class Home:
    """One instance's home: its folder (made on first use) and how many servers hold it."""

    def __init__(self, homes: Homes, name: str) -> None:
        self._homes = homes
        self.name = name
        self.holders = 0
        self.removed = False

    def path(self) -> Path:
        """The folder, made now if it is not there yet."""
        return self._homes.make(self)

    def release(self) -> None:
        """A server that held it stopped and its connections ended."""
        self._homes.release(self)


class Homes:
    """Every home of one runtime, under one parent temporary folder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._root: Path | None = None
        self._held: dict[tuple[str, int], Home] = {}

    def hold(self, backend: Backend) -> Home:
        """The home of the instance (this generation) for one more server (no disk)."""
        ident = (backend.key, backend.generation)
        with self._lock:
            home = self._held.get(ident)
            if home is None:
                home = self._held[ident] = Home(self, _name(*ident))
            home.holders += 1
            return home

    def make(self, home: Home) -> Path:
        """(See :meth:`Home.path`; a removed home is not made again.)"""
        with self._lock:
            if home.removed:
                raise FileNotFoundError(f"the home of {home.name} was removed")
            if self._root is None:
                self._root = Path(tempfile.mkdtemp(prefix="lbsim-ssh-"))
            path = self._root / home.name
            path.mkdir(mode=0o700, exist_ok=True)
            return path

    def release(self, home: Home) -> None:
        """One holder less; the last one removes the folder."""
        with self._lock:
            home.holders -= 1
            if home.holders > 0 or home.removed:
                return
            home.removed = True
            self._held = {k: h for k, h in self._held.items() if h is not home}
            root = self._root
        if root is not None:
            shutil.rmtree(root / home.name, ignore_errors=True)

    def close(self) -> None:
        """Remove every home (the runtime ended)."""
        with self._lock:
            root, self._root = self._root, None
            for home in self._held.values():
                home.removed = True
            self._held.clear()
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


def _name(key: str, generation: int) -> str:
    """A folder name for an instance's resource id (any characters) and generation."""
    return f"{hashlib.sha256(key.lower().encode()).hexdigest()[:16]}.g{generation}"
