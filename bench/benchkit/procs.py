"""Processes the bench starts, and what it reads about them from /proc.

Every process is started here, stopped by its own PID (SIGTERM, then SIGKILL after a bounded
wait), and never outlives the ``with`` block that started it.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A step of the bench could not be carried out (a process died, a port is busy...)."""


class Proc:
    """A child process with a name, its output sent to a file (or discarded); with
    ``pipe``, its stdout is kept for :meth:`read_line` (for a process that prints little)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path | None = None,
        pipe: bool = False,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        out: IO[bytes] | int = log.open("wb") if log else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(  # noqa: S603  (argv built by the bench itself)
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE if pipe else out,
                stderr=out,
                env=env,
                cwd=cwd,
            )
        finally:
            if not isinstance(out, int):
                out.close()
        self.started = time.monotonic()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def read_line(self, timeout_s: float) -> str:
        """One line of the process's stdout, or "" if none came in time."""
        stdout = self.popen.stdout
        if stdout is None:
            return ""
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        return stdout.readline().decode(errors="replace").strip() if ready else ""

    def log_tail(self, lines: int = 8) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM to this PID, then SIGKILL to it if it has not ended within ``timeout_s``."""
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout_s)
        if self.popen.stdout is not None:
            self.popen.stdout.close()


@contextlib.contextmanager
def running(
    name: str,
    argv: Sequence[str],
    *,
    log: Path | None = None,
    pipe: bool = False,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Proc]:
    """A process that is stopped when the block ends, however it ends."""
    proc = Proc(name, argv, log=log, pipe=pipe, env=env, cwd=cwd)
    try:
        yield proc
    finally:
        proc.stop()


def wait_until(check: Callable[[], bool], proc: Proc, what: str, timeout_s: float = 30.0) -> float:
    """Poll ``check`` until true; seconds since ``proc`` started. Fails if it died or timed
    out."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if not proc.alive():
            raise BenchError(f"{proc.name} ended before {what}:\n{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.name}: no {what} within {timeout_s:.0f} s")
        time.sleep(0.005)
    return time.monotonic() - proc.started


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a TCP connection to (host, port) is accepted."""
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def udp_echoes(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a datagram to (host, port) comes back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        try:
            sock.sendto(b"ping", (host, port))
            return sock.recv(64) == b"ping"
        except OSError:
            return False


def check_free(ports: Sequence[int]) -> None:
    """Fail clearly if any of these loopback ports is taken (TCP or UDP)."""
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError as error:
                    raise BenchError(
                        f"port {port} is in use ({error.strerror}); pick others with --port-base"
                    ) from None


def rss_kib(pid: int) -> int:
    """Resident set size of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process (all its threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def output(
    argv: Sequence[str],
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """The stdout of a short command (its stderr if stdout is empty); fails on a time-out."""
    try:
        done = subprocess.run(  # noqa: S603  (argv built by the bench itself)
            list(argv), capture_output=True, timeout=timeout_s, check=False, env=env, cwd=cwd
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f"{argv[0]} took more than {timeout_s:.0f} s") from None
    except OSError as error:
        raise BenchError(f"cannot run {argv[0]}: {error.strerror}") from None
    text = done.stdout.decode(errors="replace").strip()
    return text or done.stderr.decode(errors="replace").strip()
