"""The CLI's file handling: templates, parameters files and linked templates on disk."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import attrs

from lbsim.api.links import LinkResolver, parse_links, read_json, resolve_link
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import Plan
from lbsim.errors import ConfigError, Problem, TemplateInvalid
from lbsim.model import Deployment, DeploymentContext

__all__ = ["Loaded", "context_of", "load", "parse_params", "read_json", "resolve_link"]


def parse_params(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            shown = repr(item) if not sep else "a value without a NAME"  # never the value
            raise ConfigError("InvalidParameterArgument", f"--param takes NAME=VALUE, got {shown}.")
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


def template_roots(args: argparse.Namespace) -> list[str]:
    """The folders linked templates may be read from: the template's own and each
    ``--template-root`` (which must be a folder)."""
    roots = list(getattr(args, "template_roots", None) or [])
    for root in roots:
        if not Path(root).is_dir():
            raise ConfigError("InvalidSetting", f"--template-root {root!r} is not a folder.")
    return [str(Path(args.template).parent), *roots]


@attrs.frozen
class Loaded:
    deployment: Deployment
    plan: Plan

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return (*self.deployment.warnings, *self.plan.warnings)


def load(
    args: argparse.Namespace,
    frontends: dict[str, str] | None = None,
    links: Mapping[str, str] | None = None,
) -> Loaded:
    """Read, load and plan the template the arguments name. ``links`` maps linked templates'
    URLs to files (the config file's ``[links]``); the ``--link`` arguments take precedence."""
    links = {**(links or {}), **parse_links(getattr(args, "links", None) or [])}
    template = read_json(args.template)
    params_file = read_json(args.parameters) if args.parameters else None
    options = LoadOptions(
        context=context_of(args),
        parameters_file=params_file,
        parameters_file_name=args.parameters,
        cli_parameters=parse_params(args.param),
        fill_missing=args.fill_missing,
        resolve_link=LinkResolver(links, template_roots(args)),
        template_link=Path(args.template).resolve().as_uri(),
    )
    deployment = load_template(template, args.template, options)
    try:
        result = plan(deployment, frontends)
    except TemplateInvalid as error:
        raise TemplateInvalid([p.located(args.template) for p in error.problems]) from None
    return Loaded(deployment, result)
