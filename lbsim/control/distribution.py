"""Which backend a load-balancing rule sends a new flow to
(https://learn.microsoft.com/en-us/azure/load-balancer/distribution-mode-concepts).

The hash covers the 5-tuple (``Default``), the source and destination addresses
(``SourceIP``), or those and the protocol (``SourceIPProtocol``). CRC-32 keeps it the same from
run to run, so ``lbsim check`` and the running data plane always pick the same backend.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TypeVar

from lbsim.model import LoadDistribution, TransportProtocol

T = TypeVar("T")


def pick(
    choices: Sequence[T],
    mode: LoadDistribution,
    protocol: TransportProtocol,
    client: tuple[str, int],
    frontend: tuple[str, int],
) -> T:
    if len(choices) == 1:
        return choices[0]
    if mode is LoadDistribution.SOURCE_IP:
        key = f"{client[0]}|{frontend[0]}"
    elif mode is LoadDistribution.SOURCE_IP_PROTOCOL:
        key = f"{client[0]}|{frontend[0]}|{protocol.value}"
    else:
        key = f"{client[0]}|{client[1]}|{frontend[0]}|{frontend[1]}|{protocol.value}"
    return choices[zlib.crc32(key.encode()) % len(choices)]
