"""``lbsim up`` settings: every setting has a flag, an ``LBSIM_*`` environment variable and a
config-file key; precedence flag > environment > file > default (docs/reference.md's table is
made from ``SETTINGS``)."""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from lbsim.api.bodies import fault_problems
from lbsim.api.configfile import check_values, read_toml
from lbsim.api.settingvalues import (
    address,
    choice,
    decimal,
    endpoint_or_off,
    file_path,
    integer,
    ip_address,
    parse_port_map,
    port_list,
    port_or_off,
    positive,
    read_authorized_keys,
    switch,
)
from lbsim.dataplane.faults import Fault
from lbsim.dataplane.settings import (
    DEFAULT_TCP_ENGINE,
    BackendPattern,
    DenyMode,
    RuntimeSettings,
    SourceMap,
    SshAuth,
    SshSettings,
    TcpEngine,
    split_address,
)
from lbsim.errors import ConfigError, LbsimError


@attrs.frozen
class Setting:
    key: str  # config-file key; the flag is --key-with-dashes, the variable LBSIM_KEY
    default: Any
    parse: Callable[[Any], Any]
    help: str
    aliases: tuple[str, ...] = ()  # older keys that set the same value (flag, env, file)

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    @property
    def env(self) -> str:
        return "LBSIM_" + self.key.upper()

    @property
    def flags(self) -> list[str]:
        return [self.flag] + ["--" + a.replace("_", "-") for a in self.aliases]

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *self.aliases)


SETTINGS = (
    Setting(
        "api_port",
        9150,
        port_or_off,
        "port of the control API and its /metrics (0: a free port; off: none)",
        aliases=("metrics_port",),
    ),
    Setting(
        "api_address",
        "127.0.0.1",
        address,
        "address of the control API (not loopback: api_token is required)",
        aliases=("metrics_address",),
    ),
    Setting(
        "api_token",
        None,
        str,
        "bearer token the control API requires (better in LBSIM_API_TOKEN than on a command line)",
    ),
    Setting(
        "deny_mode",
        "reset",
        choice("reset", "drop"),
        "denied TCP: reset at once, or drop (hold silently, then close)",
    ),
    Setting(
        "deny_hold_seconds",
        30.0,
        positive(decimal),
        "how long --deny-mode drop holds a denied connection",
    ),
    Setting(
        "idle_hold_seconds",
        0.0,
        positive(decimal),
        "after an idle timeout without TCP reset: hold both sides silently, then reset (0: close)",
    ),
    Setting(
        "idle_timeout_scale",
        1.0,
        positive(decimal, above=0, why=": at 0 every flow would idle out at once"),
        "multiplies every idle timeout (0.01 makes 4 minutes 2.4 s)",
    ),
    Setting(
        "drain_seconds",
        10.0,
        positive(decimal),
        "on SIGINT/SIGTERM, how long open connections may finish",
    ),
    Setting(
        "connect_timeout_seconds",
        5.0,
        positive(decimal),
        "how long to wait for a backend to accept",
    ),
    Setting(
        "max_udp_flows",
        4096,
        positive(integer, above=0, why=": a listener needs room for one flow"),
        "UDP flows per listener before the idlest is evicted",
    ),
    Setting(
        "tcp_engine",
        DEFAULT_TCP_ENGINE.value,
        choice("reactor", "streams"),
        "TCP relay: reactor (one epoll set, Linux) or streams (a task per direction, portable)",
    ),
    Setting("log_format", "text", choice("text", "json"), "flow log lines: text or JSON lines"),
    Setting(
        "log_flows",
        True,
        switch,
        "log every flow decision and close",
    ),
    Setting(
        "ready_file",
        None,
        file_path,
        "write the listener table as JSON here once every listener is bound",
    ),
    Setting(
        "flow_log_dir", None, file_path, "write NSG flow logs (version 2) under this directory"
    ),
    Setting(
        "flow_log_interval_seconds",
        60.0,
        positive(decimal),
        "how often flow-log records are appended (Azure: every minute)",
    ),
    Setting(
        "overprovision",
        False,
        switch,
        "emulate Azure's overprovisioning for scale sets whose overprovision is true: extra "
        "instances made and deleted leave gaps in ids and NAT ports",
    ),
    Setting("overprovision_seed", 0, integer, "seed of which overprovisioned extras go"),
    Setting(
        "watch",
        False,
        switch,
        "reload when the template, parameters, config or a linked template file changes",
    ),
    Setting(
        "port_map",
        "azure",
        parse_port_map,
        "where frontends listen: azure (Azure's ports), per-worker[:N] (Azure's ports on "
        "loopback addresses of worker N), offset:N (every port + N), ephemeral (free ports)",
    ),
    Setting(
        "ssh_ports",
        "22",
        port_list,
        "backend ports where built-in instances are SSH servers (comma-separated)",
    ),
    Setting(
        "ssh_auth",
        "any",
        choice("any", "password", "publickey"),
        "SSH authentication built-in instances offer: any (password and public key), "
        "password or publickey",
    ),
    Setting(
        "ssh_password",
        None,
        str,
        "the one password built-in instances accept (default: any password)",
    ),
    Setting(
        "ssh_authorized_keys",
        None,
        file_path,
        "an authorized_keys file: built-in instances accept only its keys (default: any key)",
    ),
    Setting(
        "host_key_dir",
        None,
        file_path,
        "keep built-in instances' SSH host keys in this folder across runs (default: in memory)",
    ),
    Setting(
        "socks",
        None,
        endpoint_or_off,
        "ADDRESS:PORT of a SOCKS5 endpoint standing for a VM inside the virtual network",
    ),
    Setting(
        "socks_source",
        None,
        ip_address,
        "the private address the SOCKS endpoint's flows come from (default: one inside the "
        "virtual network that no NIC holds)",
    ),
)
_MAPS = {
    "frontends": "--frontend NAME=ADDRESS: bind a frontend (LB/NAME or NAME) to an address",
    "sources": "--source LOCAL=PRESENTED: the NSGs see clients from LOCAL as PRESENTED",
    "backends": "--backend SCALESET=PATTERN: local services serve a scale set's instances",
    "links": "--link URL=FILE: read a linked template (a URL ending in /: a folder) from FILE",
}
_KNOWN = [key for s in SETTINGS for key in s.keys] + list(_MAPS) + ["faults"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="a TOML settings file (docs/reference.md)")
    for setting in SETTINGS:
        parser.add_argument(
            *setting.flags, dest=setting.key, default=None, help=_flag_help(setting)
        )
    for name, metavar in (
        ("frontends", "NAME=ADDRESS"),
        ("sources", "LOCAL=PRESENTED"),
        ("backends", "SCALESET=PATTERN"),
    ):
        parser.add_argument(
            "--" + name.removesuffix("s"),
            dest=name,
            action="append",
            default=[],
            metavar=metavar,
            help=_map_help(name),
        )


def _flag_help(setting: Setting) -> str:
    """A setting's help for ``lbsim up --help``: what it does, its default and its variable
    (the flag's own default is None, so that the environment and the file can set it)."""
    default = setting.default
    shown = str(default).lower() if default is None or isinstance(default, bool) else default
    return f"{setting.help} (default: {shown}; env {setting.env})".replace("%", "%%")


def _map_help(name: str) -> str:
    """The help of a repeatable KEY=VALUE option, with its comma-separated variable."""
    what = _MAPS[name].split(": ", 1)[1]
    return f"{what} (repeatable; env LBSIM_{name.upper()}, comma-separated)"


@attrs.frozen
class UpConfig:
    values: Mapping[str, Any]
    frontends: Mapping[str, str]
    runtime: RuntimeSettings
    links: Mapping[str, str] = attrs.Factory(dict)  # linked templates' URLs -> local files
    faults: tuple[Fault, ...] = ()  # [[faults]]: set from the start (docs/faults.md)


def resolve(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> UpConfig:
    env = os.environ if environ is None else environ
    file = _read_file(args.config) if args.config else {}
    values = {s.key: _value(s, args, env, file) for s in SETTINGS}
    if values["api_port"] is not None:
        check_api_binding(values["api_address"], values["api_token"])
    # an alias reads as its setting too, so code that knows the older key keeps working
    values |= {alias: values[s.key] for s in SETTINGS for alias in s.aliases}
    maps = {name: _map(name, args, env, file) for name in _MAPS}
    port_map = parse_port_map(values["port_map"])  # (a default is the text, not yet a map)
    runtime = RuntimeSettings(
        deny_mode=DenyMode(values["deny_mode"]),
        deny_hold_s=values["deny_hold_seconds"],
        idle_hold_s=values["idle_hold_seconds"],
        idle_timeout_scale=values["idle_timeout_scale"],
        drain_timeout_s=values["drain_seconds"],
        connect_timeout_s=values["connect_timeout_seconds"],
        max_udp_flows=values["max_udp_flows"],
        backends=_backends(maps["backends"], file.get("backends", {})),
        sources=SourceMap.parse(maps["sources"]),
        explain_nsg=values["flow_log_dir"] is not None,
        tcp_engine=TcpEngine(values["tcp_engine"]),
        port_map=port_map,
        instance_network=port_map.instance_network,
        ssh=_ssh(values),
        socks=values["socks"],
        socks_source=values["socks_source"],
    )
    # the file's [[faults]], else the library's config={"faults": [...]} (lbsim.serve)
    tables = file["faults"] if "faults" in file else getattr(args, "faults", None)
    faults = _faults(tables, args.config or "config") if tables is not None else ()
    return UpConfig(values, maps["frontends"], runtime, maps["links"], faults)


def _ssh(values: Mapping[str, Any]) -> SshSettings:
    """The SSH settings; an authorized_keys file is read now, so a bad one fails at start."""
    keys = None
    if values["ssh_authorized_keys"] is not None:
        keys = read_authorized_keys(values["ssh_authorized_keys"])
    ports = values["ssh_ports"]  # (a default is the text, not yet a set)
    return SshSettings(
        ports=port_list(ports) if isinstance(ports, str) else ports,
        auth=SshAuth(values["ssh_auth"]),
        password=values["ssh_password"],
        authorized_keys=keys,
        host_key_dir=values["host_key_dir"],
    )


def _faults(tables: Any, path: str) -> tuple[Fault, ...]:
    """The config file's ``[[faults]]``: each table as the control API's fault JSON."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ConfigError("InvalidConfigFile", f"{path}: faults is an array of tables, [[faults]].")
    made: dict[str, Fault] = {}
    for index, table in enumerate(tables):
        where = f"{path}: faults[{index}]"
        for detail in fault_problems(table)[:1]:
            raise ConfigError("InvalidFault", f"{where}{detail.message.removeprefix('$')}")
        try:
            fault = Fault.from_json(table)
        except LbsimError as error:
            raise ConfigError(error.code, f"{where}.{error.message}") from None
        if fault.name in made:
            raise ConfigError("FaultAlreadyExists", f"{where}: a fault named {fault.name!r} is set")
        made[fault.name] = fault
    return tuple(made.values())


def _value(
    setting: Setting, args: argparse.Namespace, env: Mapping[str, str], file: Mapping[str, Any]
) -> Any:
    for origin, raw in (
        ("/".join(setting.flags), getattr(args, setting.key, None)),
        _layer(setting, env, lambda key: "LBSIM_" + key.upper(), ""),
        _layer(setting, file, str, "config key "),
    ):
        if raw is not None:
            try:
                return setting.parse(raw)
            except ValueError as error:
                raise ConfigError("InvalidSetting", f"{origin}: {_shown(raw)}: {error}") from None
    return setting.default


def _layer(
    setting: Setting, source: Mapping[str, Any], name: Callable[[str], str], origin: str
) -> tuple[str, Any]:
    """The value one layer (environment, file) gives a setting under its key or an alias;
    both at once is ambiguous, so an error."""
    found = [(origin + name(k), source[name(k)]) for k in setting.keys if name(k) in source]
    if len(found) > 1:
        names = " and ".join(where for where, _ in found)
        raise ConfigError("InvalidSetting", f"{names} set the same setting; keep one.")
    return found[0] if found else (origin + name(setting.key), None)


def check_api_binding(address: str, token: str | None) -> None:
    """The control API changes the load balancer: off loopback it must ask for a token."""
    if token or address.lower() == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConfigError(
            "ApiTokenRequired",
            f"the control API on {address} is reachable from other hosts: set api_token "
            "(LBSIM_API_TOKEN) or serve it on a loopback address (127.0.0.1, ::1, localhost).",
        )


def _map(
    name: str, args: argparse.Namespace, env: Mapping[str, str], file: Mapping[str, Any]
) -> dict[str, str]:
    merged: dict[str, str] = {}
    from_file = file.get(name, {})
    if name != "backends":
        merged.update({str(k): str(v) for k, v in from_file.items()})
    env_text = env.get(f"LBSIM_{name.upper()}", "")
    merged.update(_pairs([p for p in env_text.split(",") if p.strip()], f"LBSIM_{name.upper()}"))
    merged.update(_pairs(getattr(args, name, []) or [], "--" + name.rstrip("s")))
    if name == "frontends":  # a name the resolver cannot take fails at bind time otherwise
        for frontend, where in merged.items():
            try:
                address(where)
            except ValueError as error:
                raise ConfigError(
                    "InvalidSetting", f"frontends: {frontend} = {_shown(where)}: {error}"
                ) from None
    return merged


def _pairs(items: list[str], origin: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError("InvalidSetting", f"{origin} takes KEY=VALUE, got {item!r}.")
        out[key.strip()] = value.strip()
    return out


def _backends(flags: Mapping[str, str], table: Mapping[str, Any]) -> dict[str, BackendPattern]:
    out = {name.lower(): _backend_table(f"backends.{name}", body) for name, body in table.items()}
    for name, pattern in flags.items():
        out[name.lower()] = BackendPattern(pattern)
    for name, backend in out.items():
        if backend.pattern is None and not backend.instances:
            raise ConfigError("InvalidSetting", f"backends.{name} needs a pattern or instances.")
        _check_backend(name, backend)
    return out


def _check_backend(name: str, backend: BackendPattern) -> None:
    """A malformed pattern or address is an error now, naming the scale set's setting, not
    on the first flow."""
    try:
        if backend.pattern is not None:
            BackendPattern(backend.pattern).address(0, 1)
        for address in backend.instances.values():
            split_address(address)
    except ConfigError as error:
        raise ConfigError(error.code, f"backends.{name}: {error.message}") from None


def _backend_table(where: str, body: Any) -> BackendPattern:
    if not isinstance(body, dict):
        raise ConfigError("InvalidConfigFile", f"[{where}] is a table (pattern, instances).")
    _check_keys(body, ("pattern", "instances"), where)
    instances = body.get("instances", {})
    if not isinstance(instances, dict):
        raise ConfigError("InvalidConfigFile", f"[{where}.instances] is a table: id = address.")
    for key in instances:
        if not (str(key).isascii() and str(key).isdigit() and len(str(key)) <= 9):
            raise ConfigError(
                "InvalidSetting", f"{where}.instances: {key!r} is not an instance id (0, 1, ...)."
            )
    pattern = body.get("pattern")
    return BackendPattern(
        None if pattern is None else str(pattern), {int(k): str(v) for k, v in instances.items()}
    )


def _read_file(path: str) -> dict[str, Any]:
    data = read_toml(path)
    _check_keys(data, _KNOWN, path)
    for name in _MAPS:
        if name in data and not isinstance(data[name], dict):
            raise ConfigError("InvalidConfigFile", f"{path}: [{name}] is a table.")
    check_values(data, path, [key for s in SETTINGS for key in s.keys], _MAPS)
    # a linked template's local copy is named relative to the config file, as its folder
    # usually sits beside the templates
    links = {url: str(Path(path).parent / str(f)) for url, f in data.get("links", {}).items()}
    return {**data, "links": links} if links else data


def _shown(raw: Any) -> str:
    """A value as an error message quotes it: a 5,000-digit number is cut short."""
    text = repr(raw)
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def _check_keys(data: Mapping[str, Any], known: list[str] | tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{near[0]}'?" if near else f"; known keys: {', '.join(known)}"
            raise ConfigError("UnknownConfigKey", f"{where}: unknown key '{key}'{hint}")


def settings_table() -> list[tuple[str, str, str, str]]:
    """(config key, flag, environment variable, default) for docs/reference.md."""
    return [(s.key, s.flag, s.env, repr(s.default)) for s in SETTINGS]
