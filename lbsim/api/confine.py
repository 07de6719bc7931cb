"""Reading a linked template without reading anything else: the folder trees it may come from,
and a read that is bounded in size and refuses whatever is not a regular file.

A template is often downloaded from anywhere and loaded in CI, sometimes as root, and its
``templateLink`` is text its author chose. So a link may only name a file inside the *roots*:
the folder tree of the root template, and the folders the user names (``--template-root DIR``,
and those of ``--link URL=FILE`` or the config file's ``[links]``). Everything else (``..`` that
climbs out, an absolute path or ``file:`` URI elsewhere, a symlink that points out, a FIFO, a
device, a folder) is refused with one error whose text depends only on the link as written, so
that it tells nothing about the file it named: not whether it exists, nor its size or content.

A path is first checked as text, before the file system is asked anything about it; then
with its symlinks resolved; then the file is opened without following a last symlink and its
type and size are checked on the open descriptor (``fstat``), so that a file swapped between
the check and the open is still caught. At most :data:`MAX_TEMPLATE_BYTES` + 1 bytes are read.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from lbsim.arm.jsontext import load_json_text
from lbsim.errors import LbsimError, Problem, TemplateInvalid

# Azure's limit on a template (https://learn.microsoft.com/azure/azure-resource-manager/
# templates/best-practices#template-limits); a file larger than that is not read at all.
MAX_TEMPLATE_BYTES = 4 * 1024 * 1024
NAME_MAX = 255  # bytes in one path segment (Linux's NAME_MAX)
PATH_MAX = 4096  # bytes in a whole path (Linux's PATH_MAX)
_SHOWN = 200  # characters of a link that an error message repeats

_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO opens at once instead of waiting for a writer
    | getattr(os, "O_CLOEXEC", 0)
)


@attrs.frozen
class Roots:
    """The folder trees linked templates may be read from, each as given and as resolved."""

    folders: tuple[tuple[str, str], ...]  # (absolute and normalised, symlinks resolved)

    @classmethod
    def of(cls, folders: Iterable[str | Path]) -> Roots:
        pairs = []
        for folder in folders:
            plain = os.path.normpath(os.path.abspath(folder))
            pairs.append((plain, os.path.realpath(plain)))
        return cls(tuple(dict.fromkeys(pairs)))

    def confine(self, path: Path, link: str) -> str:
        """The real path of ``path``, a candidate for ``link``, if it lies inside the roots;
        else :func:`outside`. Nothing outside the roots is looked at."""
        check_length(path, link)
        plain = os.path.normpath(os.path.abspath(path))
        if not any(_within(plain, p) or _within(plain, r) for p, r in self.folders):
            raise outside(link)
        real = os.path.realpath(os.path.abspath(path))
        if not any(_within(real, r) for _, r in self.folders):
            raise outside(link)
        return real


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def outside(link: str) -> LbsimError:
    """The one error for a link to anything but a regular file inside the roots. Its text
    depends only on the link, so it cannot tell whether the file exists."""
    return LbsimError(
        "LinkedTemplateOutsideRoot",
        f"The linked template {shown(link)} is not a regular file inside the template's "
        "folder tree or a folder named with --template-root or --link; lbsim reads no other "
        "file.",
    )


def check_length(path: Path, link: str) -> None:
    """A clear error for a path the operating system would refuse: a NUL, a segment over
    255 bytes or a path over 4096."""
    try:
        text = os.fsencode(os.path.abspath(path))
    except UnicodeError:  # a lone surrogate, as JSON's \ud800 escape makes
        raise _invalid(link, "is not a valid file name") from None
    if b"\0" in text:
        raise _invalid(link, "holds a NUL character")
    if len(text) > PATH_MAX:
        raise _invalid(link, f"makes a path of over {PATH_MAX} bytes")
    if any(len(part) > NAME_MAX for part in text.split(os.fsencode(os.sep))):
        raise _invalid(link, f"has a path segment of over {NAME_MAX} bytes")


def _invalid(link: str, why: str) -> LbsimError:
    return LbsimError("LinkedTemplatePathInvalid", f"The linked template {shown(link)} {why}.")


def shown(link: str) -> str:
    """A link as an error message repeats it: quoted, control characters escaped, cut short."""
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in link[:_SHOWN])
    return f"'{text}'" + ("..." if len(link) > _SHOWN else "")


def read_linked(real: str, name: str, link: str) -> Any | None:
    """The template in the confined file ``real`` (errors name it ``name``), or None when
    there is no such file. Only a regular file is read, and only up to the size cap."""
    try:
        fd = os.open(real, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:  # the last segment became a symlink after the check
            raise outside(link) from None
        raise _unreadable(name, error) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # checked on what was opened, not on a name
        os.close(fd)
        raise outside(link)
    with os.fdopen(fd, "rb") as file:
        return load_json_text(_capped(file, name), name)


def read_capped(path: str) -> bytes:
    """A file the user named (a template or parameters file), read up to the size cap: a
    pipe works, ``/dev/zero`` ends in an error instead of filling memory."""
    try:
        with open(path, "rb") as file:
            return _capped(file, path)
    except OSError as error:
        raise _unreadable(path, error) from None


def _capped(file: Any, name: str) -> bytes:
    size = os.fstat(file.fileno()).st_size
    data = b"" if size > MAX_TEMPLATE_BYTES else file.read(MAX_TEMPLATE_BYTES + 1)
    if size > MAX_TEMPLATE_BYTES or len(data) > MAX_TEMPLATE_BYTES:
        problem = Problem(
            "TemplateFileTooLarge",
            f"{name} is larger than {MAX_TEMPLATE_BYTES // (1024 * 1024)} MB, the most lbsim "
            "reads of a template or parameters file (Azure's limit on a template).",
            file=name,
        )
        raise TemplateInvalid([problem])
    return bytes(data)


def _unreadable(name: str, error: OSError) -> TemplateInvalid:
    reason = error.strerror or str(error)
    return TemplateInvalid([Problem("FileNotFound", f"Cannot read {name}: {reason}.", file=name)])
