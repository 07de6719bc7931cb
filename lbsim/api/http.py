"""The control API: an ASGI application over a :class:`~lbsim.api.handle.LiveLoadBalancer`,
served by hypercorn's trio worker inside lbsim's own trio run.

hypercorn parses HTTP (1.1 and 2); this module only authenticates, routes (``routes.py``) and
turns every outcome into a reply: a refusal in Azure's error envelope, never a traceback. An
unexpected exception is a 500 ``InternalError`` and is printed once, on stderr.
"""

from __future__ import annotations

import hmac
import socket
import sys
import traceback
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope, Scope

from lbsim.api import routes
from lbsim.api.bodies import BODY_LIMIT
from lbsim.api.handle import LiveLoadBalancer
from lbsim.api.replies import Refused, Reply, refusal_of
from lbsim.errors import ConfigError, LbsimError

OPEN_PATHS = frozenset({"/healthz"})  # liveness answers without a token, as probes expect
# Each connection is a trio task of hypercorn's, not a thread: many idle clients cost little,
# and these timeouts end them. A connection that has not sent a whole request head within
# KEEP_ALIVE_S (a client that connects and stays silent, one that trickles its headers, or
# one idle between requests) is closed; so is one that sends nothing for READ_TIMEOUT_S while
# a request is under way (long enough for the slowest answer, a reload of a big template).
KEEP_ALIVE_S = 5.0
READ_TIMEOUT_S = 60


class _Disconnected(Exception):
    """The client went away before its body arrived: nobody to answer."""


class ControlApi:
    """The ASGI application. ``token`` (when set) is required as ``Authorization: Bearer``
    on every path but /healthz, Prometheus scrapes included (they can send one)."""

    def __init__(self, handle: LiveLoadBalancer, token: str | None) -> None:
        self.handle = handle
        self._token = token.encode() if token else None

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "no websockets"})
        else:
            try:
                reply = await self.reply(scope, receive)
            except _Disconnected:
                return
            await _send(send, reply)

    async def reply(self, scope: HTTPScope, receive: ASGIReceiveCallable) -> Reply:
        try:
            return await self._answer(scope, receive)
        except Refused as refused:
            return refused.reply()
        except LbsimError as error:
            return refusal_of(error).reply()
        except _Disconnected:
            raise
        except Exception as error:  # a bug: say so once, answer 500, keep serving
            where = f"{scope['method']} {scope['path']}"
            print(f"lbsim: InternalError: control API, {where}:", file=sys.stderr)
            traceback.print_exception(error, file=sys.stderr)
            message = f"{where} failed unexpectedly ({type(error).__name__}); see lbsim's log"
            return Refused(500, "InternalError", message).reply()

    async def _answer(self, scope: HTTPScope, receive: ASGIReceiveCallable) -> Reply:
        path = scope["path"]
        if path not in OPEN_PATHS:
            self._authenticate(scope)
        handler, params = routes.find(scope["method"], path)
        query = parse_qs(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        body = await _body(receive)
        return await handler(routes.Call(self.handle, params, query, body))

    def _authenticate(self, scope: HTTPScope) -> None:
        if self._token is None:
            return
        given = b""
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                given = value
        scheme, _, credential = given.partition(b" ")
        # compare_digest takes as long whatever the first differing byte: no timing oracle
        valid = hmac.compare_digest(credential.strip(), self._token)
        if scheme.lower() != b"bearer" or not valid:
            raise Refused(
                401,
                "AuthenticationFailed",
                "this lbsim requires 'Authorization: Bearer <api_token>'"
                + (" (the token given is not it)" if given else ""),
                headers=((b"www-authenticate", b'Bearer realm="lbsim"'),),
            )


async def _body(receive: ASGIReceiveCallable) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        if message["type"] != "http.request":
            continue
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > BODY_LIMIT:
            raise Refused(413, "RequestBodyTooLarge", f"a body is at most {BODY_LIMIT} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send(send: ASGISendCallable, reply: Reply) -> None:
    headers = [
        (b"content-type", reply.content_type.encode()),
        (b"content-length", str(len(reply.body)).encode()),
        (b"cache-control", b"no-store"),
        *reply.headers,
    ]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


async def _lifespan(receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
    """Nothing to set up or tear down; answering keeps hypercorn from warning about it."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def serve_api(
    handle: LiveLoadBalancer,
    *,
    host: str,
    port: int,
    token: str | None,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control API until cancelled; ``task_status.started`` gets its base URL
    (``http://127.0.0.1:9150``), with the port the system picked when ``port`` is 0.

    lbsim binds the socket itself, so that an address in use is a clear ``ApiBindFailed``
    before anything is served, and hands it to hypercorn by descriptor (``fd://``)."""
    listener = await _bind(host, port)
    config = Config()
    config.bind = [f"fd://{listener.detach()}"]
    config.loglevel = "WARNING"  # no "Running on" banner: lbsim prints its own ready line
    config.accesslog = None
    config.keep_alive_timeout = KEEP_ALIVE_S
    config.read_timeout = READ_TIMEOUT_S
    app = ControlApi(handle, token)
    async with trio.open_nursery() as nursery:
        binds: list[str] = await nursery.start(partial(serve, app, config, mode="asgi"))
        task_status.started(binds[0])


async def _bind(host: str, port: int) -> socket.socket:
    try:
        found = await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = found[0]
        listener = socket.socket(family, kind, proto)
    except OSError as error:
        raise _bind_failed(host, port, error) from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise _bind_failed(host, port, error) from None
    return listener


def _bind_failed(host: str, port: int, error: OSError) -> ConfigError:
    reason: Any = error.strerror or error
    hint = f" (see who holds it: ss -ltnp 'sport = :{port}')" if port else ""
    return ConfigError(
        "ApiBindFailed", f"cannot serve the control API on {host}:{port}: {reason}{hint}"
    )
