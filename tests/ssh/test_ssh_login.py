"""Logging in to built-in instances through their NAT ports with OpenSSH's ``ssh`` (a key)
and asyncssh's client (a password), and what the small shell answers."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest
import trio
from ssh_harness import USER, backend, openssh, place, plan_for, running, settings, with_client

from lbsim.control.diff import diff
from lbsim.dataplane.settings import SshAuth, SshSettings
from lbsim.dataplane.ssh.lib import asyncssh


async def test_every_instance_logs_in_with_a_key_through_its_nat_port(tmp_path: Path) -> None:
    where = place()
    client = await openssh(tmp_path)
    async with running(plan_for(where), settings(where)) as runtime:
        for instance in (0, 1):
            done = await client.ssh(where.ssh_port + instance, where.frontend, "hostname")
            assert done.returncode == 0, done.stderr
            named = backend(runtime, instance)
            assert done.stdout.decode() == f"{named.computer_name or f'web_{instance}'}\n"
            address = await client.ssh(where.ssh_port + instance, where.frontend, "hostname -I")
            assert address.stdout.decode().split() == [named.private_ip_address]
        assert runtime.ssh.counts["accepted"] == 4


async def test_password_logins_reach_every_instance_as_any_user() -> None:
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        for instance in (0, 1):
            address = (where.frontend, where.ssh_port + instance)

            async def whoami(conn: asyncssh.SSHClientConnection) -> str:
                return str((await conn.run("whoami", check=True)).stdout)

            assert await with_client(address, whoami, username="alice") == "alice\n"
        assert runtime.ssh.counts["accepted"] == 2


async def test_commands_exit_with_real_statuses(tmp_path: Path) -> None:
    where = place()
    client = await openssh(tmp_path)
    async with running(plan_for(where), settings(where)):
        statuses = {}
        for command in ("true", "false", "exit 3", "exit", "echo a  'b c'", "ls -l", "uname"):
            done = await client.ssh(where.ssh_port, where.frontend, command)
            statuses[command] = (done.returncode, done.stdout.decode(), done.stderr.decode())
    assert statuses["true"] == (0, "", "")
    assert statuses["false"] == (1, "", "")
    assert statuses["exit 3"][0] == 3
    assert statuses["exit"][0] == 0
    assert statuses["echo a  'b c'"] == (0, "a b c\n", "")
    assert statuses["ls -l"] == (127, "", "ls: not available on an lbsim instance\n")
    assert statuses["uname"][0] == 127


async def test_etc_lbsim_instance_names_the_instance_its_nat_ports_and_host_key() -> None:
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        address = (where.frontend, where.ssh_port + 1)

        async def read(conn: asyncssh.SSHClientConnection) -> tuple[str, str]:
            done = await conn.run("cat /etc/lbsim-instance", check=True)
            server_key = conn.get_server_host_key()
            assert server_key is not None
            return str(done.stdout), server_key.get_fingerprint("sha256")

        text, seen = await with_client(address, read)
        facts = json.loads(text)
        web_1 = backend(runtime, 1)
    assert facts["scaleSet"] == "web"
    assert facts["instanceId"] == 1
    assert facts["name"] == "web_1"
    assert facts["privateIp"] == web_1.private_ip_address
    assert facts["computerName"] == (web_1.computer_name or "web_1")
    assert facts["hostKey"] == seen == runtime.ssh.fingerprint(web_1)
    assert sorted(facts["natPorts"], key=lambda p: p["backendPort"]) == [
        {
            "frontend": where.frontend,
            "frontendPort": where.ssh_port + 1,
            "backendPort": 22,
            "protocol": "Tcp",
            "rule": "ssh.1",
        },
        {
            "frontend": where.frontend,
            "frontendPort": where.ssh_port + 11,
            "backendPort": 8080,
            "protocol": "Tcp",
            "rule": "admin.1",
        },
    ]


async def test_the_interactive_shell_has_a_prompt_and_exits_with_its_status() -> None:
    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        hostname = backend(runtime, 0).computer_name or "web_0"

        async def shell(conn: asyncssh.SSHClientConnection) -> tuple[str, int | None]:
            process = await conn.create_process(term_type="xterm", term_size=(80, 24))
            process.stdin.write("whoami\nfalse\nnope\nexit 5\n")
            output = await process.stdout.read()
            await process.wait()
            return str(output), process.exit_status

        output, status = await with_client((where.frontend, where.ssh_port), shell)
    assert status == 5
    assert f"{USER}@{hostname}:~$ " in output
    assert f"{USER}\r\n" in output
    assert "nope: not available on an lbsim instance" in output  # (a pty merges stderr)


async def test_the_identification_line_names_the_instance() -> None:
    where = place()
    async with running(plan_for(where), settings(where)):
        stream = await trio.open_tcp_stream(where.frontend, where.ssh_port + 1)
        async with stream:
            line = b""
            with trio.fail_after(10):
                while not line.endswith(b"\r\n"):
                    line += await stream.receive_some(1)
    assert line == b"SSH-2.0-lbsim_web_1 lbsim instance web/1 at 10.0.0.5\r\n"


async def test_a_set_password_refuses_any_other(tmp_path: Path) -> None:
    where = place()
    config = settings(where, password="s3cret")
    async with running(plan_for(where), config) as runtime:
        address = (where.frontend, where.ssh_port)

        async def hostname(conn: asyncssh.SSHClientConnection) -> str:
            return str((await conn.run("hostname", check=True)).stdout)

        try:
            await with_client(address, hostname, password="wrong")
        except asyncssh.PermissionDenied:
            pass
        else:
            raise AssertionError("a wrong password logged in")
        assert runtime.ssh.counts["auth_failed"] >= 1
        assert await with_client(address, hostname, password="s3cret")
        # any key still logs in: the setting names the password, not the methods
        client = await openssh(tmp_path)
        assert (await client.ssh(where.ssh_port, where.frontend, "true")).returncode == 0


async def test_public_key_only_with_authorized_keys_takes_only_those_keys(tmp_path: Path) -> None:
    listed = await openssh(tmp_path / "listed")
    other = await openssh(tmp_path / "other")
    line = (listed.key.with_suffix(".pub")).read_text().strip()
    where = place()
    config = settings(where, auth=SshAuth.PUBLICKEY, authorized_keys=(line,))
    async with running(plan_for(where), config) as runtime:
        ok = await listed.ssh(where.ssh_port, where.frontend, "whoami")
        refused = await other.ssh(where.ssh_port, where.frontend, "whoami")
        assert runtime.ssh.counts["auth_failed"] >= 1
    assert (ok.returncode, ok.stdout) == (0, f"{USER}\n".encode())
    assert refused.returncode == 255
    assert b"Permission denied (publickey)" in refused.stderr


async def test_a_reload_changes_who_may_log_in() -> None:
    """Authentication follows the settings as they are when a connection starts."""
    where = place()
    async with running(plan_for(where), settings(where, password="old")) as runtime:
        address = (where.frontend, where.ssh_port)

        async def hostname(conn: asyncssh.SSHClientConnection) -> str:
            return str((await conn.run("hostname", check=True)).stdout)

        assert await with_client(address, hostname, password="old")
        reloaded = attrs.evolve(runtime.settings, ssh=SshSettings(password="new"))
        await runtime.apply(diff(runtime.plan, runtime.plan), reloaded)
        with pytest.raises(asyncssh.PermissionDenied):
            await with_client(address, hostname, password="old")
        assert await with_client(address, hostname, password="new")


async def test_ssh_ports_add_to_22_and_a_reload_of_them_restarts_the_server() -> None:
    where = place()
    admin = (where.frontend, where.ssh_port + 10)  # web/0's 8080

    async def first_bytes(address: tuple[str, int]) -> bytes:
        stream = await trio.open_tcp_stream(*address)
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with trio.fail_after(30):
                return await stream.receive_some(8)

    async with running(plan_for(where), settings(where)) as runtime:
        assert await first_bytes(admin) == b"HTTP/1.1"  # not an SSH port yet
        reloaded = attrs.evolve(runtime.settings, ssh=SshSettings(ports=frozenset({8080})))
        await runtime.apply(diff(runtime.plan, runtime.plan), reloaded)
        assert await first_bytes(admin) == b"SSH-2.0-"
        assert await first_bytes((where.frontend, where.ssh_port)) == b"SSH-2.0-"  # 22 stays
