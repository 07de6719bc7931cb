"""What runtime tests share: small scale-set templates whose NAT pools use ports found free
at test time, the example templates, loopback addresses of their own for every test, a running
Runtime that the test always stops, and loopback clients.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import resource
import socket
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import Plan
from lbsim.dataplane.events import FlowEvent, FlowRecord, as_events
from lbsim.dataplane.listeners import Listener
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import DEFAULT_TCP_ENGINE, RuntimeSettings, SourceMap, TcpEngine

Json = dict[str, Any]
EXAMPLES = Path(__file__).resolve().parents[2] / "arm-examples"
_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
_LB_ID = "[resourceId('Microsoft.Network/loadBalancers', 'lb')]"
_NSG_ID = "[resourceId('Microsoft.Network/networkSecurityGroups', 'nsg')]"
_SUBNET_ID = "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'default')]"

# Every test gets loopback addresses of its own, away from 127.0.0.1 and from the built-in
# instances' default network (127.1.0.0/16) that a concurrently running ``lbsim up`` uses.
_NEXT = itertools.count(1)


@attrs.frozen
class Place:
    """Where one test's runtime lives: its frontend address, its built-in instances' network,
    and a /24 of client addresses it may bind to."""

    frontend: str
    instance_network: str
    clients: str

    def client(self, host: int) -> str:
        """The client address ``host`` of this test's /24."""
        return self.clients.rsplit(".", 1)[0] + f".{host}"


def place() -> Place:
    """Fresh loopback addresses for one test."""
    n = next(_NEXT)
    return Place(f"127.0.93.{n}", f"127.93.{n}.0/24", f"127.94.{n}.0")


def free_ports(host: str, count: int) -> int:
    """The first of ``count`` consecutive ports free on ``host`` for both TCP and UDP."""
    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(20000, 32000)
        if all(_free(host, port) for port in range(start, start + count)):
            return start
    raise AssertionError(f"no {count} consecutive free ports on {host}")


def _free(host: str, port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


# --- templates -----------------------------------------------------------------------------
def nat_pool(
    name: str,
    start: int,
    backend_port: int,
    *,
    protocol: str = "Tcp",
    size: int = 10,
    idle_minutes: int = 4,
    tcp_reset: bool = False,
) -> Json:
    """An inbound NAT pool on frontend ``fe`` of load balancer ``lb``."""
    return {
        "name": name,
        "properties": {
            "frontendIPConfiguration": {
                "id": f"[concat({_LB_ID[1:-1]}, '/frontendIPConfigurations/fe')]"
            },
            "protocol": protocol,
            "frontendPortRangeStart": start,
            "frontendPortRangeEnd": start + size - 1,
            "backendPort": backend_port,
            "idleTimeoutInMinutes": idle_minutes,
            "enableTcpReset": tcp_reset,
        },
    }


def allow(name: str, priority: int, source: str, port: str = "*", protocol: str = "*") -> Json:
    """An inbound Allow rule of the subnet's NSG."""
    return {
        "name": name,
        "properties": {
            "priority": priority,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": protocol,
            "sourceAddressPrefix": source,
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": port,
        },
    }


def scale_set(
    pools: Iterable[Json],
    *,
    capacity: int = 3,
    nsg_rules: Iterable[Json] | None = None,
    sku: str | None = None,
) -> Json:
    """A scale set ``vmss`` in subnet 10.0.0.0/24 whose instances are in every pool of
    ``pools``, behind a Standard load balancer whose subnet has an NSG ``nsg`` with
    ``nsg_rules``; without rules, behind a Basic load balancer and no NSG (a Standard one
    would admit nothing), unless ``sku`` says which."""
    pools = list(pools)
    sku = sku or ("Basic" if nsg_rules is None else "Standard")
    subnet: Json = {"addressPrefix": "10.0.0.0/24"}
    resources: list[Json] = []
    if nsg_rules is not None:
        resources.append(
            _resource(
                "Microsoft.Network/networkSecurityGroups", "nsg", {"securityRules": list(nsg_rules)}
            )
        )
        subnet["networkSecurityGroup"] = {"id": _NSG_ID}
    resources += [
        _resource(
            "Microsoft.Network/virtualNetworks",
            "vnet",
            {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [{"name": "default", "properties": subnet}],
            },
        ),
        _resource(
            "Microsoft.Network/publicIPAddresses",
            "pip",
            {"publicIPAllocationMethod": "Static"},
            sku={"name": sku},
        ),
        _load_balancer(pools, sku),
        _scale_set([p["name"] for p in pools], capacity),
    ]
    return {"$schema": _SCHEMA, "contentVersion": "1.0.0.0", "resources": resources}


def _resource(rtype: str, name: str, properties: Json, **extra: Any) -> Json:
    return {
        "type": rtype,
        "apiVersion": "2023-09-01",
        "name": name,
        "location": "[resourceGroup().location]",
        **extra,
        "properties": properties,
    }


def _load_balancer(pools: list[Json], sku: str) -> Json:
    pip = "[resourceId('Microsoft.Network/publicIPAddresses', 'pip')]"
    frontend = {"name": "fe", "properties": {"publicIPAddress": {"id": pip}}}
    props = {
        "frontendIPConfigurations": [frontend],
        "backendAddressPools": [{"name": "pool"}],
        "inboundNatPools": pools,
    }
    return _resource("Microsoft.Network/loadBalancers", "lb", props, sku={"name": sku})


def _scale_set(pools: list[str], capacity: int) -> Json:
    lb = _LB_ID[1:-1]
    ipconfig = {
        "name": "ipconfig",
        "properties": {
            "subnet": {"id": _SUBNET_ID},
            "loadBalancerInboundNatPools": [
                {"id": f"[concat({lb}, '/inboundNatPools/{name}')]"} for name in pools
            ],
        },
    }
    nic = {"name": "nic", "properties": {"primary": True, "ipConfigurations": [ipconfig]}}
    profile = {
        "osProfile": {"computerNamePrefix": "vmss", "adminUsername": "azureuser"},
        "networkProfile": {"networkInterfaceConfigurations": [nic]},
    }
    props = {
        "overprovision": False,
        "upgradePolicy": {"mode": "Manual"},
        "virtualMachineProfile": profile,
    }
    return _resource(
        "Microsoft.Compute/virtualMachineScaleSets",
        "vmss",
        props,
        sku={"name": "Standard_B1s", "capacity": capacity},
    )


# The TCP engine of the runtimes that ``settings`` describes (set per test by conftest.py).
TCP_ENGINE: TcpEngine = DEFAULT_TCP_ENGINE


# --- plans ---------------------------------------------------------------------------------
def plan_of(doc: Json, frontend: str, name: str = "lb/fe") -> Plan:
    """The plan of ``doc`` with frontend ``name`` bound to ``frontend``."""
    deployment = load_template(doc, "t.json", LoadOptions(fill_missing=True))
    return plan(deployment, {name: frontend})


def example_plan(example: str, frontend: str, name: str) -> Plan:
    """The plan of an example in arm-examples/ with frontend ``name`` bound to ``frontend``."""
    doc = json.loads((EXAMPLES / example / "azuredeploy.json").read_text(encoding="utf-8"))
    return plan_of(doc, frontend, name)


# --- running -------------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def running(
    the_plan: Plan, config: RuntimeSettings, events: list[FlowEvent] | None = None
) -> AsyncIterator[Runtime]:
    """A started Runtime; stopped (and its drain awaited) on the way out."""
    sink = as_events(events.append) if events is not None else _keep_none
    runtime = Runtime(the_plan, config, sink)
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        try:
            yield runtime
        finally:
            runtime.stop()


def _keep_none(_record: FlowRecord) -> None:
    """A sink that drops events (but is not the runtime's ``discard``, so events are built)."""


# --- settings and clients ------------------------------------------------------------------
MiB = 1 << 20
FAST = 1 / 480  # a 4-minute idle timeout becomes half a second
Address = tuple[str, int]


def settings(where: Place, **overrides: Any) -> RuntimeSettings:
    """Settings for one test: its own instance network, short drain and connect times."""
    base = RuntimeSettings(
        instance_network=where.instance_network,
        drain_timeout_s=1.0,
        connect_timeout_s=2.0,
        tcp_engine=TCP_ENGINE,
    )
    return attrs.evolve(base, **overrides)


async def connect(address: Address, source: str | None = None) -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if source is not None:
            await sock.bind((source, 0))
        with trio.fail_after(2):
            await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock


async def read_line(sock: trio.socket.SocketType, within: float = 2.0) -> bytes:
    line = b""
    with trio.fail_after(within):
        while not line.endswith(b"\n") and len(line) < 512:
            chunk = await sock.recv(1)
            assert chunk, f"closed after {line!r}"
            line += chunk
    return line


async def ending(sock: trio.socket.SocketType, within: float = 3.0) -> str:
    """How the peer ends the connection: "eof" or "reset"; data before it fails the test."""
    with trio.fail_after(within):
        try:
            data = await sock.recv(65536)
        except ConnectionResetError:
            return "reset"
    assert data == b"", f"unexpected {data!r}"
    return "eof"


async def http_get(address: Address, source: str | None = None) -> dict[str, object]:
    with await connect(address, source) as sock:
        await sock.send(b"GET / HTTP/1.1\r\nHost: lbsim\r\nConnection: close\r\n\r\n")
        response = b""
        with trio.fail_after(3):
            while chunk := await sock.recv(65536):
                response += chunk
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    answer: dict[str, object] = json.loads(body)
    return answer


async def udp_ask(sock: trio.socket.SocketType, address: Address, data: bytes) -> bytes:
    await sock.sendto(data, address)
    with trio.fail_after(2):
        return await sock.recv(65536)


async def udp_client(source: str = "127.0.0.1") -> trio.socket.SocketType:
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    await sock.bind((source, 0))
    return sock


def listener_on(runtime: Runtime, port: int, protocol: str = "Tcp") -> Listener:
    found = [
        lst
        for lst in runtime.listeners
        if lst.entry.frontend_port == port and lst.protocol.value == protocol
    ]
    assert len(found) == 1
    return found[0]


def nsg_sources(where: Place) -> SourceMap:
    low, high = where.client(0) + "/25", where.client(128) + "/25"
    return SourceMap.parse({low: "203.0.113.0/25", high: "198.51.100.0/25"})


async def start_watched(nursery: trio.Nursery, runtime: Runtime, done: trio.Event) -> None:
    async def run(*, task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED) -> None:
        await runtime.run(task_status=task_status)
        done.set()

    await nursery.start(run)


def echo_plan(where: Place) -> tuple[int, Plan]:
    start = free_ports(where.frontend, 1)
    return start, plan_of(
        scale_set([nat_pool("echo", start, 7000, size=1)], capacity=1), where.frontend
    )


@contextlib.contextmanager
def no_descriptors_left(spare: int = 0) -> Iterator[None]:
    """Every file descriptor slot of this process but ``spare`` taken until the block ends."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    # Room above the highest open descriptor for at least ``spare`` more, whatever holes
    # below it this process happens to have; then fill every free slot up to the limit.
    limit = top + 1 + spare + 8
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    fillers: list[int] = []
    try:
        for _ in range(limit):
            try:
                fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        assert len(fillers) >= spare, f"only {len(fillers)} descriptors could be taken"
        for _ in range(spare):
            os.close(fillers.pop())
        yield
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
