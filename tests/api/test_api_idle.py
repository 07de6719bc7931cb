"""The control API serves many idle clients without a thread each, and ends them: 200
connections that send nothing (or trickle a request head) do not stop /healthz from answering,
and each is closed once the keep-alive timeout has passed."""

from __future__ import annotations

import pytest
import trio
from api_client import serve

from lbsim.api import http

IDLE = 200
KEEP_ALIVE_S = 1.0  # the test's own: the real 5 s would only make it slower


async def _connect(port: int) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", port)


async def _closed_by_server(stream: trio.SocketStream) -> bool:
    """True once the server closes (EOF or reset), well before hypercorn's own 5 s."""
    with trio.move_on_after(KEEP_ALIVE_S + 2):  # hypercorn alone would wait 5 s
        try:
            while await stream.receive_some(4096):
                pass  # hypercorn may answer a trickled head with 408 before closing
        except trio.BrokenResourceError:
            pass
        return True
    return False


@pytest.mark.timeout(60)
async def test_idle_connections_do_not_block_healthz_and_are_closed(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "KEEP_ALIVE_S", KEEP_ALIVE_S)
    served = await serve(nursery, None)
    port = int(served.url.rsplit(":", 1)[1])
    started = trio.current_time()  # before the first one opens: it is closed first
    streams: list[trio.SocketStream] = []
    try:
        silent = [await _connect(port) for _ in range(IDLE // 2)]
        streams += silent
        trickling = [await _connect(port) for _ in range(IDLE - len(silent))]
        streams += trickling
        for stream in trickling:  # a request head that never ends (slowloris)
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        opened = trio.current_time()

        got = await served.request("GET", "/healthz")
        assert got.status == 200
        assert trio.current_time() - opened < KEEP_ALIVE_S  # answered while all 200 were open

        closed = []
        async with trio.open_nursery() as waiting:
            for stream in streams:

                async def wait(stream: trio.SocketStream = stream) -> None:
                    closed.append(await _closed_by_server(stream))

                waiting.start_soon(wait)
        assert closed == [True] * IDLE
        assert trio.current_time() - started >= KEEP_ALIVE_S * 0.9  # not before the timeout
    finally:
        for stream in streams:  # (also when an assertion failed: no socket left behind)
            await trio.aclose_forcefully(stream)


async def test_the_timeouts_are_set() -> None:
    """The values lbsim serves with (hypercorn's read timeout is off unless set)."""
    assert (http.KEEP_ALIVE_S, http.READ_TIMEOUT_S) == (5.0, 60)


@pytest.mark.timeout(30)
async def test_a_connection_in_use_is_kept_across_requests(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Keep-alive still keeps: two requests on one connection within the timeout."""
    monkeypatch.setattr(http, "KEEP_ALIVE_S", KEEP_ALIVE_S)
    url = (await serve(nursery, None)).url
    stream = await trio.open_tcp_stream("127.0.0.1", int(url.rsplit(":", 1)[1]))
    async with stream:
        for _ in range(2):
            await stream.send_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            answer = b""
            with trio.fail_after(5):
                while not answer.endswith(b"}\n"):  # the whole JSON body
                    answer += await stream.receive_some(4096)
            assert answer.startswith(b"HTTP/1.1 200")
