"""serve_api: the URL it reports is the one bound (port 0 picks one), on IPv4 and IPv6
loopback; an address it cannot bind is a clear ApiBindFailed, before anything is served."""

from __future__ import annotations

import socket
from functools import partial

import pytest
import trio
from api_client import Served
from api_fake import FakeHandle

from lbsim.api.http import serve_api
from lbsim.errors import ConfigError


async def test_port_0_reports_the_bound_port(api: Served) -> None:
    assert api.url.startswith("http://127.0.0.1:")
    assert int(api.url.rsplit(":", 1)[1]) > 0
    assert (await api.request("GET", "/healthz")).status == 200


async def test_ipv6_loopback(nursery: trio.Nursery) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    url = await nursery.start(partial(serve_api, FakeHandle(), host="::1", port=0, token=None))
    assert url.startswith("http://[::1]:")
    got = await Served(url, FakeHandle()).request("GET", "/healthz")
    assert got.status == 200


async def test_a_port_in_use_is_api_bind_failed() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as caught:
            await serve_api(FakeHandle(), host="127.0.0.1", port=port, token=None)
    assert caught.value.code == "ApiBindFailed"
    assert caught.value.message.startswith(f"cannot serve the control API on 127.0.0.1:{port}: ")
    assert "Address already in use" in caught.value.message


async def test_cancelling_stops_serving() -> None:
    async with trio.open_nursery() as nursery:
        url = await nursery.start(
            partial(serve_api, FakeHandle(), host="127.0.0.1", port=0, token=None)
        )
        nursery.cancel_scope.cancel()
    port = int(url.rsplit(":", 1)[1])
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))
