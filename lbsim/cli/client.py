"""The CLI's side of the control API: requests to a running lbsim, with the standard library.

A refusal comes back as :class:`ApiError` with the envelope's code, message and details; a
lbsim that does not answer as ``ApiUnreachable``. The verbs (``verbs.py``) print them.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
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


@attrs.frozen
class Answer:
    status: int
    body: Any  # parsed JSON, or the text when it is not JSON


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

    def get(self, path: str, query: Mapping[str, str] | None = None) -> Any:
        return self.call("GET", path, query=query).body

    def change(self, method: str, path: str, body: Any = None) -> Any:
        return self.call(method, path, body).body

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


def _answer(status: int, raw: bytes) -> Answer:
    try:
        return Answer(status, json.loads(raw))
    except ValueError:
        return Answer(status, raw.decode("utf-8", "replace"))


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
