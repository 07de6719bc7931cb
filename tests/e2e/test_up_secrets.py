"""Secrets stay secret outside the loader: a securestring and a secureObject parameter, used in
a scale set's osProfile, its tags, a load balancer's tags and the template's outputs (secure
and not), appear nowhere ``lbsim up`` writes: not its stdout or stderr (ready line, table, flow
log lines, reload report), the ready file, the NSG flow logs, /metrics, or any answer of the
control API (/v1/ports, /v1/instances, /v1/rules, /v1/check, /v1/reload, /readyz, /healthz)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "Zq7-s3cr3t-PaSsW0rd-91"  # recognisable, in no name lbsim prints
OBJECT_SECRET = "Kx4-0bj3ct-t0k3n-55"
FRONTEND = "127.0.97.3"  # a loopback address of this test's own
VMSS = "Microsoft.Compute/virtualMachineScaleSets"
LB = "Microsoft.Network/loadBalancers"
NSG = "Microsoft.Network/networkSecurityGroups"
REFERENCED = f"resourceId('{VMSS}', 'vmss')"


def _id(kind: str, *names: str) -> dict[str, str]:
    quoted = ", ".join(f"'{n}'" for n in (kind, *names))
    return {"id": f"[resourceId({quoted})]"}


def secret_template() -> dict[str, Any]:
    """A scale set of 2 behind a NAT pool 50000-50001 -> 22, with both secrets in its
    osProfile (password, customData) and tags, in the load balancer's and the NSG's tags, in
    an NSG rule's description, and in outputs (secure, plain, and through reference())."""
    tags = {"pw": "[parameters('adminPassword')]", "obj": "[string(parameters('settings'))]"}
    nic = {
        "primary": True,
        "ipConfigurations": [
            {
                "name": "ipc",
                "properties": {
                    "subnet": _id("Microsoft.Network/virtualNetworks/subnets", "vnet", "default"),
                    "loadBalancerBackendAddressPools": [
                        _id(f"{LB}/backendAddressPools", "lb", "pool")
                    ],
                    "loadBalancerInboundNatPools": [_id(f"{LB}/inboundNatPools", "lb", "ssh")],
                },
            }
        ],
    }
    ssh_rule = {
        "name": "allow-ssh",
        "properties": {
            "description": "[concat('kept with ', parameters('adminPassword'))]",
            "priority": 100,
            "direction": "Inbound",
            "access": "Allow",
            "protocol": "Tcp",
            "sourceAddressPrefix": "*",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "*",
            "destinationPortRange": "22",
        },
    }
    resources = [
        {
            "type": "Microsoft.Network/publicIPAddresses",
            "apiVersion": "2023-09-01",
            "name": "pip",
            "location": "westeurope",
            "sku": {"name": "Standard"},
            "properties": {"publicIPAllocationMethod": "Static"},
        },
        {
            "type": NSG,
            "apiVersion": "2023-09-01",
            "name": "nsg",
            "location": "westeurope",
            "tags": tags,
            "properties": {"securityRules": [ssh_rule]},
        },
        {
            "type": "Microsoft.Network/virtualNetworks",
            "apiVersion": "2023-09-01",
            "name": "vnet",
            "location": "westeurope",
            "dependsOn": ["nsg"],
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {
                        "name": "default",
                        "properties": {
                            "addressPrefix": "10.0.0.0/24",
                            "networkSecurityGroup": _id(NSG, "nsg"),
                        },
                    }
                ],
            },
        },
        {
            "type": LB,
            "apiVersion": "2023-09-01",
            "name": "lb",
            "location": "westeurope",
            "sku": {"name": "Basic"},
            "tags": tags,
            "dependsOn": ["pip"],
            "properties": {
                "frontendIPConfigurations": [
                    {
                        "name": "fe",
                        "properties": {
                            "publicIPAddress": _id("Microsoft.Network/publicIPAddresses", "pip")
                        },
                    }
                ],
                "backendAddressPools": [{"name": "pool"}],
                "inboundNatPools": [
                    {
                        "name": "ssh",
                        "properties": {
                            "frontendIPConfiguration": _id(
                                f"{LB}/frontendIPConfigurations", "lb", "fe"
                            ),
                            "protocol": "Tcp",
                            "frontendPortRangeStart": 50000,
                            "frontendPortRangeEnd": 50001,
                            "backendPort": 22,
                        },
                    }
                ],
            },
        },
        {
            "type": VMSS,
            "apiVersion": "2023-09-01",
            "name": "vmss",
            "location": "westeurope",
            "tags": tags,
            "sku": {"name": "Standard_B1s", "capacity": 2},
            "dependsOn": ["lb", "vnet"],
            "properties": {
                "overprovision": False,
                "upgradePolicy": {"mode": "Manual"},
                "virtualMachineProfile": {
                    "osProfile": {
                        "computerNamePrefix": "vmss",
                        "adminUsername": "azureuser",
                        "adminPassword": "[parameters('adminPassword')]",
                        "customData": "[base64(parameters('adminPassword'))]",
                        "linuxConfiguration": {},
                    },
                    "networkProfile": {
                        "networkInterfaceConfigurations": [{"name": "nic", "properties": nic}]
                    },
                },
            },
        },
    ]
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {
            "adminPassword": {"type": "securestring"},
            "settings": {"type": "secureObject"},
        },
        "resources": resources,
        "outputs": {
            "password": {"type": "securestring", "value": "[parameters('adminPassword')]"},
            "plain": {"type": "string", "value": "[parameters('adminPassword')]"},
            "object": {"type": "secureObject", "value": "[parameters('settings')]"},
            "tags": {
                "type": "object",
                "value": "[reference(resourceId('"
                + VMSS
                + "', 'vmss'), '2023-09-01', 'Full').tags]",
            },
        },
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _get(url: str, body: Any = None) -> str:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return str(answer.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as error:  # an error's body counts too
        with error:
            return str(error.read().decode("utf-8", "replace"))


def _banner() -> str:
    """Reach instance 0's built-in SSH server through the NAT pool: decision and close logs."""
    with socket.create_connection((FRONTEND, 50000), timeout=5) as conn:
        return conn.recv(256).decode("utf-8", "replace")


@pytest.mark.timeout(90)
def test_secrets_appear_in_nothing_lbsim_up_writes_or_answers(tmp_path: Path) -> None:
    template = tmp_path / "t.json"
    template.write_text(json.dumps(secret_template()), encoding="utf-8")
    ready, flow_logs, port = tmp_path / "ready.json", tmp_path / "flowlogs", _free_port()
    command = [
        sys.executable, "-m", "lbsim", "up", str(template),
        "--param", f"adminPassword={SECRET}",
        "--param", f"settings={json.dumps({'token': OBJECT_SECRET})}",
        "--frontend", f"fe={FRONTEND}",
        "--api-port", str(port),
        "--ready-file", str(ready),
        "--flow-log-dir", str(flow_logs),
        "--flow-log-interval-seconds", "0.2",
        "--drain-seconds", "1",
    ]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "LBSIM_LOG_FORMAT": "json"}
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "lbsim up did not get ready"
                time.sleep(0.05)
            api = f"http://127.0.0.1:{port}"
            answers = [_banner()]
            answers += [
                _get(api + path)
                for path in (
                    "/healthz",
                    "/readyz",
                    "/metrics",
                    "/v1/ports",
                    "/v1/instances",
                    "/v1/rules?instance=vmss/0",
                    "/v1/rules?instance=vmss/1&direction=Outbound",
                )
            ]
            answers.append(
                _get(api + "/v1/check", {"source": "203.0.113.7", "frontendPort": 50001})
            )
            answers.append(_get(api + "/v1/reload", {}))
            time.sleep(0.5)  # a flow-log interval or two
            written = ready.read_text(encoding="utf-8")
            proc.send_signal(signal.SIGTERM)
            stdout, stderr = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, stderr
    assert "lbsim: ready listeners=2" in stdout
    assert '"kind":"decision"' in stderr  # the flow was logged
    assert '"name": "vmss/0"' in answers[5]  # /v1/instances answered
    assert '"name": "allow-ssh"' in answers[6]  # /v1/rules answered, the NSG's rule too
    logs = [p.read_text(encoding="utf-8") for p in flow_logs.rglob("*") if p.is_file()]
    assert any(",10.0.0.4," in text for text in logs), logs  # a flow record of instance 0
    outputs = {
        "stdout": stdout,
        "stderr": stderr,
        "ready file": written,
        **{f"answer {i}": a for i, a in enumerate(answers)},
        **{f"flow log {i}": text for i, text in enumerate(logs)},
    }
    for secret in (SECRET, OBJECT_SECRET):
        leaked = [where for where, text in outputs.items() if secret in text]
        assert leaked == [], f"{secret} in {leaked}"
