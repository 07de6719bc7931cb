"""Host keys: one per instance, kept while it stops and starts and across runs with a key
directory, new for a deleted and re-created or a reimaged instance (so ``ssh`` with strict
host key checking refuses it as it would a real VM's)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import attrs
import pytest
from ssh_harness import (
    backend,
    change_to,
    deployment_for,
    openssh,
    place,
    plan_for,
    require,
    running,
    settings,
)

from lbsim.control import fleet
from lbsim.control.plan import plan
from lbsim.control.types import Backend
from lbsim.dataplane.ssh.keys import HostKeys, key_file_name
from lbsim.errors import LbsimError


async def test_a_re_created_instance_has_a_new_key_that_strict_ssh_refuses(
    tmp_path: Path,
) -> None:
    where = place()
    client = await openssh(tmp_path)
    async with running(plan_for(where), settings(where)) as runtime:
        first = await client.ssh(where.ssh_port + 1, where.frontend, "true")  # learns the key
        again = await client.ssh(where.ssh_port + 1, where.frontend, "true", strict=True)
        before = runtime.ssh.fingerprint(backend(runtime, 1))
        await change_to(runtime, plan_for(where, capacity=1))  # web/1 deleted
        await change_to(runtime, plan_for(where, capacity=2))  # and made again
        changed = await client.ssh(where.ssh_port + 1, where.frontend, "true", strict=True)
        after = runtime.ssh.fingerprint(backend(runtime, 1))
    assert (first.returncode, again.returncode) == (0, 0)
    assert changed.returncode == 255
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr
    assert None not in (before, after)
    assert before != after


async def test_stop_and_start_keep_the_key(tmp_path: Path) -> None:
    where = place()
    client = await openssh(tmp_path)
    deployment = deployment_for(where)
    frontends = {"lb/fe": where.frontend}
    fresh = fleet.fresh(deployment)
    stopped = fleet.set_state(fresh, "web", 1, fleet.PowerState.STOPPED)
    async with running(plan(deployment, frontends, fleet=fresh), settings(where)) as runtime:
        assert (await client.ssh(where.ssh_port + 1, where.frontend, "true")).returncode == 0
        before = runtime.ssh.fingerprint(backend(runtime, 1))
        await change_to(runtime, plan(deployment, frontends, fleet=stopped, previous=runtime.plan))
        refused = await client.ssh(where.ssh_port + 1, where.frontend, "true")
        await change_to(runtime, plan(deployment, frontends, fleet=fresh, previous=runtime.plan))
        back = await client.ssh(where.ssh_port + 1, where.frontend, "true", strict=True)
        after = runtime.ssh.fingerprint(backend(runtime, 1))
    assert refused.returncode == 255  # stopped: nothing answers
    assert back.returncode == 0, back.stderr
    assert before == after


async def test_a_reimaged_instance_keeps_its_port_but_strict_ssh_refuses_its_new_key(
    tmp_path: Path,
) -> None:
    where = place()
    client = await openssh(tmp_path)
    deployment = deployment_for(where)
    frontends = {"lb/fe": where.frontend}
    fresh = fleet.fresh(deployment)
    reimaged = fleet.reimage(fresh, "web", 1)
    async with running(plan(deployment, frontends, fleet=fresh), settings(where)) as runtime:
        assert (await client.ssh(where.ssh_port + 1, where.frontend, "true")).returncode == 0
        before = runtime.ssh.fingerprint(backend(runtime, 1))
        other = runtime.ssh.fingerprint(backend(runtime, 0))
        address = backend(runtime, 1).private_ip_address
        new = plan(deployment, frontends, fleet=reimaged, previous=runtime.plan)
        await change_to(runtime, new)
        changed = await client.ssh(where.ssh_port + 1, where.frontend, "true", strict=True)
        after = runtime.ssh.fingerprint(backend(runtime, 1))
        assert backend(runtime, 1).private_ip_address == address
        assert runtime.ssh.fingerprint(backend(runtime, 0)) == other  # web/0 untouched
    assert changed.returncode == 255
    assert b"REMOTE HOST IDENTIFICATION HAS CHANGED" in changed.stderr
    assert before != after


async def test_a_key_directory_keeps_keys_across_runs(tmp_path: Path) -> None:
    where = place()
    keys = tmp_path / "keys"
    client = await openssh(tmp_path / "client")
    seen: list[str | None] = []
    for _ in range(2):
        async with running(plan_for(where), settings(where, host_key_dir=str(keys))) as runtime:
            done = await client.ssh(where.ssh_port, where.frontend, "true", strict=len(seen) > 0)
            assert done.returncode == 0, done.stderr
            seen.append(runtime.ssh.fingerprint(backend(runtime, 0)))
    assert seen[0] == seen[1]
    files = sorted(keys.iterdir())
    assert len(files) == 2  # one per instance
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)


async def test_the_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path) -> None:
    where = place()
    client = await openssh(tmp_path)
    async with running(plan_for(where), settings(where)) as runtime:
        assert (await client.ssh(where.ssh_port, where.frontend, "true")).returncode == 0
        expected = runtime.ssh.fingerprint(backend(runtime, 0))
    import trio

    listed = await trio.run_process(
        [require("ssh-keygen"), "-l", "-f", str(client.known_hosts)], capture_stdout=True
    )
    assert expected is not None
    assert expected.startswith("SHA256:")
    assert expected in listed.stdout.decode()


WEB_1 = Backend("/subscriptions/s/ipconfigurations/ipconfig", "web_1", "10.0.0.5", "web", 1)


def test_a_reimage_makes_a_new_key_and_forgets_the_old(tmp_path: Path) -> None:
    keys = HostKeys(str(tmp_path))
    old = keys.key(WEB_1)
    reimaged = attrs.evolve(WEB_1, generation=1)
    new = keys.key(reimaged)  # (its server starts again before the change is committed)
    keys.remove(keys.keep_only([reimaged], [WEB_1]))
    assert new.get_fingerprint("sha256") != old.get_fingerprint("sha256")
    assert keys.fingerprint(WEB_1) is None
    assert keys.fingerprint(reimaged) == new.get_fingerprint("sha256")
    assert [p.name for p in tmp_path.iterdir()] == [key_file_name(WEB_1.key)]  # one file


def test_a_new_run_keeps_the_key_an_instance_last_had(tmp_path: Path) -> None:
    first = HostKeys(str(tmp_path))
    first.key(WEB_1)
    last = first.key(attrs.evolve(WEB_1, generation=1)).get_fingerprint("sha256")  # reimaged
    again = HostKeys(str(tmp_path))  # lbsim again: its instances start at generation 0
    assert again.key(WEB_1).get_fingerprint("sha256") == last
    assert len(list(tmp_path.iterdir())) == 1
    reimaged = again.key(attrs.evolve(WEB_1, generation=1))  # a reimage in this run: new
    assert reimaged.get_fingerprint("sha256") != last
    assert HostKeys(str(tmp_path)).key(WEB_1).get_fingerprint("sha256") == (
        reimaged.get_fingerprint("sha256")
    )


def test_key_files_are_private_and_a_deleted_instance_s_file_goes(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    keys = HostKeys(str(folder))
    keys.key(WEB_1)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / key_file_name(WEB_1.key)).stat().st_mode) == 0o600
    keys.remove(keys.keep_only([], [WEB_1]))
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("content", [b"not a key\n", b"\x00" * 40], ids=["text", "binary"])
def test_a_corrupt_key_file_is_an_error_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / key_file_name(WEB_1.key)
    path.write_bytes(content)
    with pytest.raises(LbsimError, match=re.escape(str(path))):
        HostKeys(str(tmp_path)).key(WEB_1)


def test_a_key_file_others_may_read_is_used_and_told(tmp_path: Path) -> None:
    made = HostKeys(str(tmp_path)).key(WEB_1)
    path = tmp_path / key_file_name(WEB_1.key)
    path.chmod(0o644)
    told: list[str] = []
    found = HostKeys(str(tmp_path), told.append).key(WEB_1)
    assert found.get_fingerprint("sha256") == made.get_fingerprint("sha256")
    assert told == [f"ssh: host key {path} is readable by others (chmod 600 it)"]


def test_a_deleted_instance_forgets_its_key() -> None:
    keys = HostKeys()
    keys.key(WEB_1)
    keys.keep_only([WEB_1], [WEB_1])
    assert keys.fingerprint(WEB_1) is not None
    keys.keep_only([], [WEB_1])
    assert keys.fingerprint(WEB_1) is None


def test_key_file_names_are_safe() -> None:
    name = key_file_name("/Subscriptions/../x y/ÿ/" + "a" * 300)
    assert "/" not in name
    assert name.isascii()
    assert len(name) < 100
    assert name.endswith(".ed25519")


async def test_lbsim_list_shows_each_host_key(tmp_path: Path) -> None:
    from lbsim.api.livetable import instances_json
    from lbsim.cli.changes import list_rows

    where = place()
    async with running(plan_for(where), settings(where)) as runtime:
        rows = instances_json(runtime.plan, fleet.Fleet(), runtime)
        expected = [runtime.ssh.fingerprint(backend(runtime, i)) for i in (0, 1)]
    assert [row["hostKey"] for row in rows] == expected
    assert all(str(key).startswith("SHA256:") for key in expected)
    headers, table = list_rows(rows)
    assert headers[-1] == "HOST KEY"
    assert [line[-1] for line in table] == expected
