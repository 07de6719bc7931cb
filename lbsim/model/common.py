"""Enums and small values shared by every model class, spelled as Azure spells them."""

from __future__ import annotations

from enum import Enum
from typing import Any

import attrs

from lbsim.pointer import Pointer


def at_field() -> Any:
    """The ``at`` field of a model object: where it came from, excluded from equality."""
    return attrs.field(default=None, eq=False, order=False, hash=False, kw_only=True)


class CaseInsensitiveEnum(Enum):
    """An enum of Azure's literal strings that also accepts them in any letter case."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            for member in cls:
                if member.value.lower() == value.lower():
                    return member
        return None


class TransportProtocol(CaseInsensitiveEnum):
    """The protocol of a NAT pool, NAT rule or load-balancing rule."""

    TCP = "Tcp"
    UDP = "Udp"
    ALL = "All"
    QUIC = "Quic"

    def transports(self) -> tuple[TransportProtocol, ...]:
        """The concrete transports this protocol listens on (``All`` is Tcp and Udp)."""
        if self is TransportProtocol.ALL:
            return (TransportProtocol.TCP, TransportProtocol.UDP)
        if self is TransportProtocol.QUIC:
            return (TransportProtocol.UDP,)
        return (self,)


class ProbeProtocol(CaseInsensitiveEnum):
    HTTP = "Http"
    TCP = "Tcp"
    HTTPS = "Https"


class LoadDistribution(CaseInsensitiveEnum):
    DEFAULT = "Default"
    SOURCE_IP = "SourceIP"
    SOURCE_IP_PROTOCOL = "SourceIPProtocol"


class SecurityRuleProtocol(CaseInsensitiveEnum):
    TCP = "Tcp"
    UDP = "Udp"
    ICMP = "Icmp"
    ESP = "Esp"
    AH = "Ah"
    ANY = "*"


class SecurityRuleAccess(CaseInsensitiveEnum):
    ALLOW = "Allow"
    DENY = "Deny"


class SecurityRuleDirection(CaseInsensitiveEnum):
    INBOUND = "Inbound"
    OUTBOUND = "Outbound"


@attrs.frozen
class SubResource:
    """A reference to another resource or sub-resource by its id (ARM's ``{"id": ...}``)."""

    id: str
    at: Pointer | None = at_field()

    @property
    def key(self) -> str:
        """The id in the form used for lookups: ARM compares ids without regard to case."""
        return self.id.lower()

    @property
    def name(self) -> str:
        """The last segment of the id: the (sub-)resource's own name."""
        return self.id.rstrip("/").rsplit("/", 1)[-1]
