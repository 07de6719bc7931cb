"""The control API served for real on 127.0.0.1 (a free port) over a FakeHandle, and a
plain HTTP client that runs in a thread (urllib, so nothing of lbsim's own is in the way)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from functools import partial
from typing import Any

import attrs
import trio
from api_fake import FakeHandle

from lbsim.api.http import serve_api

TOKEN = "s3cret-token"


@attrs.frozen
class Got:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error(self) -> dict[str, Any]:
        """The Azure error envelope's ``error``."""
        envelope = self.json()
        assert set(envelope) == {"error"}, envelope
        assert {"code", "message", "target", "details"} <= set(envelope["error"])
        return dict(envelope["error"])


@attrs.frozen
class Served:
    url: str
    fake: FakeHandle

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Got:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        return await trio.to_thread.run_sync(
            partial(_fetch, method, self.url + path, data, headers or {})
        )


def _fetch(method: str, url: str, data: bytes | None, headers: dict[str, str]) -> Got:
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Got(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Got(error.code, dict(error.headers.items()), error.read())


async def serve(nursery: trio.Nursery, token: str | None) -> Served:
    fake = FakeHandle()
    url = await nursery.start(partial(serve_api, fake, host="127.0.0.1", port=0, token=token))
    return Served(url, fake)
