"""The one exception family of lbsim.

Every error has a stable ``code``: Azure's own code where Azure has one, otherwise a code in
the same style that is lbsim's own (see docs/reference.md's table of error codes). Template errors
also carry ``at``, a pointer into the template, and the file it came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import Enum

import attrs

from lbsim.pointer import Pointer


class Severity(Enum):
    ERROR = "error"
    WARNING = "warning"


@attrs.frozen
class Problem:
    """One finding about a template: an error or a warning, with where it is."""

    code: str
    message: str
    at: Pointer | None = None
    file: str | None = None
    severity: Severity = Severity.ERROR

    def located(self, file: str | None) -> Problem:
        """The same problem, in ``file`` unless it already names one."""
        return self if self.file is not None or file is None else attrs.evolve(self, file=file)

    @property
    def document(self) -> str | None:
        """The file the problem is in: its own, or the one its pointer knows."""
        return self.file or (self.at.document if self.at is not None else None)

    def __str__(self) -> str:
        where = ""
        if self.document is not None or self.at is not None:
            where = f"{self.document or ''}#{self.at or ''}: "
        return f"{where}{self.code}: {self.message}"


class LbsimError(Exception):
    """Base of every error lbsim raises on purpose."""

    def __init__(self, code: str, message: str, at: Pointer | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.at = at

    def problem(self, file: str | None = None) -> Problem:
        return Problem(self.code, self.message, self.at, file)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class TemplateInvalid(LbsimError):
    """A template, parameter set or deployment is invalid; ``problems`` lists every error."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        first = self.problems[0] if self.problems else Problem("InvalidTemplate", "invalid")
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(first.code, first.message + more, first.at)


class ExpressionError(LbsimError):
    """An ARM template expression does not parse or cannot be evaluated."""


class ConfigError(LbsimError):
    """The runtime configuration (config file, flags, environment) is invalid."""
