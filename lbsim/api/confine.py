"""Reading a linked template without reading anything else: the folder trees and files it may
come from, and a read that is bounded in size and refuses whatever is not a regular file.

A template is often downloaded from anywhere and loaded in CI, sometimes as root, and its
``templateLink`` is text its author chose. So a link may only name a file inside the *roots*:
the folder tree of the root template, and the paths the user names: the folder trees of
``--template-root DIR`` and of a folder mapping (``--link URL/=DIR`` or the config file's
``[links]``), and the file of a file mapping (``--link URL=FILE``), that file alone and not its
folder, which may be ``~/Downloads``. Everything else (``..`` that
climbs out, an absolute path or ``file:`` URI elsewhere, a symlink that points out, a FIFO, a
device, a folder) is refused with one error whose text depends only on the link as written, so
that it tells nothing about the file it named: not whether it exists, nor its size or content.

A path is first checked as text, before the file system is asked anything about it; then
with its symlinks resolved. Any part of it may be swapped for a symlink between that check and
the open (a folder as well as the file), so the check is made again on what was opened: where
the open descriptor really is (``/proc/self/fd`` on Linux), or, without ``/proc``, the path is
opened one segment at a time from its root, following no symlink. Type and size are checked on
the open descriptor (``fstat``). At most :data:`MAX_TEMPLATE_BYTES` + 1 bytes are read.
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
_FOLDER_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_DIRECTORY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
# a symlink opened with O_NOFOLLOW: ELOOP (Linux, macOS) or EMLINK (FreeBSD); with O_DIRECTORY
# Linux says ENOTDIR, as for a plain file, so a folder's is told apart with lstat
_SYMLINK_ERRNOS = (errno.ELOOP, errno.EMLINK)
_PROC_FD = "/proc/self/fd"  # where each open descriptor's file is, on Linux


@attrs.frozen
class Roots:
    """The folder trees and single files linked templates may be read from, each as given and
    as resolved (a file the user named may be a symlink to anywhere: that is their choice)."""

    folders: tuple[tuple[str, str], ...]  # (absolute and normalised, symlinks resolved)
    files: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, folders: Iterable[str | Path], files: Iterable[str | Path] = ()) -> Roots:
        return cls(_pairs(folders), _pairs(files))

    def confine(self, path: Path, link: str) -> str:
        """The real path of ``path``, a candidate for ``link``, if it lies inside the roots;
        else :func:`outside`. Nothing outside the roots is looked at."""
        check_length(path, link)
        plain = os.path.normpath(os.path.abspath(path))
        if not self.holds(plain, as_given=True):
            raise outside(link)
        real = os.path.realpath(os.path.abspath(path))
        if not self.holds(real):
            raise outside(link)
        return real

    def holds(self, path: str, *, as_given: bool = False) -> bool:
        """Whether ``path``, with its symlinks resolved, lies inside the roots: in a folder
        tree, or one of the files. ``as_given`` also compares with the roots as the user
        wrote them, for a path whose symlinks are not resolved yet."""
        files, folders = _names(self.files, as_given), _names(self.folders, as_given)
        return path in files or any(_within(path, folder) for folder in folders)

    def base_of(self, real: str) -> str | None:
        """The resolved root folder ``real`` lies in, where a walk to it starts (for a file
        root, the folder that holds it)."""
        if any(real == r for _, r in self.files):
            return os.path.dirname(real)
        return next((r for _, r in self.folders if _within(real, r)), None)


def _pairs(paths: Iterable[str | Path]) -> tuple[tuple[str, str], ...]:
    """Each path absolute and normalised, with its symlinks resolved; no pair twice."""
    plain = [os.path.normpath(os.path.abspath(path)) for path in paths]
    return tuple(dict.fromkeys((path, os.path.realpath(path)) for path in plain))


def _names(pairs: tuple[tuple[str, str], ...], as_given: bool) -> list[str]:
    return [name for plain, real in pairs for name in ((plain, real) if as_given else (real,))]


def _within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def outside(link: str) -> LbsimError:
    """The one error for a link to anything but a regular file inside the roots. Its text
    depends only on the link, so it cannot tell whether the file exists."""
    return LbsimError(
        "LinkedTemplateOutsideRoot",
        f"The linked template {shown(link)} is not a regular file inside the template's "
        "folder tree or a folder or file named with --template-root or --link; lbsim reads "
        "no other file.",
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


def read_linked(real: str, name: str, link: str, roots: Roots) -> Any | None:
    """The template in the file ``real`` that ``roots`` confined (errors name it ``name``),
    or None when there is no such file. Only a regular file inside the roots is read, and
    only up to the size cap."""
    try:
        fd = _open_inside(real, roots, link)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        if error.errno in _SYMLINK_ERRNOS:  # the last segment became a symlink after the check
            raise outside(link) from None
        raise _unreadable(name, error) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # checked on what was opened, not on a name
        os.close(fd)
        raise outside(link)
    with os.fdopen(fd, "rb") as file:
        return load_json_text(_capped(file, name), name)


def _open_inside(real: str, roots: Roots, link: str) -> int:
    """A descriptor for ``real``, refused unless the file it opened lies inside the roots.
    ``real`` was checked by name, but a folder on its way may have become a symlink since, and
    an open follows it; so where the descriptor is, not its name, is what is checked."""
    if not os.path.isdir(_PROC_FD):
        return _walk_open(real, roots, link)
    fd = os.open(real, _OPEN_FLAGS)
    try:
        where = os.readlink(f"{_PROC_FD}/{fd}")
    except OSError:
        os.close(fd)
        return _walk_open(real, roots, link)
    if not roots.holds(where):
        os.close(fd)
        raise outside(link)
    return fd


def _walk_open(real: str, roots: Roots, link: str) -> int:
    """``real`` opened without ``/proc``: from the root folder it lies in, one segment at a
    time relative to the folder opened before, following no symlink on the way."""
    base = roots.base_of(real)
    if base is None:
        raise outside(link)
    parts = [part for part in os.path.relpath(real, base).split(os.sep) if part not in ("", ".")]
    if not parts:  # the root folder itself, which fstat refuses
        return os.open(real, _OPEN_FLAGS)
    folder = os.open(base, _FOLDER_FLAGS & ~getattr(os, "O_NOFOLLOW", 0))
    try:
        for part in parts[:-1]:
            inner = _open_folder(part, folder, link)
            os.close(folder)
            folder = inner
        return os.open(parts[-1], _OPEN_FLAGS, dir_fd=folder)
    finally:
        os.close(folder)


def _open_folder(part: str, folder: int, link: str) -> int:
    """The folder ``part`` inside the open ``folder``; a symlink there is refused."""
    try:
        return os.open(part, _FOLDER_FLAGS, dir_fd=folder)
    except OSError as error:
        if error.errno in (*_SYMLINK_ERRNOS, errno.ENOTDIR) and _is_symlink(part, folder):
            raise outside(link) from None
        raise


def _is_symlink(part: str, folder: int) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(part, dir_fd=folder).st_mode)
    except OSError:
        return False


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
