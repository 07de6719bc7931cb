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

The query (a SAS token) and fragment of a URL play no part in finding its copy.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from lbsim.arm.jsontext import load_json_text
from lbsim.arm.nested import is_remote
from lbsim.errors import ConfigError, Problem, TemplateInvalid

Found = tuple[Any, str]
MIN_TAIL = 2  # path segments a URL and its local copy must share (unless the path is shorter)


@attrs.define
class LinkResolver:
    """Resolves the links of one load; it learns which URL is which folder as it maps them."""

    links: Mapping[str, str] = attrs.Factory(dict)  # URL or URL/ prefix -> file or folder
    _bases: dict[str, list[tuple[str, Path]]] = attrs.Factory(dict)  # file -> (URL/, folder)

    def __call__(self, target: str, from_file: str | None) -> Found | None:
        folder = Path(from_file).parent if from_file else Path.cwd()
        url = urlsplit(target)
        if url.scheme.lower() == "file" or not is_remote(target):
            path = Path(unquote(url.path)) if url.scheme else folder / target
            found = _read_if_file(path, from_file)
            return None if found is None else self._learn(found, None, from_file, None)
        bare = _bare(target)
        mapped = self._mapped(bare)
        if mapped is not None:
            return self._found(*mapped, bare, from_file)
        for prefix, base in sorted(self._known(from_file), key=lambda b: -len(b[0])):
            if bare.startswith(prefix):
                found = _read_if_file(base.joinpath(*_segments(bare[len(prefix) :])), from_file)
                if found is not None:
                    return self._learn(found, bare, from_file, (prefix, base))
        parts = _segments(url.path)
        for start in range(len(parts)):
            if start and len(parts) - start < MIN_TAIL:
                break
            found = _read_if_file(folder.joinpath(*parts[start:]), from_file)
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
        self, path: Path, base: tuple[str, Path] | None, bare: str, from_file: str | None
    ) -> Found:
        if not path.is_file():
            raise ConfigError(
                "LinkedTemplateFileNotFound",
                f"The link map reads {bare} from {path}, which is not a file.",
            )
        return self._learn(_read(path), bare, from_file, base)

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
    """A JSON document as ARM reads it; a missing file is a clear error."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TemplateInvalid(
            [Problem("FileNotFound", f"Cannot read {path}: {error.strerror}.", file=path)]
        ) from None
    return load_json_text(data, path)


def _read(path: Path) -> Found:
    return read_json(str(path)), str(path)


def _read_if_file(path: Path, from_file: str | None) -> Found | None:
    """The file's template, unless it is missing or is the linking template itself."""
    me = Path(from_file).resolve() if from_file else None
    if not path.is_file() or path.resolve() == me:
        return None
    return _read(path)


def _segments(path: str) -> list[str]:
    return [part for part in unquote(path).split("/") if part]


def _bare(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _key(file: str | None) -> str:
    return str(Path(file).resolve()) if file else ""
