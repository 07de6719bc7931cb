"""SFTP and scp into an instance's temporary home: a file copied in comes back the same,
lands in that instance's home only (chrooted), and the home is gone once lbsim stops."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ssh_harness import USER, openssh, place, plan_for, running, settings


@pytest.mark.parametrize("legacy", [False, True], ids=["sftp", "scp-O"])
async def test_scp_copies_a_file_in_and_back(tmp_path: Path, legacy: bool) -> None:
    where = place()
    client = await openssh(tmp_path / "client")
    sent = tmp_path / "sent.bin"
    sent.write_bytes(os.urandom(200_000))
    back = tmp_path / "back.bin"
    async with running(plan_for(where), settings(where)) as runtime:
        remote = f"{USER}@{where.frontend}:"
        put = await client.scp(where.ssh_port + 1, str(sent), f"{remote}copied.bin", legacy=legacy)
        assert put.returncode == 0, put.stderr
        got = await client.scp(where.ssh_port + 1, f"{remote}copied.bin", str(back), legacy=legacy)
        assert got.returncode == 0, got.stderr
        homes = {i.label: i.home for i in runtime.ssh._instances}
        assert (homes["web/1"] / "copied.bin").read_bytes() == sent.read_bytes()
        assert not (homes["web/0"] / "copied.bin").exists()  # each instance has its own
        outside = await client.scp(where.ssh_port, f"{remote}/etc/passwd", str(tmp_path / "x"))
        assert outside.returncode != 0  # the home is the root: nothing outside it is seen
    assert back.read_bytes() == sent.read_bytes()
    assert not any(home.exists() for home in homes.values())  # removed at exit
