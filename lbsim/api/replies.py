"""What the control API answers: JSON replies, and refusals in Azure's error envelope.

Azure Resource Manager answers every failed operation with one error shape, ``{"error":
{"code", "message", "target", "details"}}`` (its ErrorResponse: https://learn.microsoft.com/
en-us/python/api/azure-mgmt-resource/azure.mgmt.resource.resources.models.errorresponse), so a
client that reads Azure's errors reads lbsim's.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs

from lbsim.api.handle import ERROR_STATUS
from lbsim.errors import LbsimError, Problem, Severity, TemplateInvalid

JSON = "application/json"
# The Prometheus text exposition format that prometheus-client's generate_latest() writes.
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@attrs.frozen
class Reply:
    status: int
    body: bytes
    content_type: str = JSON
    headers: tuple[tuple[bytes, bytes], ...] = ()


def json_reply(value: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(value, indent=2).encode() + b"\n")


@attrs.frozen
class Detail:
    """One entry of an error: its code, what is wrong, and where (``target``)."""

    code: str
    message: str
    target: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "target": self.target}


class Refused(Exception):
    """A request the API turns down before (or instead of) asking the load balancer."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        *,
        details: Sequence[Detail] = (),
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = Detail(code, message, target)
        self.details = tuple(details)
        self.headers = headers

    def reply(self) -> Reply:
        envelope = self.error.to_json() | {"details": [d.to_json() for d in self.details]}
        reply = json_reply({"error": envelope}, self.status)
        return attrs.evolve(reply, headers=self.headers)


def refusal_of(error: LbsimError) -> Refused:
    """The handle refused a change or a read: 404/409 for the codes it raises on purpose
    (``ERROR_STATUS``), 400 for the rest (they are about what the request asked)."""
    if isinstance(error, TemplateInvalid):
        return _template_invalid(error)
    status = ERROR_STATUS.get(error.code)
    target = str(error.at) if error.at is not None else None
    return Refused(400 if status is None else status.value, error.code, error.message, target)


def _template_invalid(error: TemplateInvalid) -> Refused:
    """A reload found the template invalid: every problem is a detail, the old plan runs on."""
    problems = [p for p in error.problems if p.severity is Severity.ERROR] or list(error.problems)
    count = len(problems)
    message = (
        f"The template has {count} problem{'s' if count != 1 else ''}; "
        "the load balancer runs on unchanged."
    )
    details = [Detail(p.code, p.message, _where(p)) for p in problems]
    return Refused(400, "InvalidTemplate", message, details=details)


def _where(problem: Problem) -> str | None:
    if problem.document is None and problem.at is None:
        return None
    return f"{problem.document or ''}#{problem.at or ''}"
