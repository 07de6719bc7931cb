"""``lbsim up``: load, plan, and run the load balancer (and its control API) until SIGINT or
SIGTERM; SIGHUP reloads the template, parameters and config."""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import trio

from lbsim.api.config import resolve
from lbsim.api.handle import ChangeReport
from lbsim.api.library import unwrapped
from lbsim.api.session import Session
from lbsim.api.source import Source
from lbsim.cli import render
from lbsim.cli.notices import Notices
from lbsim.dataplane import host
from lbsim.dataplane.listeners import Listener
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import SshAuth, SshSettings, TcpEngine
from lbsim.errors import ConfigError, LbsimError, TemplateInvalid

_GC_YOUNG_THRESHOLD = 10_000  # allocations between passes of the young generation (see _up)

UP_HEADERS = ("FRONTEND", "PROTOCOL", "RULE", "INSTANCE", "BACKEND PORT", "BACKEND IP", "SERVED BY")


def cmd_up(args: argparse.Namespace) -> int:
    config = resolve(args)
    session = Session(Source.from_args(args), config, config_args=args, environ=os.environ)
    render.problems(session.warnings, prefix="warning: ")
    session.runtime.notice = notices = Notices()
    try:
        if config.runtime.tcp_engine is TcpEngine.REACTOR:
            host.run(_up, session, notices)  # the reactor owns the thread, trio is its guest
        else:
            trio.run(_up, session, notices)
    except BaseExceptionGroup as group:
        raise unwrapped(group) from None
    finally:
        notices.flush()
    return 0


async def _up(session: Session, notices: Notices) -> None:
    signals_wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    with trio.open_signal_receiver(*signals_wanted) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(notices.run)
            await nursery.start(_run_until_drained, session, nursery.cancel_scope)
            # The template, plan and listeners live until the end: out of the cyclic
            # collector's way, its passes stay short while traffic flows. Relayed flows
            # leave no cycles (reference counting frees them), so the collector has only
            # the odd cycle of a slow path to find: it runs after 10,000 allocations
            # rather than 700 (at 700 it cost ~2 us a connection, finding nothing).
            gc.freeze()
            gc.set_threshold(_GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            _announce(session)
            nursery.start_soon(_on_signals, signals, session, nursery.cancel_scope)
            if session.config.values["watch"]:  # reload on a file change as on SIGHUP
                from lbsim.api.watch import watch_files  # noqa: PLC0415  (only with --watch)

                nursery.start_soon(watch_files, session, partial(reload_and_report, session))


async def _run_until_drained(
    session: Session, done: trio.CancelScope, *, task_status: trio.TaskStatus[Session]
) -> None:
    await session.run(task_status=task_status)
    done.cancel()  # drained: stop listening for signals too


async def _on_signals(
    signals: AsyncIterator[int], session: Session, everything: trio.CancelScope
) -> None:
    """SIGHUP reloads; the first SIGINT/SIGTERM drains; a second one stops at once (open
    flows are reset)."""
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            await reload_and_report(session, name)
        elif not session.runtime.stopping:
            print(f"lbsim: {name}: draining (again to stop at once)", file=sys.stderr)
            session.shutdown()
        else:
            print(f"lbsim: {name}: stopping now", file=sys.stderr)
            everything.cancel()
            return


async def reload_and_report(session: Session, why: str) -> None:
    """Reload (on SIGHUP or a file change) and say what changed, or every error."""
    try:
        report = await session.reload()
    except TemplateInvalid as error:
        print(f"lbsim: {why}: reload refused, the old plan runs on:", file=sys.stderr)
        render.problems(error.problems)
        return
    except LbsimError as error:
        print(f"lbsim: {why}: reload refused: {error}", file=sys.stderr)
        return
    print(f"lbsim: {why}: reloaded: {describe(report)}", file=sys.stderr, flush=True)


def describe(report: ChangeReport) -> str:
    """A change report in one line."""
    if report.empty:
        return "nothing changed"
    parts = [
        f"{label} {', '.join(items)}"
        for label, items in (
            ("instances added", report.instances_added),
            ("instances removed", report.instances_removed),
            ("instances changed", report.instances_changed),
            ("NSGs changed", [n.rsplit("/", 1)[-1] for n in report.nsgs_changed]),
        )
        if items
    ]
    parts += [f"{len(report.added)} listeners opened"] if report.added else []
    parts += [f"{len(report.removed)} listeners closed"] if report.removed else []
    return "; ".join(parts)


def _announce(session: Session) -> None:
    runtime, api = session.runtime, session.api_url
    metrics_url = f"{api}/metrics" if api else None
    ready_file = session.config.values["ready_file"]
    if ready_file:  # first: a file that cannot be written is an error before "ready"
        _write_ready_file(Path(ready_file), runtime, api, metrics_url)
    listeners = runtime.listeners
    builtin = len({s.identity.name for s in runtime.instances})
    print(
        f"lbsim: ready listeners={len(listeners)} builtin_instances={builtin} "
        f"metrics={metrics_url or 'off'} api={api or 'off'}",
        flush=True,
    )
    rows = [_row(listener) for listener in listeners]
    print(render.table(rows, UP_HEADERS), flush=True)
    _announce_inside(runtime)


def _announce_inside(runtime: Runtime) -> None:
    """Where the SOCKS endpoint listens, and who the built-in SSH servers let in."""
    if runtime.socks_address is not None:
        host, port = runtime.socks_address
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        source = runtime.vnet.default_source() or "(no virtual network)"
        print(f"lbsim: socks5 {shown}: a VM at {source} in the virtual network", flush=True)
    line = open_ssh(runtime.settings.ssh)
    if runtime.instances and line:
        runtime.notice(line)


def open_ssh(ssh: SshSettings) -> str:
    """What the built-in SSH servers let in unchecked, exactly ("" when nothing): any
    password only where password auth is offered with no password set, any key only where
    public keys are offered with no authorized_keys."""
    password = ssh.auth is not SshAuth.PUBLICKEY and ssh.password is None
    key = ssh.auth is not SshAuth.PASSWORD and ssh.authorized_keys is None
    if not (password or key):
        return ""
    what = " or ".join(w for w, on in (("any password", password), ("any key", key)) if on)
    knobs = (("ssh_password", password), ("ssh_authorized_keys", key))
    restricting = " and ".join(name for name, on in knobs if on)
    verb = "restrict" if password and key else "restricts"
    return (
        f"built-in instances' SSH servers let any user in with {what} ({restricting} {verb} them)"
    )


def _row(listener: Listener) -> list[Any]:
    route = listener.routes[0]
    instance = (
        route.backend.label if len(listener.routes) == 1 else f"{len(listener.routes)} backends"
    )
    where = listener.listen_label  # under a port map, where to connect (Azure's after it)
    return [
        listener.label if where == listener.label else f"{where} ({listener.label})",
        listener.protocol.value,
        listener.entry.rule_name,
        instance,
        route.backend_port,
        route.backend.private_ip_address if len(listener.routes) == 1 else "-",
        route.served_by or "(stopped)",
    ]


def listener_json(listener: Listener) -> dict[str, Any]:
    entry = listener.entry
    return {
        "loadBalancer": entry.load_balancer,
        "ruleName": entry.rule_name,
        "frontendIPConfiguration": entry.frontend.name,
        "frontendIPAddress": entry.frontend.address,
        "frontendPort": entry.frontend_port,
        "listenAddress": listener.listen_address[0],
        "listenPort": listener.listen_address[1],
        "protocol": listener.protocol.value,
        "backendPort": entry.backend_port,
        "backends": [
            {
                "scaleSet": r.backend.scale_set,
                "instanceId": r.backend.instance_id,
                "name": r.backend.name,
                "backendIPAddress": r.backend.private_ip_address,
                "servedBy": r.served_by,
            }
            for r in listener.routes
        ],
    }


def _write_ready_file(
    path: Path, runtime: Runtime, api: str | None, metrics_url: str | None
) -> None:
    data = {
        "pid": os.getpid(),
        "api": api,
        "metrics": metrics_url,
        "listeners": [listener_json(listener) for listener in runtime.listeners],
        "socks": list(runtime.socks_address) if runtime.socks_address else None,
    }
    temporary = path.with_name(path.name + ".tmp")
    try:
        temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        temporary.replace(path)
    except OSError as error:
        raise ConfigError("ReadyFileFailed", f"cannot write {path}: {error.strerror}") from None
