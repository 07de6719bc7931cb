"""SFTP and scp into an instance's temporary home: a file copied in comes back the same,
lands in that instance's home only, is seen through every SSH port of the instance, never
leads outside the home (not even through a symbolic link), and is gone once lbsim stops.

Homes are found on disk: each test has its own temporary folder (``tempfile.tempdir``)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from ssh_harness import USER, openssh, place, plan_for, running, settings, with_client

from lbsim.dataplane.ssh.lib import asyncssh


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temporary folder lbsim makes homes in, for this test alone."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _copies(temp: Path, name: str) -> list[Path]:
    return _listing(temp, f"lbsim-ssh-*/*/{name}")


@pytest.mark.parametrize("legacy", [False, True], ids=["sftp", "scp-O"])
async def test_scp_copies_a_file_in_and_back(tmp_path: Path, temp: Path, legacy: bool) -> None:
    where = place()
    client = await openssh(tmp_path / "client")
    sent = tmp_path / "sent.bin"
    sent.write_bytes(os.urandom(200_000))
    back = tmp_path / "back.bin"
    async with running(plan_for(where), settings(where)):
        remote = f"{USER}@{where.frontend}:"
        put = await client.scp(where.ssh_port + 1, str(sent), f"{remote}copied.bin", legacy=legacy)
        assert put.returncode == 0, put.stderr
        got = await client.scp(where.ssh_port + 1, f"{remote}copied.bin", str(back), legacy=legacy)
        assert got.returncode == 0, got.stderr
        copies = _copies(temp, "copied.bin")
        assert len(copies) == 1  # web/1's home only: each instance has its own
        assert copies[0].read_bytes() == sent.read_bytes()
        outside = await client.scp(where.ssh_port, f"{remote}/etc/passwd", str(tmp_path / "x"))
        assert outside.returncode != 0  # the home is the root: nothing outside it is seen
    assert back.read_bytes() == sent.read_bytes()
    assert _listing(temp) == []  # every home removed at exit


async def test_one_home_per_instance_shared_by_its_ssh_ports(tmp_path: Path, temp: Path) -> None:
    """With ``ssh_ports`` naming 8080, port 22 still speaks SSH, and a file copied in through
    port 22 is there through 8080. No home is made before the first copy."""
    where = place()
    client = await openssh(tmp_path / "client")
    sent = tmp_path / "sent.txt"
    sent.write_text("through 22\n")
    async with running(plan_for(where), settings(where, ports=frozenset({8080}))):
        logged_in = await client.ssh(where.ssh_port + 1, where.frontend, "true")
        assert logged_in.returncode == 0, logged_in.stderr
        assert _listing(temp) == []  # a login alone makes no home
        remote = f"{USER}@{where.frontend}:copied.txt"
        put = await client.scp(where.ssh_port + 1, str(sent), remote)
        assert put.returncode == 0, put.stderr

        async def read(conn: asyncssh.SSHClientConnection) -> bytes:
            async with conn.start_sftp_client() as sftp:
                return await _read(sftp, "copied.txt")

        assert await with_client((where.frontend, where.ssh_port + 11), read) == b"through 22\n"
        assert len(_copies(temp, "copied.txt")) == 1


async def test_a_symbolic_link_never_leads_outside_the_home(temp: Path) -> None:
    """A link made over SFTP is refused (``../../x`` in ``/a/b``, then renamed to ``/l``,
    would point outside the home: here, a link as deep as its folder is); one that is there
    anyway (made on the host) is not followed out of it."""
    where = place()
    secret = temp / "x"
    secret.write_text("outside\n")

    deep = "/d" * 30  # (as deep as any home: renamed to /, the link leads to the secret)
    target = "../" * 30 + str(secret).lstrip("/")

    async def attack(conn: asyncssh.SSHClientConnection) -> list[str]:
        refused = []
        async with conn.start_sftp_client() as sftp:
            await sftp.makedirs(deep)
            for step in (
                sftp.symlink(target, f"{deep}/l"),  # (inside the home, as named)
                sftp.rename(f"{deep}/l", "/l"),
                sftp.link("/a", "/h"),
                _read(sftp, "/l"),
            ):
                try:
                    await step
                except asyncssh.SFTPError as error:
                    refused.append(type(error).__name__)
        return refused

    async def follow(conn: asyncssh.SSHClientConnection) -> list[str]:
        refused = []
        async with conn.start_sftp_client() as sftp:
            for step in (_read(sftp, "/out"), sftp.rename("/out", "/a/moved"), sftp.stat("/out")):
                try:
                    await step
                except asyncssh.SFTPError as error:
                    refused.append(type(error).__name__)
        return refused

    async with running(plan_for(where), settings(where)):
        address = (where.frontend, where.ssh_port)
        assert await with_client(address, attack) == [
            "SFTPOpUnsupported",
            "SFTPNoSuchFile",
            "SFTPOpUnsupported",
            "SFTPNoSuchFile",
        ]
        (home,) = _listing(temp, "lbsim-ssh-*/*")
        _link(home / "out", "../../x")  # (as a host's user could)
        assert await with_client(address, follow) == ["SFTPPermissionDenied"] * 3
    assert secret.read_text() == "outside\n"


async def _read(sftp: asyncssh.SFTPClient, path: str) -> bytes:
    async with sftp.open(path, "rb") as f:
        data = await f.read()
    assert isinstance(data, bytes)
    return data


def _listing(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(folder.glob(pattern))


def _link(path: Path, to: str) -> None:
    path.symlink_to(to)
