"""The CLI's side of the control API: requests to a running lbsim, with the standard library.

A refusal comes back as :class:`ApiError` with the envelope's code, message and details; a
lbsim that does not answer as ``ApiUnreachable``; something else that answers (not HTTP, not
JSON, or JSON of another shape than the shapes below) as ``NotLbsim``. The verbs
(``verbs.py``) print them.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any, Union
from urllib.parse import quote, urlencode, urlsplit

import attrs

from lbsim.errors import LbsimError

DEFAULT_API = "http://127.0.0.1:9150"
REQUEST_TIMEOUT_S = 60.0  # a reload loads the whole template again


class ApiError(LbsimError):
    """The control API refused a request, or no lbsim answered.

    ``details`` are (code, message, target) triples, one per problem."""

    def __init__(
        self, code: str, message: str, details: tuple[tuple[str, str, str | None], ...] = ()
    ) -> None:
        super().__init__(code, message)
        self.details = details
        self.status: int | None = None

    def lines(self) -> list[str]:
        """``lbsim: Code: message``, then each detail that says more on its own line, as
        ``target: Code: message`` (a template problem reads ``file.json#/pointer: ...``)."""
        out = [f"lbsim: {self.code}: {self.message}"]
        for code, message, target in self.details:
            if (code, message) == (self.code, self.message):
                continue
            where = f"{target}: " if target and not message.startswith(target) else ""
            out.append(f"  {where}{code}: {message}")
        return out


# The shape of an answer the verbs read: a type (``dict`` any object), an object's required
# keys and their shapes, or a list whose every item has one shape.
Shape = Union[type, dict[str, "Shape"], list["Shape"]]  # noqa: UP007 (a recursive alias)

READY: Shape = {"status": str}
NOT_READY: Shape = {"status": str, "reason": str}
INSTANCES: Shape = [{"scaleSet": object, "instanceId": object, "state": str, "ports": [dict]}]
PORTS: Shape = [dict]
FAULT: Shape = {"name": str, "type": str, "stream": str, "attributes": dict, "target": dict}
FAULTS: Shape = [FAULT]
TUNNEL: Shape = {
    "id": str,
    "bastion": str,
    "target": str,
    "targetIp": str,
    "resourcePort": int,
    "listenAddress": str,
    "listenPort": int,
}
TUNNELS: Shape = [TUNNEL]
REPORT: Shape = {
    "added": [dict],
    "removed": [dict],
    "instances": {"added": [str], "removed": [str], "changed": [str]},
    "networkSecurityGroups": {"changed": [str]},
}


@attrs.frozen
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when it is not JSON
    is_json: bool = True


def base_url(given: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--api``, else ``LBSIM_API``, else the default address of ``lbsim up``."""
    env = os.environ if environ is None else environ
    url = (given or env.get("LBSIM_API") or DEFAULT_API).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ApiError("InvalidArgument", f"--api: {url!r} is not a URL like {DEFAULT_API}")
    return url


def token_of(given: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    env = os.environ if environ is None else environ
    return given or env.get("LBSIM_API_TOKEN") or None


@attrs.frozen
class Client:
    url: str
    token: str | None = None

    def get(self, path: str, shape: Shape, query: Mapping[str, str] | None = None) -> Any:
        """The JSON of ``GET path``, which must have ``shape`` (else ``NotLbsim``)."""
        return self.expect(self.call("GET", path, query=query), f"GET {path}", shape)

    def change(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """A change's report (``REPORT``'s shape, else ``NotLbsim``)."""
        report: dict[str, Any] = self.expect(
            self.call(method, path, body), f"{method} {path}", REPORT
        )
        return report

    def expect(self, answer: Answer, asked: str, shape: Shape) -> Any:
        """The answer's JSON, if it has ``shape``; else lbsim did not answer: ``NotLbsim``."""
        if not answer.is_json:
            text = str(answer.body).strip()[:60]
            raise self.not_lbsim(f"{asked}: HTTP {answer.status}, not JSON: {text!r}")
        wrong = mismatch(answer.body, shape)
        if wrong is not None:
            raise self.not_lbsim(f"{asked}: HTTP {answer.status}, {wrong}")
        return answer.body

    def not_lbsim(self, why: str) -> ApiError:
        return ApiError("NotLbsim", f"{self.url} does not answer as lbsim's control API ({why})")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: Mapping[str, str] | None = None,
        timeout: float = REQUEST_TIMEOUT_S,
        accept: tuple[int, ...] = (),
    ) -> Answer:
        """One request; a status >= 400 that ``accept`` does not list raises ApiError."""
        answer = self._send(method, path, body, query, timeout)
        if answer.status >= 400 and answer.status not in accept:
            raise _refusal(answer)
        return answer

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, str] | None,
        timeout: float,
    ) -> Answer:
        url = self.url + path + (f"?{urlencode(query)}" if query else "")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (http only)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return _answer(response.status, response.read())
        except urllib.error.HTTPError as error:
            with error:
                return _answer(error.code, error.read())
        except urllib.error.URLError as error:
            raise self._unreachable(error.reason) from None
        except http.client.HTTPException as error:  # an answer that is not HTTP
            text = str(error).strip()[:60] or type(error).__name__
            raise self.not_lbsim(f"{method} {path}: not HTTP: {text}") from None
        except (TimeoutError, OSError) as error:
            raise self._unreachable(error) from None

    def _unreachable(self, reason: Any) -> ApiError:
        if isinstance(reason, TimeoutError | socket.timeout):
            why = "it did not answer in time"
        elif isinstance(reason, OSError) and reason.strerror:
            why = reason.strerror.lower()
        else:
            why = str(reason)
        return ApiError("ApiUnreachable", f"no lbsim answers at {self.url} ({why})")


def segment(text: str) -> str:
    """A name as one path segment: a scale set named ``a/b`` stays one segment."""
    return quote(text, safe="")


def mismatch(value: Any, shape: Shape, where: str = "$") -> str | None:
    """How ``value`` differs from ``shape`` (``$.value[0] has no 'state'``), None if it
    does not."""
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return f"{where} is {_kind(value)}, not an object"
        for key, inner in shape.items():
            if key not in value:
                return f"{where} has no {key!r}"
            wrong = mismatch(value[key], inner, f"{where}.{key}")
            if wrong is not None:
                return wrong
        return None
    if isinstance(shape, list):
        if not isinstance(value, list):
            return f"{where} is {_kind(value)}, not a list"
        for index, item in enumerate(value):
            wrong = mismatch(item, shape[0], f"{where}[{index}]")
            if wrong is not None:
                return wrong
        return None
    if shape is object or isinstance(value, shape):
        return None
    return f"{where} is {_kind(value)}, not {_kind(shape())}"


def _kind(value: Any) -> str:
    """A JSON value's kind, as a message names it."""
    kinds = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return kinds.get(type(value), type(value).__name__)


def _answer(status: int, raw: bytes) -> Answer:
    try:
        return Answer(status, json.loads(raw))
    except ValueError:
        return Answer(status, raw.decode("utf-8", "replace"), is_json=False)


def _refusal(answer: Answer) -> ApiError:
    error = answer.body.get("error") if isinstance(answer.body, dict) else None
    if not isinstance(error, dict):
        text = str(answer.body).strip()[:200] or "no body"
        refusal = ApiError("HttpError", f"HTTP {answer.status}: {text}")
    else:
        details = tuple(
            (str(d.get("code")), str(d.get("message")), d.get("target"))
            for d in error.get("details") or []
            if isinstance(d, dict)
        )
        refusal = ApiError(str(error.get("code")), str(error.get("message")), details)
    refusal.status = answer.status
    return refusal
