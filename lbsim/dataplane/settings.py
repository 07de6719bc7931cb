"""How the data plane runs a Plan: values only (the CLI reads them from flags, environment and
the config file)."""

from __future__ import annotations

import ipaddress
import re
import select
from collections.abc import Mapping
from enum import Enum

import attrs

from lbsim.dataplane.portmap import AZURE_PORTS, DEFAULT_INSTANCE_NETWORK, PortMap
from lbsim.errors import ConfigError


class DenyMode(Enum):
    RESET = "reset"  # a denied TCP connection is reset at once
    DROP = "drop"  # held silently, then closed: closer to Azure's silent drop


class TcpEngine(Enum):
    """How TCP flows are relayed."""

    REACTOR = "reactor"  # one epoll set for every relayed socket (Linux): no task per flow
    STREAMS = "streams"  # a task per direction over trio streams: portable


DEFAULT_TCP_ENGINE = TcpEngine.REACTOR if hasattr(select, "epoll") else TcpEngine.STREAMS


@attrs.frozen
class SourceRule:
    """Clients from ``local`` are presented to the NSGs as ``presented`` (host bits kept)."""

    local: ipaddress.IPv4Network | ipaddress.IPv6Network
    presented: ipaddress.IPv4Network | ipaddress.IPv6Network

    def present(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        offset = int(address) - int(self.local.network_address)
        return str(self.presented.network_address + (offset % self.presented.num_addresses))


@attrs.frozen
class SourceMap:
    """The address the NSGs see for a client. By default a client is presented as itself:
    a loopback address is outside every virtual network, so it counts as ``Internet``."""

    rules: tuple[SourceRule, ...] = ()

    @classmethod
    def parse(cls, entries: Mapping[str, str]) -> SourceMap:
        rules = []
        for local, presented in entries.items():
            try:
                lo = ipaddress.ip_network(local, strict=False)
                pr = ipaddress.ip_network(presented, strict=False)
            except ValueError as error:
                raise ConfigError(
                    "InvalidSourceMap", f"sources: {local} = {presented}: {error}"
                ) from None
            if lo.version != pr.version:
                raise ConfigError(
                    "InvalidSourceMap",
                    f"sources: {local} = {presented}: maps IPv{lo.version} clients to IPv"
                    f"{pr.version} addresses; a rule and its NSGs see one family, so map "
                    "IPv4 to IPv4 and IPv6 to IPv6.",
                )
            rules.append(SourceRule(lo, pr))
        # most specific first
        return cls(tuple(sorted(rules, key=lambda r: -r.local.prefixlen)))

    def present(self, client: str) -> str:
        if not self.rules:
            return client
        address = ipaddress.ip_address(client)
        for rule in self.rules:
            if address.version == rule.local.version and address in rule.local:
                return rule.present(address)
        return client


_TERM = re.compile(r"\{([^{}]*)\}")


@attrs.frozen
class BackendPattern:
    """Where a user's own service for a scale set's instances listens: a pattern such as
    ``127.0.0.1:{2200+instance}`` (``instance`` and ``port``, the backend port, may be
    added to integers), or an explicit address per instance."""

    pattern: str | None = None
    instances: Mapping[int, str] = attrs.Factory(dict)

    def address(self, instance: int, port: int) -> tuple[str, int] | None:
        text = self.instances.get(instance)
        if text is None and self.pattern is not None:
            text = _TERM.sub(lambda m: str(_sum(m.group(1), instance, port)), self.pattern)
        return None if text is None else split_address(text)


def _sum(expression: str, instance: int, port: int) -> int:
    total = 0
    for term in expression.replace(" ", "").split("+"):
        if term == "instance":
            total += instance
        elif term == "port":
            total += port
        elif term.isascii() and term.isdigit():  # int() would take any script's digits
            total += _term(expression, term)
        else:
            raise _bad_term(
                expression, f"a term is 'instance', 'port' or an integer, not {_cut(term)}"
            )
    return total


def _term(expression: str, term: str) -> int:
    """An integer term: a port at most, so a few digits (int() refuses over 4,300)."""
    if len(term) > 5 or int(term) > 65535:
        raise _bad_term(expression, f"the term {_cut(term)} is over 65535, the highest port")
    return int(term)


def _bad_term(expression: str, why: str) -> ConfigError:
    shown = _cut(expression, quoted=False)
    return ConfigError("InvalidBackendPattern", f"'{{{shown}}}': {why}.")


def split_address(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``) to a pair, with a clear error."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError("InvalidAddress", f"{_cut(text)} is not IP:PORT.") from None
    valid = port.isascii() and port.isdigit() and len(port) <= 5
    if not sep or not valid or not 0 < int(port) < 65536:
        raise ConfigError("InvalidAddress", f"{_cut(text)} has no valid port (1-65535).")
    return host, int(port)


def _cut(text: str, *, quoted: bool = True) -> str:
    """A value as an error quotes it: a 5,000-digit term is cut short."""
    shown = repr(text) if quoted else text
    return shown if len(shown) <= 60 else f"{shown[:40]}... ({len(text)} characters)"


class SshAuth(Enum):
    """Which SSH authentication methods built-in instances offer."""

    ANY = "any"  # password and public key
    PASSWORD = "password"  # noqa: S105  (a method's name, not a password)
    PUBLICKEY = "publickey"


@attrs.frozen
class SshSettings:
    """How built-in instances speak SSH (lbsim.dataplane.ssh). By default any user logs in
    with any password or any key, and lbsim says so at start."""

    ports: frozenset[int] = frozenset({22})  # backend ports where built-in instances are SSH
    auth: SshAuth = SshAuth.ANY
    password: str | None = None  # None: any password is accepted
    authorized_keys: tuple[str, ...] | None = None  # OpenSSH public key lines; None: any key
    host_key_dir: str | None = None  # keep host keys here across runs; None: in memory

    @property
    def open(self) -> bool:
        """Whether anyone gets in: any password, or any key."""
        password = self.auth is not SshAuth.PUBLICKEY and self.password is None
        key = self.auth is not SshAuth.PASSWORD and self.authorized_keys is None
        return password or key


@attrs.frozen
class RuntimeSettings:
    deny_mode: DenyMode = DenyMode.RESET
    deny_hold_s: float = 30.0
    idle_hold_s: float = 0.0  # after an idle timeout without TCP reset: held silently, then reset
    idle_timeout_scale: float = 1.0
    drain_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    max_udp_flows: int = 4096
    instance_network: str = DEFAULT_INSTANCE_NETWORK  # built-in instances' addresses
    backends: Mapping[str, BackendPattern] = attrs.Factory(dict)  # lower-cased name ->
    sources: SourceMap = SourceMap()
    explain_nsg: bool = False  # evaluate rule by rule, so events name each NSG's rule
    tcp_engine: TcpEngine = DEFAULT_TCP_ENGINE
    port_map: PortMap = AZURE_PORTS  # where listeners bind (lbsim.dataplane.portmap)
    ssh: SshSettings = SshSettings()
    socks: tuple[str, int] | None = None  # where the SOCKS5 endpoint listens (None: none)
    socks_source: str | None = None  # the VM it stands for (None: lbsim.dataplane.vnet picks)
