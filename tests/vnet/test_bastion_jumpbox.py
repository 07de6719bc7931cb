"""End to end on arm-examples/vmss-jumpbox (its Azure Bastion host in AzureBastionSubnet):
``lbsim up`` as a process, ``lbsim bastion tunnel`` holding a tunnel to web/1's SSH port, and
OpenSSH logging in through it (``hostname`` answers the instance's computer name)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "arm-examples" / "vmss-jumpbox"
SSH, KEYGEN = shutil.which("ssh"), shutil.which("ssh-keygen")


@contextmanager
def process(command: list[str], stdout: int, stderr: int | None = None) -> Iterator[Popen[str]]:
    """A process of the test's; SIGTERM on the way out (killed if it does not end)."""
    with Popen(command, cwd=ROOT, text=True, stdout=stdout, stderr=stderr) as proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def lbsim_up(tmp_path: Path) -> Iterator[str]:
    """``lbsim up`` on the example, every port free; its control API's URL once ready."""
    ready = tmp_path / "ready.json"
    command = [sys.executable, "-m", "lbsim", "up", str(EXAMPLE / "azuredeploy.json")]
    command += ["-p", str(EXAMPLE / "azuredeploy.parameters.json"), "--port-map", "ephemeral"]
    command += ["--api-port", "0", "--ready-file", str(ready)]
    with process(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as up:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert up.poll() is None, up.communicate()[1]
            assert time.monotonic() < deadline, "lbsim up did not get ready"
            time.sleep(0.05)
        yield json.loads(ready.read_text(encoding="utf-8"))["api"]


def tunnel_port(tunnel: Popen[str]) -> int:
    """The port ``lbsim bastion tunnel`` says to connect on."""
    assert tunnel.stdout is not None
    for _ in range(3):
        line = tunnel.stdout.readline()
        if line.startswith("Tunnel is ready, connect on port "):
            return int(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no 'Tunnel is ready' line; last: {line!r}")


def ssh_through(port: int, folder: Path) -> subprocess.CompletedProcess[str]:
    assert SSH is not None
    assert KEYGEN is not None
    key = folder / "id_ed25519"
    subprocess.run([KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    options = ["-F", "/dev/null", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes"]
    options += ["-o", "StrictHostKeyChecking=no", "-o", "IdentitiesOnly=yes", "-i", str(key)]
    options += ["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20", "-p", str(port)]
    command = [SSH, *options, "azureuser@127.0.0.1", "hostname"]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.skipif(SSH is None or KEYGEN is None, reason="OpenSSH's client is not installed")
def test_ssh_through_a_bastion_tunnel_of_the_jumpbox_example(tmp_path: Path) -> None:
    with lbsim_up(tmp_path) as api:
        verb = [sys.executable, "-m", "lbsim", "bastion", "tunnel", "--api", api]
        verb += ["--target", "web/1", "--resource-port", "22"]
        with process(verb, stdout=subprocess.PIPE) as tunnel:
            done = ssh_through(tunnel_port(tunnel), tmp_path)
            tunnel.send_signal(signal.SIGINT)
            assert tunnel.wait(30) == 0
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "web000001"
