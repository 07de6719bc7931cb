"""NSG flow logs, version 2, as Azure writes them
(https://learn.microsoft.com/en-us/azure/network-watcher/nsg-flow-logs-overview).

Every NSG that evaluates a flow logs it under the rule of its that matched: a ``B`` (begin)
tuple when the flow is admitted or denied, an ``E`` (end) tuple with packet and byte counts
when it closes. Once per interval the tuples gathered are appended, as one record per NSG and
NIC, to ``PT1H.json`` in Azure's blob layout under the flow-log directory::

    insights-logs-networksecuritygroupflowevent/resourceId=/SUBSCRIPTIONS/<SUB>/RESOURCEGROUPS/
    <RG>/PROVIDERS/MICROSOFT.NETWORK/NETWORKSECURITYGROUPS/<NSG>/y=YYYY/m=MM/d=DD/h=HH/m=00/
    macAddress=<MAC>/PT1H.json

Differences from Azure, by necessity: byte counts are payload bytes (lbsim does not see
headers) and packet counts are reads (TCP) or datagrams (UDP); long flows get no ``C``
(continuing) tuples; a UDP flow ends when it idles out or is evicted. A NIC's MAC address
is made up, stably, from its ipConfiguration id under the 00-0D-3A prefix of Azure's NICs.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
import zlib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from lbsim.dataplane.events import FlowEvent, NsgHit

CONTAINER = "insights-logs-networksecuritygroupflowevent"
_SYSTEM_NAMESPACE = uuid.UUID("6c3a7b4e-5d1f-4c8e-9a2b-1f0e3d4c5b6a")


def mac_address(interface: str) -> str:
    """A stable, Azure-looking MAC address (12 upper-case hex digits) for a NIC."""
    return f"000D3A{zlib.crc32(interface.lower().encode()) & 0xFFFFFF:06X}"


def _split(endpoint: str) -> tuple[str, str]:
    host, _, port = endpoint.rpartition(":")
    return host.strip("[]"), port


def flow_tuple(event: FlowEvent, hit: NsgHit) -> str:
    """One v2 flow tuple: time, source, destination, ports, protocol, direction, decision,
    state, then packets and bytes each way (empty for a begin)."""
    source_port = _split(event.client)[1]
    destination, destination_port = _split(event.destination)
    protocol = "T" if event.protocol == "Tcp" else "U"
    decision = "A" if hit.access == "Allow" else "D"
    head = [str(int(event.time)), event.source, destination, source_port, destination_port]
    head += [protocol, "I", decision]
    if event.kind == "close":
        counts = [event.packets_in, event.bytes_in, event.packets_out, event.bytes_out]
        return ",".join([*head, "E", *(str(c) for c in counts)])
    return ",".join([*head, "B", "", "", "", ""])


Key = tuple[str, str]  # (NSG id, MAC)


class FlowLogWriter:
    """An event sink that gathers flow tuples and appends them to PT1H.json files."""

    def __init__(
        self, directory: Path, interval_s: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory
        self.interval_s = interval_s
        self.clock = clock
        self._pending: dict[Key, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.records_written = 0
        self.records_lost = 0
        self._reported: set[str | None] = set()

    def __call__(self, event: FlowEvent) -> None:
        if event.kind not in ("decision", "close") or not event.nsg_hits:
            return
        mac = mac_address(event.interface)
        for hit in event.nsg_hits:
            self._pending[(hit.network_security_group, mac)][hit.rule].append(
                flow_tuple(event, hit)
            )

    async def run(self) -> None:
        """Append what was gathered every interval until cancelled, then once more."""
        try:
            while True:
                await trio.sleep(self.interval_s)
                await trio.to_thread.run_sync(self.flush)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.flush)

    def flush(self) -> None:
        """Append one record per (NSG, NIC) with tuples pending."""
        pending, self._pending = self._pending, defaultdict(lambda: defaultdict(list))
        now = self.clock()
        for (nsg, mac), by_rule in pending.items():
            path = self.path(nsg, mac, now)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                document = _read(path)
                document["records"].append(self._record(nsg, mac, by_rule, now))
                temporary = path.with_name(path.name + ".tmp")
                temporary.write_text(json.dumps(document), encoding="utf-8")
                temporary.replace(path)
            except OSError as error:  # a full disk or a bad directory ends no traffic
                self._failed(path, error)
                continue
            self.records_written += 1

    def _failed(self, path: Path, error: OSError) -> None:
        """Count a record that could not be written, and say so once per kind of error."""
        self.records_lost += 1
        if error.strerror not in self._reported:
            self._reported.add(error.strerror)
            print(
                f"lbsim: warning: FlowLogWriteFailed: {path}: {error.strerror or error}",
                file=sys.stderr,
                flush=True,
            )

    def path(self, nsg: str, mac: str, now: float) -> Path:
        t = time.gmtime(now)
        hour = f"y={t.tm_year}/m={t.tm_mon:02d}/d={t.tm_mday:02d}/h={t.tm_hour:02d}/m=00"
        return (
            self.directory
            / CONTAINER
            / f"resourceId={nsg.upper()}"
            / hour
            / f"macAddress={mac}"
            / "PT1H.json"
        )

    def _record(
        self, nsg: str, mac: str, by_rule: dict[str, list[str]], now: float
    ) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
        fraction = f"{int((now % 1) * 10_000_000):07d}"
        return {
            "time": f"{stamp}.{fraction}Z",
            "systemId": str(uuid.uuid5(_SYSTEM_NAMESPACE, nsg.lower())),
            "macAddress": mac,
            "category": "NetworkSecurityGroupFlowEvent",
            "resourceId": nsg.upper(),
            "operationName": "NetworkSecurityGroupFlowEvents",
            "properties": {
                "Version": 2,
                "flows": [
                    {"rule": rule, "flows": [{"mac": mac, "flowTuples": tuples}]}
                    for rule, tuples in by_rule.items()
                ],
            },
        }


def _read(path: Path) -> dict[str, Any]:
    if path.exists():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            document = None
        if isinstance(document, dict) and isinstance(document.get("records"), list):
            return document
    return {"records": []}
