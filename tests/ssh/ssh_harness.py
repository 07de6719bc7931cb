"""What the SSH tests share: a small scale set behind a NAT pool (SSH on 22, an admin port
8080 that the NSG denies from inside the virtual network), a running Runtime on loopback
addresses of its own, OpenSSH's clients (never reading the user's ~/.ssh), and asyncssh's
client (for passwords: OpenSSH asks for one only on a terminal)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio
from corpus import in_ci

from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import Backend, Plan
from lbsim.dataplane.runtime import Runtime
from lbsim.dataplane.settings import RuntimeSettings, SshSettings
from lbsim.dataplane.ssh.lib import asyncssh

Json = dict[str, Any]
T = TypeVar("T")
_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
_LB = "resourceId('Microsoft.Network/loadBalancers', 'lb')"
_NEXT = itertools.count(1)
USER = "azureuser"


def require(tool: str) -> str:
    """The path of an OpenSSH program; without it, skip (or fail under CI: CI has it)."""
    found = shutil.which(tool)
    if found:
        return found
    if in_ci():
        pytest.fail(f"{tool} is missing (install openssh-client); CI must run the SSH tests")
    pytest.skip(f"{tool} is not installed (openssh-client)")


@attrs.frozen
class Place:
    frontend: str
    instance_network: str
    ssh_port: int  # the NAT pool's first frontend port (the admin pool's is 10 above)


def place() -> Place:
    """Loopback addresses of the test's own, and free ports below the ephemeral range."""
    n = next(_NEXT)
    frontend = f"127.0.97.{n}"
    return Place(frontend, f"127.98.{n}.0/24", _free_ports(frontend, 20))


def _free_ports(host: str, count: int) -> int:
    rng = random.Random()
    for _ in range(200):
        start = rng.randrange(20000, 32000)
        if all(_free(host, port) for port in range(start, start + count)):
            return start
    raise AssertionError(f"no {count} free ports on {host}")


def _free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# --- the template ------------------------------------------------------------------------
def template(ssh_port: int, capacity: int = 2) -> Json:
    """A Standard load balancer with NAT pools ``ssh`` (-> 22) and ``admin`` (-> 8080) over
    a scale set ``web`` (computer name prefix ``web``) in 10.0.0.0/24; its subnet's NSG allows
    SSH from anywhere and denies 8080 from inside the virtual network."""
    rules = [
        _rule("allow-ssh", 100, "Allow", "*", "22"),
        _rule("deny-admin-from-vnet", 110, "Deny", "VirtualNetwork", "8080"),
        _rule("allow-admin", 120, "Allow", "*", "8080"),
    ]
    subnet = {
        "addressPrefix": "10.0.0.0/24",
        "networkSecurityGroup": {
            "id": "[resourceId('Microsoft.Network/networkSecurityGroups', 'nsg')]"
        },
    }
    return {
        "$schema": _SCHEMA,
        "contentVersion": "1.0.0.0",
        "resources": [
            _resource("Microsoft.Network/networkSecurityGroups", "nsg", {"securityRules": rules}),
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
                sku={"name": "Standard"},
            ),
            _load_balancer(ssh_port),
            _scale_set(capacity),
        ],
    }


def _rule(name: str, priority: int, access: str, source: str, port: str) -> Json:
    return {
        "name": name,
        "properties": {
            "priority": priority,
            "direction": "Inbound",
            "access": access,
            "protocol": "Tcp",
            "sourceAddressPrefix": source,
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": port,
        },
    }


def _resource(rtype: str, name: str, properties: Json, **extra: Any) -> Json:
    return {
        "type": rtype,
        "apiVersion": "2023-09-01",
        "name": name,
        "location": "[resourceGroup().location]",
        **extra,
        "properties": properties,
    }


def _pool(name: str, start: int, backend_port: int) -> Json:
    return {
        "name": name,
        "properties": {
            "frontendIPConfiguration": {"id": f"[concat({_LB}, '/frontendIPConfigurations/fe')]"},
            "protocol": "Tcp",
            "frontendPortRangeStart": start,
            "frontendPortRangeEnd": start + 9,
            "backendPort": backend_port,
        },
    }


def _load_balancer(ssh_port: int) -> Json:
    pip = "[resourceId('Microsoft.Network/publicIPAddresses', 'pip')]"
    props = {
        "frontendIPConfigurations": [
            {"name": "fe", "properties": {"publicIPAddress": {"id": pip}}}
        ],
        "backendAddressPools": [{"name": "pool"}],
        "inboundNatPools": [_pool("ssh", ssh_port, 22), _pool("admin", ssh_port + 10, 8080)],
    }
    return _resource("Microsoft.Network/loadBalancers", "lb", props, sku={"name": "Standard"})


def _scale_set(capacity: int) -> Json:
    subnet = "[resourceId('Microsoft.Network/virtualNetworks/subnets', 'vnet', 'default')]"
    pools = [{"id": f"[concat({_LB}, '/inboundNatPools/{name}')]"} for name in ("ssh", "admin")]
    ipconfig = {
        "name": "ipconfig",
        "properties": {"subnet": {"id": subnet}, "loadBalancerInboundNatPools": pools},
    }
    nic = {"name": "nic", "properties": {"primary": True, "ipConfigurations": [ipconfig]}}
    profile = {
        "osProfile": {"computerNamePrefix": "web", "adminUsername": USER},
        "networkProfile": {"networkInterfaceConfigurations": [nic]},
    }
    props = {"upgradePolicy": {"mode": "Manual"}, "virtualMachineProfile": profile}
    sku = {"name": "Standard_B1s", "capacity": capacity}
    return _resource("Microsoft.Compute/virtualMachineScaleSets", "web", props, sku=sku)


def plan_for(where: Place, capacity: int = 2) -> Plan:
    deployment = load_template(template(where.ssh_port, capacity), "t.json", LoadOptions())
    return plan(deployment, {"lb/fe": where.frontend})


def settings(where: Place, **ssh: Any) -> RuntimeSettings:
    return RuntimeSettings(
        instance_network=where.instance_network,
        drain_timeout_s=1.0,
        connect_timeout_s=5.0,
        ssh=SshSettings(**ssh),
    )


@contextlib.asynccontextmanager
async def running(the_plan: Plan, config: RuntimeSettings) -> AsyncIterator[Runtime]:
    """A started Runtime, stopped on the way out; its notices are kept in ``notices``."""
    runtime = Runtime(the_plan, config)
    notices: list[str] = []
    runtime.notice = notices.append
    async with trio.open_nursery() as nursery:
        await nursery.start(runtime.run)
        try:
            yield runtime
        finally:
            runtime.stop()


def backend(runtime: Runtime, instance_id: int) -> Backend:
    return next(b for b in runtime.plan.backends if b.instance_id == instance_id)


# --- OpenSSH -----------------------------------------------------------------------------
@attrs.frozen
class OpenSsh:
    """OpenSSH's clients with a throwaway key and known-hosts file, never ~/.ssh."""

    folder: Path

    @property
    def key(self) -> Path:
        return self.folder / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.folder / "known_hosts"

    def options(self, *, strict: bool = False, log: str = "ERROR") -> list[str]:
        """(``log``: INFO shows what ``ssh`` tells a user, such as a refused channel.)"""
        return [
            "-F", "/dev/null",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", f"StrictHostKeyChecking={'yes' if strict else 'no'}",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "IdentityAgent=none",
            "-o", "ConnectTimeout=20",
            "-o", f"LogLevel={log}",
            "-i", str(self.key),
        ]  # fmt: skip

    async def ssh(
        self, port: int, host: str, *command: str, strict: bool = False, extra: Sequence[str] = ()
    ) -> subprocess.CompletedProcess[bytes]:
        """``ssh -p PORT azureuser@HOST COMMAND...``: its status, output and errors."""
        args = [require("ssh"), *self.options(strict=strict), *extra, "-p", str(port)]
        return await _run([*args, f"{USER}@{host}", *command])

    async def scp(
        self, port: int, *paths: str, legacy: bool = False
    ) -> subprocess.CompletedProcess[bytes]:
        args = [require("scp"), *self.options(), "-P", str(port), *(["-O"] if legacy else [])]
        return await _run([*args, *paths])


async def _run(args: list[str]) -> subprocess.CompletedProcess[bytes]:
    with trio.fail_after(60):
        return await trio.run_process(
            args, capture_stdout=True, capture_stderr=True, check=False, stdin=subprocess.DEVNULL
        )


async def openssh(folder: Path) -> OpenSsh:
    """A folder with a new Ed25519 key made by ``ssh-keygen``."""
    await trio.Path(folder).mkdir(parents=True, exist_ok=True)
    client = OpenSsh(folder)
    keygen = require("ssh-keygen")
    done = await _run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(client.key)])
    assert done.returncode == 0, done.stderr
    return client


# --- asyncssh's client -------------------------------------------------------------------
async def with_client(
    address: tuple[str, int],
    use: Callable[[asyncssh.SSHClientConnection], Awaitable[T]],
    **auth: Any,
) -> T:
    """Log in with asyncssh (password by default) in a thread of its own and ``use`` the
    connection; asyncssh's errors (a refused login) are raised here."""

    async def session() -> T:
        options = {"username": USER, "password": "anything", "client_keys": None} | auth
        async with asyncssh.connect(
            *address, known_hosts=None, config=None, agent_path=None, **options
        ) as conn:
            return await use(conn)

    with trio.fail_after(60):
        return await trio.to_thread.run_sync(asyncio.run, session())


# --- changes -----------------------------------------------------------------------------
def deployment_for(where: Place, capacity: int = 2) -> Any:
    return load_template(template(where.ssh_port, capacity), "t.json", LoadOptions())


async def change_to(runtime: Runtime, new: Plan) -> None:
    """Apply ``new`` to the running runtime (as the session's changes do)."""
    from lbsim.control.diff import diff

    await runtime.apply(diff(runtime.plan, new))
