"""The shell's commands as pure functions of an instance and a login user."""

from __future__ import annotations

import json
from pathlib import Path

from lbsim.control.types import Backend, Plan
from lbsim.dataplane.instances import InstanceIdentity
from lbsim.dataplane.ssh.homes import Homes
from lbsim.dataplane.ssh.instance import SshInstance
from lbsim.dataplane.ssh.lib import asyncssh
from lbsim.dataplane.ssh.shell import execute

NSG_VMSS_85 = Backend(
    "/x/ipconfigurations/ipconfig",
    "nsgvmss_85",
    "10.0.0.9",
    "nsgvmss",
    85,
    computer_name="nsgvmss00002D",
)


def _instance(backend: Backend, tmp_path: Path) -> SshInstance:
    identity = InstanceIdentity(backend.scale_set or backend.name, backend.instance_id, "10.0.0.9")
    key = asyncssh.generate_private_key("ssh-ed25519")
    return SshInstance(backend, identity, key, Homes().hold(backend), Plan, lambda port: None)


def test_hostname_is_azure_s_computer_name_else_the_instance_name(tmp_path: Path) -> None:
    assert execute(_instance(NSG_VMSS_85, tmp_path), "bob", "hostname").stdout == (
        "nsgvmss00002D\n"
    )
    unnamed = Backend("/y", "web_3", "10.0.0.7", "web", 3)
    assert execute(_instance(unnamed, tmp_path), "bob", "hostname").stdout == "web_3\n"


def test_commands_and_their_statuses(tmp_path: Path) -> None:
    instance = _instance(NSG_VMSS_85, tmp_path)
    ran = {line: execute(instance, "bob", line, last=4) for line in (
        "whoami", "hostname -I", "ip addr", "echo -n hi", "exit", "exit 300", "exit x",
        "exit --5", "exit -1", "exit 1234567890", "", "cat /etc/shadow", "vi 'unclosed", "ip route",
    )}  # fmt: skip
    assert ran["whoami"].stdout == "bob\n"
    assert ran["hostname -I"].stdout.split() == ["10.0.0.9"]
    assert "inet 10.0.0.9 " in ran["ip addr"].stdout
    assert ran["echo -n hi"].stdout == "hi"
    assert (ran["exit"].status, ran["exit"].exits) == (4, True)
    assert ran["exit 300"].status == 300 % 256
    assert ran["exit x"].status == 2
    assert (ran["exit --5"].status, ran["exit --5"].exits) == (2, True)  # as sh: an error
    assert "numeric argument required" in ran["exit --5"].stderr
    assert ran["exit -1"].status == 255
    assert ran["exit 1234567890"].status == 2
    assert (ran[""].status, ran[""].exits) == (4, False)
    assert ran["cat /etc/shadow"].status == 1
    assert ran["vi 'unclosed"].status == 2
    assert ran["ip route"].status == 127
    assert ran["ip route"].stderr == "ip route: not available on an lbsim instance\n"


def test_commands_joined_by_semicolons_and_and_or_run_as_a_shell_runs_them(
    tmp_path: Path,
) -> None:
    instance = _instance(NSG_VMSS_85, tmp_path)

    def run(line: str) -> tuple[int, str]:
        ran = execute(instance, "bob", line)
        return ran.status, ran.stdout

    assert run("hostname; whoami") == (0, "nsgvmss00002D\nbob\n")
    assert run("false && echo no; echo yes") == (0, "yes\n")
    assert run("false || echo rescued") == (0, "rescued\n")
    assert run("true || echo skipped && echo then") == (0, "then\n")
    assert run("echo 'a;b'") == (0, "a;b\n")  # quoted: one word
    assert run("echo one; exit 3; echo never") == (3, "one\n")
    assert execute(instance, "bob", "echo one; exit 3").exits
    piped = execute(instance, "bob", "hostname | tr a-z A-Z")
    assert piped.status == 2
    assert "pipes and background jobs are not available" in piped.stderr


def test_etc_lbsim_instance_without_nat_ports(tmp_path: Path) -> None:
    instance = _instance(NSG_VMSS_85, tmp_path)
    facts = json.loads(execute(instance, "bob", "cat /etc/lbsim-instance").stdout)
    assert facts["computerName"] == "nsgvmss00002D"
    assert facts["natPorts"] == []
    assert facts["hostKey"] == instance.key.get_fingerprint("sha256")
