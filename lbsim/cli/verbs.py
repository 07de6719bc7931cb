"""The verbs that talk to a running ``lbsim up`` through its control API: ``status``,
``wait``, ``list``, ``scale``, ``instance``, ``reload``, ``fault`` and ``bastion tunnel``.

Exit codes: 0 done (ready, for ``status`` and ``wait``), 1 not ready (``status``; ``wait``
timed out), 2 refused, nobody answered, or what answered is not lbsim (``lbsim: Code:
message`` and each detail below).
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from lbsim.cli import render
from lbsim.cli.changes import change_lines, list_rows
from lbsim.cli.client import (
    DEFAULT_API,
    FAULT,
    FAULTS,
    INSTANCES,
    NOT_READY,
    PORTS,
    READY,
    TUNNEL,
    Answer,
    ApiError,
    Client,
    base_url,
    segment,
    token_of,
)

EXIT_OK, EXIT_NOT_READY, EXIT_ERROR = 0, 1, 2
POLL_S = 0.2
HOLD_POLL_S = 1.0  # how often a held tunnel renews its lease (and learns if lbsim has it)
TUNNEL_LEASE_S = 15  # a tunnel whose verb is killed (SIGKILL) closes this long after

if TYPE_CHECKING:  # the parsers' class is the lbsim parser's own
    Sub = argparse._SubParsersAction[Any]


def add_parsers(sub: Sub) -> None:
    """Register the verbs on the ``lbsim`` parser's subcommands."""
    status = _verb(sub, "status", "is the running lbsim ready, and what does it serve?")
    status.set_defaults(run=cmd_status)
    wait = _verb(sub, "wait", "wait until the running lbsim is ready (exit 0), or time out (1)")
    wait.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="give up after S seconds (default: 30)",
    )
    wait.set_defaults(run=cmd_wait)
    listing = _verb(sub, "list", "one row per instance: state and frontend port of each rule")
    listing.set_defaults(run=cmd_list)
    scale = _verb(sub, "scale", "set a scale set's capacity: instances are added or removed")
    scale.add_argument("name", metavar="NAME", help="the scale set")
    scale.add_argument("capacity", metavar="N", type=int, help="the new number of instances")
    scale.set_defaults(run=cmd_scale)
    instance = _verb(
        sub,
        "instance",
        "start, stop, restart, reimage, delete, protect or unprotect one instance",
    )
    instance.add_argument(
        "action",
        choices=("start", "stop", "restart", "reimage", "delete", "protect", "unprotect"),
        help="what to do (reimage: a new OS disk, so a new SSH host key; protect: from "
        "scale-in, as Azure's protectFromScaleIn)",
    )
    instance.add_argument("name", metavar="NAME", help="the scale set")
    instance.add_argument("instance_id", metavar="ID", type=int, help="the instance id")
    instance.set_defaults(run=cmd_instance)
    reload = _verb(sub, "reload", "load the template and config again and apply what changed")
    reload.set_defaults(run=cmd_reload)
    _fault_parser(sub)
    _bastion_parser(sub)


def _fault_parser(sub: Sub) -> None:
    """``lbsim fault add|rm|list``: faults in Toxiproxy's vocabulary (docs/faults.md)."""
    fault = _verb(sub, "fault", "add, remove (rm) or list faults: latency, bandwidth, down, ...")
    fault.add_argument("action", choices=("add", "rm", "list"), help="what to do")
    fault.add_argument("name", metavar="NAME", nargs="?", help="the fault's name (rm: required)")
    fault.add_argument(
        "-n", "--name", dest="name_option", metavar="NAME", help="the fault's name, as NAME does"
    )
    fault.add_argument("-t", "--type", help="add: latency, bandwidth, timeout, reset_peer, ...")
    fault.add_argument(
        "-a",
        "--attribute",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="add: an attribute of the type, as Toxiproxy names it (latency=100); repeatable",
    )
    fault.add_argument(
        "--stream",
        choices=("upstream", "downstream"),
        default="downstream",
        help="add: upstream (client to backend) or downstream (backend to client)",
    )
    fault.add_argument("--toxicity", type=_finite, default=1.0, help="0 never acts, 1 always")
    fault.add_argument("--seed", type=int, help="seed of the fault's random draws")
    fault.add_argument("--frontend-port", type=int, metavar="PORT", help="target: a port")
    fault.add_argument("--rule", help="target: a NAT rule or pool, or a load-balancing rule")
    fault.add_argument("--instance", help="target: an instance (web/1)")
    fault.set_defaults(run=cmd_fault)


def _bastion_parser(sub: Sub) -> None:
    """``lbsim bastion tunnel``: the shape of ``az network bastion tunnel``."""
    bastion = _verb(sub, "bastion", "open a tunnel through the bastion host to an instance's port")
    bastion.add_argument("action", choices=("tunnel",), help="tunnel: held until Ctrl + C")
    bastion.add_argument("--target", required=True, help="the instance: web/1, or a VM's name")
    bastion.add_argument(
        "--resource-port", required=True, type=int, metavar="PORT", help="the instance's port"
    )
    bastion.add_argument(
        "--port", type=int, default=0, help="the local port on 127.0.0.1 (0: a free one)"
    )
    bastion.add_argument(
        "-n", "--name", metavar="BASTION", help="the bastion host (default: the target's)"
    )
    bastion.set_defaults(run=cmd_bastion)


def _verb(sub: Sub, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.add_argument(
        "--api",
        metavar="URL",
        help=f"the running lbsim's control API (default: $LBSIM_API, else {DEFAULT_API})",
    )
    parser.add_argument(
        "--api-token",
        metavar="TOKEN",
        help="bearer token, when lbsim up has an api_token (default: $LBSIM_API_TOKEN, else none)",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=("table", "json"),
        default="table",
        help="how to print the result (default: table)",
    )
    return parser


def _guarded(run: Callable[[argparse.Namespace, Client], int]) -> Callable[..., int]:
    """Each verb ends in an exit code: a refusal prints its code, message and details."""

    def verb(args: argparse.Namespace) -> int:
        try:
            client = Client(base_url(args.api), token_of(args.api_token))
            return run(args, client)
        except ApiError as error:
            print("\n".join(error.lines()), file=sys.stderr)
            return EXIT_ERROR

    return verb


def _readiness(client: Client, ready: Answer) -> str | None:
    """None when ``GET /readyz`` answered ready, else the reason it gave."""
    if ready.status == 200:
        client.expect(ready, "GET /readyz", READY)
        return None
    return str(client.expect(ready, "GET /readyz", NOT_READY)["reason"])


@_guarded
def cmd_status(args: argparse.Namespace, client: Client) -> int:
    reason = _readiness(client, client.call("GET", "/readyz", accept=(503,)))
    instances = client.get("/v1/instances", INSTANCES)
    ports = client.get("/v1/ports", PORTS)
    states: dict[str, int] = {}
    for item in instances:
        states[item["state"]] = states.get(item["state"], 0) + 1
    rules = sum(1 for p in ports if p.get("kind") == "LoadBalancingRule")
    if args.output == "json":
        render.dump(
            {
                "url": client.url,
                "ready": reason is None,
                "reason": reason,
                "instances": states,
                "natEntries": len(ports) - rules,
                "loadBalancingRules": rules,
            }
        )
    else:
        print(f"lbsim at {client.url}: " + ("ready" if reason is None else f"not ready: {reason}"))
        by_state = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        print(f"instances: {len(instances)}" + (f" ({by_state})" if by_state else ""))
        print(f"NAT entries: {len(ports) - rules}; load-balancing rules: {rules}")
    return EXIT_OK if reason is None else EXIT_NOT_READY


@_guarded
def cmd_wait(args: argparse.Namespace, client: Client) -> int:
    deadline = time.monotonic() + max(args.timeout, 0.0)
    reason = "not asked yet"
    while True:
        left = deadline - time.monotonic()
        try:
            ready = client.call("GET", "/readyz", timeout=max(min(left, 2.0), 0.1), accept=(503,))
        except ApiError as error:
            if error.code != "ApiUnreachable":
                raise  # a wrong token will not get better by waiting
            reason = error.message
        else:
            why = _readiness(client, ready)  # not lbsim: waiting will not help (raises)
            if why is None:
                print(f"lbsim at {client.url}: ready")
                return EXIT_OK
            reason = why
        if time.monotonic() + POLL_S > deadline:
            print(f"lbsim: not ready after {args.timeout:g} s: {reason}", file=sys.stderr)
            return EXIT_NOT_READY
        time.sleep(POLL_S)


@_guarded
def cmd_list(args: argparse.Namespace, client: Client) -> int:
    instances = client.get("/v1/instances", INSTANCES)
    if args.output == "json":
        render.dump(instances)
        return EXIT_OK
    headers, rows = list_rows(instances)
    print(render.table(rows, headers) if rows else "no instances")
    return EXIT_OK


def _report(args: argparse.Namespace, what: str, report: dict[str, Any]) -> int:
    if args.output == "json":
        render.dump(report)
    else:
        print("\n".join(change_lines(what, report)))
    return EXIT_OK


@_guarded
def cmd_scale(args: argparse.Namespace, client: Client) -> int:
    path = f"/v1/scale-sets/{segment(args.name)}/capacity"
    report = client.change("PUT", path, {"capacity": args.capacity})
    return _report(args, f"scale {args.name} {args.capacity}", report)


@_guarded
def cmd_instance(args: argparse.Namespace, client: Client) -> int:
    path = f"/v1/scale-sets/{segment(args.name)}/instances/{args.instance_id}"
    if args.action == "delete":
        report = client.change("DELETE", path)
    elif args.action in ("protect", "unprotect"):
        body = {"protectFromScaleIn": args.action == "protect"}
        report = client.change("PUT", f"{path}/protection", body)
    else:
        report = client.change("POST", f"{path}/{args.action}")
    return _report(args, f"{args.action} {args.name}/{args.instance_id}", report)


@_guarded
def cmd_fault(args: argparse.Namespace, client: Client) -> int:
    args.name = _fault_name(args.name, args.name_option)
    if args.action == "list":
        faults = client.get("/v1/faults", FAULTS)
        if args.output == "json":
            render.dump(faults)
        else:
            rows = [_fault_row(f) for f in faults]
            headers = ["NAME", "TYPE", "STREAM", "TOXICITY", "ATTRIBUTES", "TARGET"]
            print(render.table(rows, headers) if rows else "no faults")
        return EXIT_OK
    if args.action == "rm":
        if not args.name:
            raise ApiError("InvalidArgument", "lbsim fault rm NAME: which fault?")
        path = f"/v1/faults/{segment(args.name)}"
        gone = client.expect(client.call("DELETE", path), f"DELETE {path}", FAULT)
        return _said(args, gone, "removed")
    if not args.type:
        raise ApiError("InvalidArgument", "lbsim fault add: --type is required (latency, ...)")
    body: dict[str, Any] = {"type": args.type, "stream": args.stream, "toxicity": args.toxicity}
    body["attributes"] = dict(_attribute(text) for text in args.attribute)
    target = {"frontendPort": args.frontend_port, "rule": args.rule, "instance": args.instance}
    body["target"] = {k: v for k, v in target.items() if v is not None}
    body |= {k: v for k, v in (("name", args.name), ("seed", args.seed)) if v is not None}
    made = client.expect(client.call("POST", "/v1/faults", body), "POST /v1/faults", FAULT)
    return _said(args, made, "added")


def _finite(text: str) -> float:
    """A number JSON can carry (not nan or inf), or argparse's usage error."""
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return number


def _fault_name(positional: str | None, option: str | None) -> str | None:
    """The fault's name, given as NAME or as ``-n NAME`` (Toxiproxy's CLI spells it so)."""
    if positional and option and positional != option:
        raise ApiError("InvalidArgument", f"lbsim fault: two names, {positional!r} and {option!r}")
    return positional or option


def _attribute(text: str) -> tuple[str, float]:
    key, sep, value = text.partition("=")
    try:
        number = float(value)
    except ValueError:
        number = None
    if not sep or not key or number is None or not math.isfinite(number):
        raise ApiError("InvalidArgument", f"--attribute {text!r}: give KEY=NUMBER (latency=100)")
    return key, int(number) if number.is_integer() else number


def _fault_row(fault: dict[str, Any]) -> list[Any]:
    attributes = ", ".join(f"{k}={v}" for k, v in fault["attributes"].items())
    target = ", ".join(f"{k}={v}" for k, v in fault["target"].items()) or "everything"
    toxicity = fault.get("toxicity")
    return [fault["name"], fault["type"], fault["stream"], toxicity, attributes, target]


def _said(args: argparse.Namespace, fault: dict[str, Any], what: str) -> int:
    if args.output == "json":
        render.dump(fault)
    else:
        row = _fault_row(fault)
        print(f"fault {row[0]} {what}: {row[1]} {row[2]} ({row[4] or 'no attributes'}) on {row[5]}")
    return EXIT_OK


@_guarded
def cmd_reload(args: argparse.Namespace, client: Client) -> int:
    return _report(args, "reload", client.change("POST", "/v1/reload"))


@_guarded
def cmd_bastion(args: argparse.Namespace, client: Client) -> int:
    """Ask lbsim for a tunnel, say where it listens (as az does), hold it until SIGINT or
    SIGTERM, then close it; exit 2 if lbsim closes it or stops first. The tunnel is leased:
    held by renewals, it closes by itself once the verb dies unable to close it."""
    body = {"target": args.target, "resourcePort": args.resource_port, "port": args.port}
    body |= {"leaseSeconds": TUNNEL_LEASE_S}
    body |= {"bastion": args.name} if args.name else {}
    with _until_signalled() as stop:  # from the start: a signal never finds az's lines unheld
        made = client.expect(client.call("POST", "/v1/bastion/tunnels", body), "POST", TUNNEL)
        try:
            _said_tunnel(args, made)
            _hold(client, made["id"], stop)
        finally:
            _close_tunnel(client, f"/v1/bastion/tunnels/{segment(made['id'])}")
    return EXIT_OK


def _said_tunnel(args: argparse.Namespace, made: dict[str, Any]) -> None:
    port = made["listenPort"]
    if args.output == "json":
        render.dump(made)
        return
    print(f"Opening tunnel on port: {port}", flush=True)
    print(f"Tunnel is ready, connect on port {port}", flush=True)
    print("Ctrl + C to close", flush=True)


@contextmanager
def _until_signalled() -> Iterator[threading.Event]:
    """An event that SIGINT or SIGTERM sets (instead of ending the process) inside."""
    stop = threading.Event()
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, lambda *_: stop.set()) for signum in wanted}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _hold(client: Client, tunnel_id: str, stop: threading.Event) -> None:
    """Renew the tunnel's lease until ``stop``; ApiError when the tunnel goes first."""
    path = f"/v1/bastion/tunnels/{segment(tunnel_id)}/renew"
    while not stop.wait(HOLD_POLL_S):
        try:
            client.expect(client.call("POST", path), "POST", TUNNEL)
        except ApiError as error:
            if error.code != "ResourceNotFound":
                raise
            raise ApiError(
                "TunnelClosed", f"lbsim at {client.url} closed tunnel {tunnel_id}"
            ) from None


def _close_tunnel(client: Client, path: str) -> None:
    """Close the tunnel; one that lbsim closed already (or a lbsim gone) is no error."""
    try:
        client.call("DELETE", path)
    except ApiError as error:
        if error.code not in ("ResourceNotFound", "ApiUnreachable"):
            raise
