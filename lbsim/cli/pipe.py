"""Output whose reader may go away: ``lbsim check ... | head -1`` still exits with the verdict.

When the reader of a pipe closes its end, the next write raises BrokenPipeError. Raised in
the middle of a command, it would end the command before it returns its exit code; left to
the interpreter's last flush, it prints "Exception ignored ... BrokenPipeError" and exits
120. Python's documented idiom (https://docs.python.org/3/library/signal.html#note-on-sigpipe)
is to point the descriptor at ``os.devnull`` once the reader has gone: what is left to say
goes nowhere, quietly, and the command ends as it would have, with its own exit code.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO, cast


class _Leavable:
    """A text stream that drops what it is given once its reader has gone away."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.reader_gone = False

    def write(self, text: str) -> int:
        if not self.reader_gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.reader_gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        """From now on, write nothing; and let the stream's descriptor (if it has one) lead
        to ``os.devnull``, so that the bytes it still buffers are flushed there without an
        error, now or when the interpreter exits."""
        self.reader_gone = True
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError, io.UnsupportedOperation):  # no descriptor: nothing to do
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def reader_may_leave() -> Iterator[None]:
    """Within: ``sys.stdout`` and ``sys.stderr`` drop, without an error, what their reader is
    no longer there to take; on the way out, what stdout buffers is flushed the same way."""
    originals = sys.stdout, sys.stderr
    out, err = _Leavable(originals[0]), _Leavable(originals[1])
    sys.stdout, sys.stderr = cast(TextIO, out), cast(TextIO, err)
    try:
        yield
    finally:
        out.flush()
        err.flush()
        sys.stdout, sys.stderr = originals
