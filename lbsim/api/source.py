"""Where a live load balancer's deployment comes from: the template, parameters and values
that a reload reads again, from Python values or from the CLI's options."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from lbsim.errors import LbsimError

_CONTEXT_DEFAULTS = {
    "subscription_id": "00000000-0000-0000-0000-000000000000",
    "tenant_id": "00000000-0000-0000-0000-000000000000",
    "resource_group": "lbsim-rg",
    "location": "westeurope",
    "deployment_name": None,
}


@attrs.frozen
class Source:
    """Where a deployment comes from: the files and values that a reload reads again."""

    template: str
    parameters: str | None = None
    params: tuple[tuple[str, str], ...] = ()  # NAME=VALUE as --param gives them
    fill_missing: bool = False
    context: tuple[tuple[str, Any], ...] = ()
    links: tuple[str, ...] = ()  # URL=FILE
    template_roots: tuple[str, ...] = ()  # --template-root DIR: linked templates may be there

    @classmethod
    def of(
        cls,
        template: str | Path,
        *,
        parameters: str | Path | None = None,
        params: Mapping[str, Any] | None = None,
        fill_missing: bool = False,
        context: Mapping[str, Any] | None = None,
        links: Mapping[str, str] | None = None,
        template_roots: tuple[str | Path, ...] = (),
    ) -> Source:
        """A source from Python values: ``params`` as values of their own type (JSON for
        objects and arrays, as ``--param`` takes them)."""
        unknown = set(context or {}) - set(_CONTEXT_DEFAULTS)
        if unknown:
            raise LbsimError("InvalidArgument", f"unknown context keys: {sorted(unknown)}")
        return cls(
            template=str(template),
            parameters=None if parameters is None else str(parameters),
            params=tuple((k, _param_text(v)) for k, v in (params or {}).items()),
            fill_missing=fill_missing,
            context=tuple((context or {}).items()),
            links=tuple(f"{url}={path}" for url, path in (links or {}).items()),
            template_roots=tuple(str(root) for root in template_roots),
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Source:
        """The source that the CLI's template options name."""
        return cls(
            template=args.template,
            parameters=args.parameters,
            params=tuple(tuple(p.split("=", 1)) for p in args.param if "=" in p),
            fill_missing=args.fill_missing,
            context=tuple((k, getattr(args, k)) for k in _CONTEXT_DEFAULTS),
            links=tuple(getattr(args, "links", None) or ()),
            template_roots=tuple(getattr(args, "template_roots", None) or ()),
        )

    def namespace(self) -> argparse.Namespace:
        context = {**_CONTEXT_DEFAULTS, **dict(self.context)}
        return argparse.Namespace(
            template=self.template,
            parameters=self.parameters,
            param=[f"{k}={v}" for k, v in self.params],
            fill_missing=self.fill_missing,
            links=list(self.links),
            template_roots=list(self.template_roots),
            **context,
        )


def _param_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)
