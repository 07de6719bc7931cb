"""``watch``: reload a running lbsim when a file it was loaded from changes: the template, the
parameters file, the config file, or a linked template's local copy (a file, or a folder for
a URL ending in ``/``).

watchfiles (the operating system's change notifications, run in a thread through anyio, which
runs on trio) does the watching and the debouncing: a burst of writes, an editor's save
through a temporary file and a rename, is one change. It watches the folders that hold the
files, not the files themselves, because a save by rename replaces the file it would watch.
Reloads go through :meth:`~lbsim.api.session.Session.reload`, so they are serialized with
every other change, and a reload refused keeps the old plan running.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

import attrs
import trio
from watchfiles import Change, awatch

from lbsim.api.session import Session

OnChange = Callable[[str], Awaitable[None]]  # gets why: "watch: t.json changed"


@attrs.frozen
class Watched:
    """The files a reload reads, and the folders whose every file it may read."""

    files: frozenset[Path]
    folders: frozenset[Path] = frozenset()

    def wants(self, path: str) -> bool:
        changed = Path(path).resolve()
        return changed in self.files or any(changed.is_relative_to(f) for f in self.folders)


def watched(session: Session) -> Watched:
    """What a reload of ``session`` reads from disk."""
    source = session.source
    links = dict(session.config.links) | dict(
        link.split("=", 1) for link in source.links if "=" in link
    )
    named = [source.template, source.parameters, session.config_file]
    files = {Path(p).resolve() for p in named if p}
    folders = {Path(f).resolve() for url, f in links.items() if url.endswith("/")}
    files |= {Path(f).resolve() for url, f in links.items() if not url.endswith("/")}
    return Watched(frozenset(files), frozenset(folders))


async def watch_files(session: Session, on_change: OnChange) -> None:
    """Call ``on_change`` (which reloads and reports) after each change to a watched file,
    until cancelled."""
    wanted = watched(session)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        nursery.start_soon(_stop_on_cancel, stop)
        parents = {f.parent for f in wanted.files}
        nursery.start_soon(_watch, parents, False, wanted, stop, on_change)
        if wanted.folders:
            nursery.start_soon(_watch, wanted.folders, True, wanted, stop, on_change)


async def _stop_on_cancel(stop: trio.Event) -> None:
    """Wakes the watching threads at once when the watch is cancelled (they would otherwise
    finish their wait first)."""
    try:
        await trio.sleep_forever()
    finally:
        stop.set()


async def _watch(
    folders: Iterable[Path], recursive: bool, wanted: Watched, stop: trio.Event, on: OnChange
) -> None:
    def wants(change: Change, path: str) -> bool:
        return wanted.wants(path)

    changes = awatch(*sorted(folders), watch_filter=wants, recursive=recursive, stop_event=stop)
    async for batch in changes:
        names = sorted({Path(path).name for _, path in batch})
        await on(f"watch: {', '.join(names)} changed")
