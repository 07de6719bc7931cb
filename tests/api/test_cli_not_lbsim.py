"""The CLI verbs pointed at something that is not lbsim: a web server of the test's own (the
standard library's, in a thread on 127.0.0.1, stopped by the test) that answers HTML, JSON
that is not an object, or an object without lbsim's keys, and a TCP server that does not
speak HTTP. Every verb says ``NotLbsim`` and exits 2, never with a traceback; ``wait`` does
not wait for it to get better."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lbsim.cli import main

Answers = dict[str, tuple[int, bytes]]  # path -> (status, body) for every method

READY = (200, b'{"status": "ready"}')
HTML = (200, b"<html><body>It works!</body></html>")


class Stranger:
    """An HTTP server that answers each path as ``answers`` says (404 for the others)."""

    def __init__(self) -> None:
        self.answers: Answers = {}
        answers = self.answers

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                path = self.path.partition("?")[0]
                status, body = answers.get(path, (404, b"<html>Not Found</html>"))
                self.send_response(status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer()

            def do_PUT(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def do_DELETE(self) -> None:
                self._answer()

            def log_message(self, format: str, *args: object) -> None:
                pass  # quiet

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def not_lbsim(self, why: str) -> str:
        """The verbs' line on stderr for an answer that is not lbsim's."""
        return f"lbsim: NotLbsim: {self.url} does not answer as lbsim's control API ({why})\n"


@pytest.fixture
def stranger() -> Iterator[Stranger]:
    server = Stranger()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=5)


def lbsim(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (HTML, "GET /readyz: HTTP 200, not JSON: '<html><body>It works!</body></html>'"),
        ((200, b'["ready"]'), "GET /readyz: HTTP 200, $ is a list, not an object"),
        ((200, b'"ready"'), "GET /readyz: HTTP 200, $ is a string, not an object"),
        ((200, b'{"ok": true}'), "GET /readyz: HTTP 200, $ has no 'status'"),
        ((503, b'{"status": "notReady"}'), "GET /readyz: HTTP 503, $ has no 'reason'"),
        ((503, b"Service Unavailable"), "GET /readyz: HTTP 503, not JSON: 'Service Unavailable'"),
    ],
)
@pytest.mark.parametrize("verb", [["status"], ["wait", "--timeout", "30"]])
def test_status_and_wait_say_not_lbsim(
    stranger: Stranger,
    capsys: pytest.CaptureFixture[str],
    verb: list[str],
    answer: tuple[int, bytes],
    why: str,
) -> None:
    stranger.answers["/readyz"] = answer
    started = time.monotonic()
    code, out, err = lbsim(capsys, *verb, "--api", stranger.url)
    assert (code, out, err) == (2, "", stranger.not_lbsim(why))
    assert time.monotonic() - started < 10  # wait gave up at once: waiting will not help


@pytest.mark.parametrize(
    ("answers", "why"),
    [
        ({"/v1/instances": HTML}, "GET /v1/instances: HTTP 200, not JSON: '<html><body>"),
        ({"/v1/instances": (200, b"{}")}, "GET /v1/instances: HTTP 200, $ is an object, not a"),
        (
            {"/v1/instances": (200, b'[{"name": "web/0"}]')},
            "GET /v1/instances: HTTP 200, $[0] has no 'scaleSet'",
        ),
        (
            {
                "/v1/instances": (200, b"[]"),
                "/v1/ports": (200, b'{"ssh": 22}'),
            },
            "GET /v1/ports: HTTP 200, $ is an object, not a list",
        ),
    ],
)
def test_status_checks_every_answer(
    stranger: Stranger, capsys: pytest.CaptureFixture[str], answers: Answers, why: str
) -> None:
    stranger.answers.update({"/readyz": READY, **answers})
    code, out, err = lbsim(capsys, "status", "--api", stranger.url)
    assert (code, out) == (2, "")
    assert err.startswith(f"lbsim: NotLbsim: {stranger.url} does not answer as lbsim's control")
    assert why in err


def test_status_of_a_stranger_that_answers_as_lbsim_works(
    stranger: Stranger, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shapes ask no more than lbsim answers."""
    instance = b'{"scaleSet": "web", "instanceId": 0, "state": "running", "ports": []}'
    stranger.answers.update(
        {
            "/readyz": READY,
            "/v1/instances": (200, b"[" + instance + b"]"),
            "/v1/ports": (200, b'[{"kind": "LoadBalancingRule"}]'),
        }
    )
    code, out, _ = lbsim(capsys, "status", "--api", stranger.url)
    assert (code, out.splitlines()) == (
        0,
        [
            f"lbsim at {stranger.url}: ready",
            "instances: 1 (1 running)",
            "NAT entries: 0; load-balancing rules: 1",
        ],
    )


CHANGES = [  # (method, path, verb)
    ("PUT", "/v1/scale-sets/web/capacity", ["scale", "web", "3"]),
    ("POST", "/v1/scale-sets/web/instances/1/stop", ["instance", "stop", "web", "1"]),
    ("DELETE", "/v1/scale-sets/web/instances/1", ["instance", "delete", "web", "1"]),
    ("PUT", "/v1/scale-sets/web/instances/1/protection", ["instance", "protect", "web", "1"]),
    ("POST", "/v1/reload", ["reload"]),
]


@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize(
    "answer",
    [
        (b"OK", "not JSON: 'OK'"),
        (b"[]", "$ is a list, not an object"),
        (b'{"status": "done"}', "$ has no 'added'"),
        (
            b'{"added": [], "removed": [], "instances": {"added": "web/3"}}',
            "$.instances.added is a string, not a list",
        ),
    ],
)
def test_changes_say_not_lbsim(
    stranger: Stranger,
    capsys: pytest.CaptureFixture[str],
    change: tuple[str, str, list[str]],
    answer: tuple[bytes, str],
) -> None:
    (method, path, verb), (body, wrong) = change, answer
    stranger.answers[path] = (200, body)
    code, out, err = lbsim(capsys, *verb, "--api", stranger.url)
    assert (code, out) == (2, "")
    assert err == stranger.not_lbsim(f"{method} {path}: HTTP 200, {wrong}")


def test_list_says_not_lbsim(stranger: Stranger, capsys: pytest.CaptureFixture[str]) -> None:
    stranger.answers["/v1/instances"] = (200, b'[{"scaleSet": "web", "ports": 3}]')
    code, out, err = lbsim(capsys, "list", "--api", stranger.url)
    assert (code, out) == (2, "")
    assert err == stranger.not_lbsim("GET /v1/instances: HTTP 200, $[0] has no 'instanceId'")


@pytest.fixture
def not_http() -> Iterator[str]:
    """A TCP server on 127.0.0.1 that answers every request with an SSH banner."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                conn.recv(65536)  # the request
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


@pytest.mark.parametrize("verb", [["status"], ["wait", "--timeout", "30"], ["list"], ["reload"]])
def test_a_server_that_is_not_http_is_not_lbsim(
    not_http: str, capsys: pytest.CaptureFixture[str], verb: list[str]
) -> None:
    code, out, err = lbsim(capsys, *verb, "--api", not_http)
    assert (code, out) == (2, "")
    assert err.startswith(f"lbsim: NotLbsim: {not_http} does not answer as lbsim's control API (")
    assert ": not HTTP: " in err
    assert "SSH-2.0-OpenSSH_9.6" in err
