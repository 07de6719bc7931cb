"""lbsim's command line: ``lbsim validate | ports | check | rules | up``.

Only this layer reads files, prints, and turns errors into exit codes: 0 success (and Allow
for ``check``), 1 Deny, 2 invalid input (every problem printed as
``file.json#/pointer: Code: message``, never a traceback).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from lbsim import __version__
from lbsim.api import config
from lbsim.cli import commands, pipe, render
from lbsim.cli.up import cmd_up
from lbsim.cli.verbs import add_parsers as add_api_verbs
from lbsim.errors import LbsimError, TemplateInvalid


class _HelpFormatter(argparse.HelpFormatter):
    """Help that ends each option's text with its default, where it has one to show (not
    for flags, lists that start empty, or options whose help says what happens without)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or "default" in text
            or not action.option_strings
            or default is None
            or isinstance(default, bool)
            or default == []
            or default is argparse.SUPPRESS
        ):
            return text
        return f"{text} (default: %(default)s)"


def _template_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("template", help="the ARM template (azuredeploy.json)")
    parser.add_argument("-p", "--parameters", help="a deploymentParameters file")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter value (repeatable; JSON for object and array parameters)",
    )
    parser.add_argument(
        "--fill-missing",
        action="store_true",
        help="give parameters without a value a placeholder that meets their constraints",
    )
    parser.add_argument(
        "--link",
        dest="links",
        action="append",
        default=[],
        metavar="URL=FILE",
        help="read the linked template at URL from FILE (a URL ending in / maps a folder; "
        "repeatable)",
    )
    parser.add_argument(
        "--template-root",
        dest="template_roots",
        action="append",
        default=[],
        metavar="DIR",
        help="linked templates may also be read from DIR's folder tree, besides the "
        "template's own (repeatable)",
    )
    ctx = parser.add_argument_group("deployment context")
    ctx.add_argument(
        "--subscription-id",
        default="00000000-0000-0000-0000-000000000000",
        help="subscription().subscriptionId, and the subscription in resource ids",
    )
    ctx.add_argument(
        "--tenant-id",
        default="00000000-0000-0000-0000-000000000000",
        help="subscription().tenantId and tenant().tenantId",
    )
    ctx.add_argument(
        "--resource-group", default="lbsim-rg", help="resourceGroup().name, and resource ids"
    )
    ctx.add_argument("--location", default="westeurope", help="resourceGroup().location")
    ctx.add_argument(
        "--deployment-name", help="default: the template's file name without extension"
    )


def _output(parser: argparse.ArgumentParser, choices: tuple[str, ...] = ("table", "json")) -> None:
    parser.add_argument(
        "-o", "--output", choices=choices, default=choices[0], help="how to print the result"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lbsim",
        description="A local emulator of an Azure load balancer, NAT pools and NSGs.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument(
        "--version", action="version", version=f"lbsim {__version__}", help="print the version"
    )
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", help="lbsim COMMAND --help tells more"
    )
    validate = sub.add_parser("validate", help="load and check a template")
    _template_options(validate)
    validate.set_defaults(run=commands.cmd_validate)
    ports = sub.add_parser(
        "ports", help="the NAT table: which frontend port reaches which instance"
    )
    _template_options(ports)
    _output(ports)
    ports.set_defaults(run=commands.cmd_ports)
    _check_parser(sub)
    up = sub.add_parser("up", help="run the load balancer: listeners, NSGs, built-in instances")
    _template_options(up)
    config.add_arguments(up)
    up.set_defaults(run=cmd_up)
    rules = sub.add_parser("rules", help="the effective security rules of an instance")
    _template_options(rules)
    rules.add_argument(
        "--instance",
        required=True,
        metavar="SCALESET/N",
        help="the instance: SCALESET/N (Azure's SCALESET_N too) or a VM's name",
    )
    rules.add_argument(
        "--direction",
        default="Inbound",
        choices=("Inbound", "Outbound"),
        help="which of its security rules",
    )
    _output(rules)
    rules.set_defaults(run=commands.cmd_rules)
    add_api_verbs(sub)  # status, wait, list, scale, instance, reload: a running lbsim's API
    for command in sub.choices.values():  # every command's help shows the defaults
        command.formatter_class = _HelpFormatter
    return parser


def _check_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    check = sub.add_parser(
        "check", help="would the NSGs let this flow through? (exit 0 Allow, 1 Deny)"
    )
    _template_options(check)
    check.add_argument(
        "--source",
        required=True,
        metavar="IP[:PORT]",
        help="the client as the NSGs see it (port 49152 when not given)",
    )
    where = check.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--frontend-port",
        type=int,
        metavar="N",
        help="the frontend port of a NAT entry or load-balancing rule the flow arrives on",
    )
    where.add_argument(
        "--destination",
        metavar="IP:PORT",
        help="a frontend address and port, or a backend's private address and port",
    )
    check.add_argument(
        "--frontend", metavar="LB/NAME", help="which frontend, when a port is on several"
    )
    check.add_argument(
        "--protocol",
        default="Tcp",
        type=str.capitalize,
        choices=("Tcp", "Udp"),
        help="the flow's transport",
    )
    check.set_defaults(run=commands.cmd_check)
    _output(check)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    # a reader that goes away (``| head -1``) silences the output, not the exit code
    with pipe.reader_may_leave():
        try:
            return run(args)
        except TemplateInvalid as error:
            render.problems(error.problems)
            return commands.EXIT_INVALID
        except LbsimError as error:
            print(f"lbsim: {error.code}: {error.message}", file=sys.stderr)
            return commands.EXIT_INVALID
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    sys.exit(main())
