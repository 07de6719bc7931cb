"""The CLI's file handling: templates, parameters files and linked templates on disk."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import attrs

from lbsim.arm.jsontext import load_json_text
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import Plan
from lbsim.errors import ConfigError, Problem, TemplateInvalid
from lbsim.model import Deployment, DeploymentContext


def read_json(path: str) -> Any:
    """A JSON document as ARM reads it; a missing file is a clear error."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise TemplateInvalid(
            [Problem("FileNotFound", f"Cannot read {path}: {error.strerror}.", file=path)]
        ) from None
    return load_json_text(data, path)


def resolve_link(target: str, from_file: str | None) -> tuple[Any, str] | None:
    """A linked template's local copy: its relative path, or the longest tail of its URI's
    path that names a file beside the template that links to it."""
    base = Path(from_file).parent if from_file else Path.cwd()
    url = urlsplit(target)
    if url.scheme == "file":
        candidates = [Path(unquote(url.path))]
    else:
        parts = [p for p in unquote(url.path).split("/") if p]
        candidates = [base.joinpath(*parts[start:]) for start in range(len(parts))]
    me = Path(from_file).resolve() if from_file else None
    for candidate in candidates:
        if candidate.is_file() and candidate.resolve() != me:
            return read_json(str(candidate)), str(candidate)
    return None


def parse_params(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(
                "InvalidParameterArgument", f"--param takes NAME=VALUE, got {item!r}."
            )
        out[name] = value
    return out


def context_of(args: argparse.Namespace) -> DeploymentContext:
    name = args.deployment_name or Path(args.template).stem
    return DeploymentContext(
        subscription_id=args.subscription_id,
        tenant_id=args.tenant_id,
        resource_group=args.resource_group,
        location=args.location,
        deployment_name=name,
    )


@attrs.frozen
class Loaded:
    deployment: Deployment
    plan: Plan

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return (*self.deployment.warnings, *self.plan.warnings)


def load(args: argparse.Namespace, frontends: dict[str, str] | None = None) -> Loaded:
    """Read, load and plan the template the arguments name."""
    template = read_json(args.template)
    params_file = read_json(args.parameters) if args.parameters else None
    options = LoadOptions(
        context=context_of(args),
        parameters_file=params_file,
        parameters_file_name=args.parameters,
        cli_parameters=parse_params(args.param),
        fill_missing=args.fill_missing,
        resolve_link=resolve_link,
        template_link=Path(args.template).resolve().as_uri(),
    )
    deployment = load_template(template, args.template, options)
    try:
        result = plan(deployment, frontends)
    except TemplateInvalid as error:
        raise TemplateInvalid([p.located(args.template) for p in error.problems]) from None
    return Loaded(deployment, result)
