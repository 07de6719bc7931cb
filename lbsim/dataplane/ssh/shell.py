"""The small shell of a built-in instance: ``ssh host CMD`` (exec) and an interactive shell
with a pty. It knows what a user checks on a VM reached through a load balancer (which VM
this is, who logged in, its address), and says plainly that anything else is not there.

Commands are pure functions of the instance and the login user: :func:`execute` is the
whole language, the session functions only read lines and write what it returns."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable

import attrs

from lbsim.dataplane.ssh.instance import INSTANCE_FILE, SshInstance
from lbsim.dataplane.ssh.lib import asyncssh

__all__ = ["Ran", "execute", "session"]

NOT_FOUND = 127  # as a shell exits for a command it cannot find
_STATUS = re.compile(r"-?[0-9]{1,9}")  # what ``exit`` takes (a shell's wider forms are not)


@attrs.frozen
class Ran:
    """What a command did: its exit status, its output, and whether it ends the shell."""

    status: int = 0
    stdout: str = ""
    stderr: str = ""
    exits: bool = False


Command = Callable[[SshInstance, str, list[str]], Ran]


def execute(instance: SshInstance, user: str, line: str, last: int = 0) -> Ran:
    """Run one command line (``last``: the status ``exit`` with no number returns): commands
    joined by ``;``, ``&&`` and ``||`` run as a shell runs them, left to right."""
    try:
        commands = _commands(line)
    except ValueError as error:
        return Ran(2, stderr=f"-lbsim: syntax error: {error}\n")
    ran, out, err = Ran(last), list[str](), list[str]()
    for joiner, words in commands:
        if (joiner == "&&" and ran.status != 0) or (joiner == "||" and ran.status == 0):
            continue
        ran = _one(instance, user, words, ran.status)
        out.append(ran.stdout)
        err.append(ran.stderr)
        if ran.exits:
            break
    return Ran(ran.status, "".join(out), "".join(err), ran.exits)


def _commands(line: str) -> list[tuple[str, list[str]]]:
    """The commands of a line, each with the operator before it (``;`` for the first);
    pipes and background jobs are refused (ValueError)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split = True
    commands: list[tuple[str, list[str]]] = []
    joiner, words = ";", list[str]()
    for token in lexer:
        if token in (";", "&&", "||"):
            commands.append((joiner, words))
            joiner, words = token, []
        elif token and set(token) <= set(";&|"):
            raise ValueError(f"'{token}': pipes and background jobs are not available here")
        else:
            words.append(token)
    commands.append((joiner, words))
    return [(j, w) for j, w in commands if w]


def _one(instance: SshInstance, user: str, words: list[str], last: int) -> Ran:
    """One simple command."""
    name, args = words[0], words[1:]
    if name == "exit":
        return _exit(args, last)
    command = COMMANDS.get(name)
    if command is None:
        return _unavailable(name)
    return command(instance, user, args)


def _unavailable(what: str) -> Ran:
    return Ran(NOT_FOUND, stderr=f"{what}: not available on an lbsim instance\n")


def _exit(args: list[str], last: int) -> Ran:
    if not args:
        return Ran(last, exits=True)
    text = args[0]
    if not _STATUS.fullmatch(text):
        return Ran(2, stderr=f"-lbsim: exit: {text}: numeric argument required\n", exits=True)
    return Ran(int(text) % 256, exits=True)


def _hostname(instance: SshInstance, user: str, args: list[str]) -> Ran:
    if not args:
        return Ran(stdout=f"{instance.hostname}\n")
    if args in (["-I"], ["-i"]):
        return Ran(stdout=f"{instance.private_ip} \n")
    return Ran(1, stderr="hostname: you must be root to change the host name\n")


def _whoami(instance: SshInstance, user: str, args: list[str]) -> Ran:
    return Ran(stdout=f"{user}\n")


_IP_ADDR = {("addr",), ("a",), ("address",), ("addr", "show"), ("a", "s"), ("address", "show")}


def _ip(instance: SshInstance, user: str, args: list[str]) -> Ran:
    if tuple(args) not in _IP_ADDR:
        return _unavailable(shlex.join(["ip", *args]))
    return Ran(stdout=_addresses(instance.private_ip))


def _addresses(private_ip: str) -> str:
    """``ip addr`` as a VM prints it: the loopback interface, and eth0 with its private
    address (the subnet's prefix length is not among what lbsim knows of it)."""
    return (
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n"
        "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
        "    inet 127.0.0.1/8 scope host lo\n"
        "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP\n"
        f"    inet {private_ip} scope global eth0\n"
    )


def _cat(instance: SshInstance, user: str, args: list[str]) -> Ran:
    out, err, status = [], [], 0
    for path in args or ["-"]:
        if path == INSTANCE_FILE:
            out.append(instance.describe())
        else:
            err.append(f"cat: {path}: No such file or directory\n")
            status = 1
    return Ran(status, "".join(out), "".join(err))


def _echo(instance: SshInstance, user: str, args: list[str]) -> Ran:
    if args[:1] == ["-n"]:
        return Ran(stdout=" ".join(args[1:]))
    return Ran(stdout=" ".join(args) + "\n")


def _true(instance: SshInstance, user: str, args: list[str]) -> Ran:
    return Ran(0)


def _false(instance: SshInstance, user: str, args: list[str]) -> Ran:
    return Ran(1)


def _help(instance: SshInstance, user: str, args: list[str]) -> Ran:
    names = ", ".join(sorted([*COMMANDS, "exit"]))
    return Ran(stdout=f"lbsim instance {instance.label}: {names}\n")


COMMANDS: dict[str, Command] = {
    "hostname": _hostname,
    "whoami": _whoami,
    "ip": _ip,
    "cat": _cat,
    "echo": _echo,
    "true": _true,
    "false": _false,
    "help": _help,
}


async def session(instance: SshInstance, process: asyncssh.SSHServerProcess[str]) -> None:
    """One SSH session: a command (exec), or the interactive shell; other subsystems than
    SFTP (which asyncssh serves itself) are not there."""
    user = str(process.get_extra_info("username"))
    if process.subsystem is not None:
        process.stderr.write(f"subsystem {process.subsystem}: not available on an lbsim instance\n")
        process.exit(1)
    elif process.command is not None:
        ran = execute(instance, user, process.command)
        _write(process, ran)
        process.exit(ran.status)
    else:
        process.exit(await _shell(instance, user, process))


async def _shell(instance: SshInstance, user: str, process: asyncssh.SSHServerProcess[str]) -> int:
    """Read and run lines until ``exit`` or the end of input; the last status."""
    tty = process.get_terminal_type() is not None
    status = 0
    while True:
        if tty:
            process.stdout.write(f"{user}@{instance.hostname}:~$ ")
        line = await _read_line(process)
        if line is None:
            return status
        ran = execute(instance, user, line, status)
        _write(process, ran, tty=tty)
        status = ran.status
        if ran.exits:
            return status


async def _read_line(process: asyncssh.SSHServerProcess[str]) -> str | None:
    """The next line; None at the end of input (an interrupt gives an empty line)."""
    while True:
        try:
            line = await process.stdin.readline()
        except asyncssh.TerminalSizeChanged:
            continue
        except (asyncssh.BreakReceived, asyncssh.SignalReceived):
            return ""
        return line or None


def _write(process: asyncssh.SSHServerProcess[str], ran: Ran, *, tty: bool = False) -> None:
    """A command's output; on a terminal its errors too, as a pty carries both."""
    if ran.stdout:
        process.stdout.write(ran.stdout)
    if ran.stderr:
        (process.stdout if tty else process.stderr).write(ran.stderr)
