"""Linked templates on disk: which local file stands for a deployment's ``templateLink``.

Azure fetches a linked template from its URL; lbsim reads a local copy, and only one it has
reason to believe is that template, never merely a file of the same name:

1. the link map (``--link URL=FILE``, the config file's ``[links]``): an exact URL, or a URL
   prefix ending in ``/`` for a folder. A mapped file that is missing is an error;
2. a ``file:`` URI is that file, and a ``relativePath`` is relative to the linking template;
3. a URL under a base URL whose local folder is known: the folder of a template lbsim already
   mapped, as ``_artifactsLocation`` and ``deployment().properties.templateLink.uri`` make
   every template's links relative to the URL the template itself came from;
4. else the longest tail of the URL's path, at least its last two segments (or the whole path),
   that names a file under the linking template's folder.

The query (a SAS token) and fragment of a URL play no part in finding its copy. Every file
tried lies inside the roots (:mod:`lbsim.api.confine`): the root template's folder tree, the
folders given as ``roots`` (``--template-root``), the folders of the link map's folder mappings
and the files of its file mappings (a file alone: the folder it lies in is not a root).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from lbsim.api.confine import Roots, read_capped, read_linked
from lbsim.arm.jsontext import load_json_text
from lbsim.arm.nested import is_remote
from lbsim.errors import ConfigError

Found = tuple[Any, str]
MIN_TAIL = 2  # path segments a URL and its local copy must share (unless the path is shorter)


@attrs.define
class LinkResolver:
    """Resolves the links of one load; it learns which URL is which folder as it maps them."""

    links: Mapping[str, str] = attrs.Factory(dict)  # URL or URL/ prefix -> file or folder
    # folders linked templates may come from, the root template's among them; when none are
    # given, the folder of the first linking template (the root template) is the one root
    roots: Sequence[str | Path] = ()
    _bases: dict[str, list[tuple[str, Path]]] = attrs.Factory(dict)  # file -> (URL/, folder)
    _confined: Roots | None = attrs.field(default=None, init=False)

    def __call__(self, target: str, from_file: str | None) -> Found | None:
        if target.lower().startswith("/subscriptions/"):  # a template spec's id, not a path
            return None
        folder = Path(from_file).parent if from_file else Path.cwd()
        url = urlsplit(target)
        if url.scheme.lower() == "file" or not is_remote(target):
            path = Path(unquote(url.path)) if url.scheme.lower() == "file" else folder / target
            found = self._read_if_file(path, target, from_file)
            return None if found is None else self._learn(found, None, from_file, None)
        bare = _bare(target)
        mapped = self._mapped(bare)
        if mapped is not None:
            return self._found(*mapped, target, from_file)
        for prefix, base in sorted(self._known(from_file), key=lambda b: -len(b[0])):
            if bare.startswith(prefix):
                path = base.joinpath(*_segments(bare[len(prefix) :]))
                found = self._read_if_file(path, target, from_file)
                if found is not None:
                    return self._learn(found, bare, from_file, (prefix, base))
        parts = _segments(url.path)
        entries = _entries(folder)  # a tail can only start at a name the folder has
        for start in range(len(parts)):
            if start and len(parts) - start < MIN_TAIL:
                break
            if parts[start] not in entries and parts[start] not in (".", ".."):
                continue  # (a tail that climbs is tried: confinement refuses it, by name)
            found = self._read_if_file(folder.joinpath(*parts[start:]), target, from_file)
            if found is not None:
                prefix = urlunsplit(
                    (url.scheme, url.netloc, "/".join(["", *parts[:start], ""]), "", "")
                )
                return self._learn(found, bare, from_file, (prefix, folder))
        return None

    def _mapped(self, bare: str) -> tuple[Path, tuple[str, Path] | None] | None:
        """The link map's file for a URL (its exact entry, else the longest folder prefix),
        with the folder prefix used."""
        links = {_bare(url): path for url, path in self.links.items()}
        if bare in links:
            return Path(links[bare]), None
        prefixes = [url for url in links if url.endswith("/") and bare.startswith(url)]
        if not prefixes:
            return None
        prefix = max(prefixes, key=len)
        folder = Path(links[prefix])
        return folder.joinpath(*_segments(bare[len(prefix) :])), (prefix, folder)

    def _found(
        self, path: Path, base: tuple[str, Path] | None, target: str, from_file: str | None
    ) -> Found:
        bare = _bare(target)
        roots = self._roots(from_file)
        document = read_linked(roots.confine(path, target), str(path), target, roots)
        if document is None:
            raise ConfigError(
                "LinkedTemplateFileNotFound",
                f"The link map reads {bare} from {path}, which is not a file.",
            )
        return self._learn((document, str(path)), bare, from_file, base)

    def _read_if_file(self, path: Path, target: str, from_file: str | None) -> Found | None:
        """The template in ``path``, a candidate for ``target``, unless it is missing or is
        the linking template itself; an error if it lies outside the roots."""
        roots = self._roots(from_file)
        real = roots.confine(path, target)
        if from_file and real == str(Path(from_file).resolve()):
            return None
        document = read_linked(real, str(path), target, roots)
        return None if document is None else (document, str(path))

    def _roots(self, from_file: str | None) -> Roots:
        """The roots, fixed at the first link (which the root template makes)."""
        if self._confined is None:
            first = [] if self.roots else [Path(from_file).parent if from_file else Path.cwd()]
            folders, files = _link_roots(self.links)
            self._confined = Roots.of([*self.roots, *first, *folders], files)
        return self._confined

    def _known(self, from_file: str | None) -> list[tuple[str, Path]]:
        return self._bases.get(_key(from_file), [])

    def _learn(
        self,
        found: Found,
        bare: str | None,
        from_file: str | None,
        base: tuple[str, Path] | None,
    ) -> Found:
        """Remember, for the linked file, the base URLs whose folders are known: its own
        URL's folder, the base it was found under, and those of the template linking it."""
        own = [(bare.rsplit("/", 1)[0] + "/", Path(found[1]).parent)] if bare else []
        learned = [*own, *([base] if base else []), *self._known(from_file)]
        self._bases[_key(found[1])] = learned
        return found


def resolve_link(target: str, from_file: str | None) -> Found | None:
    """One link resolved without a link map or anything learned from other links."""
    return LinkResolver()(target, from_file)


def parse_links(items: list[str]) -> dict[str, str]:
    """``--link URL=FILE`` arguments as a map."""
    out: dict[str, str] = {}
    for item in items:
        url, sep, path = item.partition("=")
        if not sep or not url.strip() or not path.strip():
            raise ConfigError("InvalidSetting", f"--link takes URL=FILE, got {item!r}.")
        out[url.strip()] = path.strip()
    return out


def read_json(path: str) -> Any:
    """A JSON document as ARM reads it; a missing or too large file is a clear error."""
    return load_json_text(read_capped(path), path)


def _link_roots(links: Mapping[str, str]) -> tuple[list[Path], list[Path]]:
    """The paths the link map names, as roots: a folder mapping's folder, and a file mapping's
    file alone. The user named that file, not its folder (often ``~/Downloads``), so a link
    to a file beside it, which they did not name, is refused."""
    folders = [Path(path) for url, path in links.items() if _bare(url).endswith("/")]
    files = [Path(path) for url, path in links.items() if not _bare(url).endswith("/")]
    return folders, files


def _entries(folder: Path) -> frozenset[str]:
    """The names in ``folder`` (none when it cannot be listed): the first segment of a local
    copy's path must be one, so a URL of many segments costs a lookup each, not a path
    resolution each (which grew with the square of its length)."""
    try:
        return frozenset(os.listdir(folder))
    except OSError:
        return frozenset()


def _segments(path: str) -> list[str]:
    return [part for part in unquote(path).split("/") if part]


def _bare(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _key(file: str | None) -> str:
    return str(Path(file).resolve()) if file else ""
