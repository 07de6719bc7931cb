"""The control API's endpoints: each a method, a path template and a handler over the
:class:`~lbsim.api.handle.LiveLoadBalancer`.

A path that matches no template is a 404; one that matches with another method is a 405 that
lists the methods it takes (``Allow``), as HTTP asks.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping

import attrs

from lbsim.api import bodies
from lbsim.api.handle import BastionTunnels, ChangeReport, LiveLoadBalancer
from lbsim.api.replies import PROMETHEUS, Detail, Refused, Reply, json_reply, refusal_of
from lbsim.dataplane.faults import Fault
from lbsim.errors import LbsimError


@attrs.frozen
class Call:
    """One request, as a handler sees it."""

    handle: LiveLoadBalancer
    params: Mapping[str, str]
    query: Mapping[str, list[str]]
    body: bytes


Handler = Callable[[Call], Awaitable[Reply]]


@attrs.frozen
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _route(method: str, template: str, handler: Handler) -> Route:
    regex = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", template)
    return Route(method, re.compile(regex), handler)


# --- reads ----------------------------------------------------------------------------------
async def _metrics(call: Call) -> Reply:
    return Reply(200, call.handle.metrics(), PROMETHEUS)


async def _healthz(call: Call) -> Reply:
    return json_reply({"status": "ok"})


async def _readyz(call: Call) -> Reply:
    reason = call.handle.readiness()
    if reason is None:
        return json_reply({"status": "ready"})
    return json_reply({"status": "notReady", "reason": reason}, 503)


async def _ports(call: Call) -> Reply:
    return json_reply(call.handle.ports())


async def _instances(call: Call) -> Reply:
    return json_reply(call.handle.instances())


async def _rules(call: Call) -> Reply:
    query = bodies.parse_query(call.query, bodies.RULES_QUERY)
    return json_reply(call.handle.rules(query["instance"], query.get("direction", "Inbound")))


async def _check(call: Call) -> Reply:
    body = bodies.parse_body(call.body, bodies.CHECK)
    if ("frontendPort" in body) == ("destination" in body):
        raise Refused(
            400,
            "InvalidRequestContent",
            "$: give the flow's frontendPort or its destination (IP:PORT), one of them",
            "$",
        )
    verdict = call.handle.check(
        source=body["source"],
        frontend_port=body.get("frontendPort"),
        destination=body.get("destination"),
        protocol=_protocol(body.get("protocol", "Tcp")),
        frontend=body.get("frontend"),
    )
    return json_reply(verdict)


def _protocol(raw: str) -> str:
    """Azure spells protocols Tcp and Udp and reads them in any letter case."""
    protocol = raw.capitalize()
    if protocol not in ("Tcp", "Udp"):
        message = f"$.protocol: {raw!r} is not Tcp or Udp"
        raise Refused(400, "InvalidRequestContent", message, "$.protocol")
    return protocol


# --- changes --------------------------------------------------------------------------------
async def _capacity(call: Call) -> Reply:
    body = bodies.parse_body(call.body, bodies.CAPACITY)
    return _changed(await call.handle.scale(call.params["name"], int(body["capacity"])))


def _instance_id(call: Call) -> int:
    raw = call.params["id"]
    if not re.fullmatch(r"[0-9]{1,9}", raw):
        raise Refused(
            400,
            "InvalidParameter",
            f"instance id {raw!r} is not a non-negative integer (0, 1, ...)",
            "instanceId",
        )
    return int(raw)


def _action(name: str) -> Handler:
    async def act(call: Call) -> Reply:
        instance_id = _instance_id(call)
        bodies.parse_body(call.body, bodies.NOTHING)
        change: Callable[[str, int], Awaitable[ChangeReport]] = getattr(call.handle, name)
        return _changed(await change(call.params["name"], instance_id))

    return act


async def _protection(call: Call) -> Reply:
    instance_id = _instance_id(call)
    body = bodies.parse_body(call.body, bodies.PROTECTION)
    on = bool(body["protectFromScaleIn"])
    return _changed(await call.handle.protect(call.params["name"], instance_id, on))


async def _reload(call: Call) -> Reply:
    bodies.parse_body(call.body, bodies.NOTHING)
    return _changed(await call.handle.reload())


# --- faults ---------------------------------------------------------------------------------
async def _faults(call: Call) -> Reply:
    return json_reply(call.handle.faults())


async def _add_fault(call: Call) -> Reply:
    body = bodies.parse_body(call.body, bodies.FAULT)
    try:
        return json_reply(call.handle.add_fault(Fault.from_json(body)))
    except LbsimError as error:
        raise _in_body(error) from None


async def _remove_fault(call: Call) -> Reply:
    bodies.parse_body(call.body, bodies.NOTHING)
    return json_reply(call.handle.remove_fault(call.params["name"]))


# --- bastion tunnels ------------------------------------------------------------------------
def _bastion(call: Call) -> BastionTunnels:
    if not isinstance(call.handle, BastionTunnels):
        raise Refused(404, "NotFound", "this load balancer opens no bastion tunnels")
    return call.handle


async def _tunnels(call: Call) -> Reply:
    return json_reply(_bastion(call).tunnels())


async def _open_tunnel(call: Call) -> Reply:
    body = bodies.parse_body(call.body, bodies.TUNNEL)
    handle = _bastion(call)
    try:
        made = await handle.open_tunnel(
            body["target"],
            body["resourcePort"],
            body.get("port", 0),
            body.get("bastion"),
            body.get("leaseSeconds"),
        )
    except LbsimError as error:
        raise _in_body(error) from None
    return json_reply(made, 201)


async def _renew_tunnel(call: Call) -> Reply:
    bodies.parse_body(call.body, bodies.NOTHING)
    return json_reply(_bastion(call).renew_tunnel(call.params["id"]))


async def _close_tunnel(call: Call) -> Reply:
    bodies.parse_body(call.body, bodies.NOTHING)
    return json_reply(_bastion(call).close_tunnel(call.params["id"]))


def _in_body(error: LbsimError) -> Refused:
    """A refusal whose target is the body's field as a JSON path (``$.target.rule``)."""
    refused = refusal_of(error)
    if error.at is not None:
        target = "$" + str(error.at).replace("/", ".")
        code = "InvalidRequestContent" if error.code == "InvalidFault" else error.code
        refused.error = Detail(code, f"{target}: {error.message.split(': ', 1)[-1]}", target)
    return refused


def _changed(report: ChangeReport) -> Reply:
    return json_reply(report.to_json())


_INSTANCE = "/v1/scale-sets/{name}/instances/{id}"
_ACTIONS = ("start", "stop", "restart", "reimage")
ROUTES = (
    _route("GET", "/metrics", _metrics),
    _route("GET", "/healthz", _healthz),
    _route("GET", "/readyz", _readyz),
    _route("GET", "/v1/ports", _ports),
    _route("GET", "/v1/instances", _instances),
    _route("GET", "/v1/rules", _rules),
    _route("POST", "/v1/check", _check),
    _route("PUT", "/v1/scale-sets/{name}/capacity", _capacity),
    *(_route("POST", f"{_INSTANCE}/{verb}", _action(verb)) for verb in _ACTIONS),
    _route("DELETE", _INSTANCE, _action("delete")),
    _route("PUT", f"{_INSTANCE}/protection", _protection),
    _route("POST", "/v1/reload", _reload),
    _route("GET", "/v1/faults", _faults),
    _route("POST", "/v1/faults", _add_fault),
    _route("DELETE", "/v1/faults/{name}", _remove_fault),
    _route("GET", "/v1/bastion/tunnels", _tunnels),
    _route("POST", "/v1/bastion/tunnels", _open_tunnel),
    _route("DELETE", "/v1/bastion/tunnels/{id}", _close_tunnel),
    _route("POST", "/v1/bastion/tunnels/{id}/renew", _renew_tunnel),
)


def find(method: str, path: str) -> tuple[Handler, dict[str, str]]:
    """The handler for a request and the path's parameters, or a 404/405 refusal."""
    allowed: list[str] = []
    for route in ROUTES:
        match = route.pattern.fullmatch(path)
        if match is None:
            continue
        if route.method == method:
            return route.handler, match.groupdict()
        allowed.append(route.method)
    if allowed:
        raise Refused(
            405,
            "MethodNotAllowed",
            f"{path} takes {', '.join(allowed)}, not {method}",
            path,
            headers=((b"allow", ", ".join(allowed).encode()),),
        )
    raise Refused(404, "NotFound", f"no endpoint {path} (see docs/api.md)", path)
