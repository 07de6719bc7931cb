"""Protection from scale-in and overprovisioning on a live load balancer (``lbsim.serve``),
on tests/data/vmss-nat.json (scale set ``web`` behind NAT pool ``ssh``, 50000-50009 -> 22):
what the handle reports, the live NAT table, and the listeners that answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

import lbsim
from lbsim.api.session import Session
from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.diff import listen_table
from lbsim.control.fleet import Overprovision, fresh, settle
from lbsim.errors import LbsimError

TEMPLATE = Path(__file__).parents[1] / "data" / "vmss-nat.json"
FRONTEND = "127.77.1.1"
START = 50000
CONFIG = {"frontends": {"lb/fe": FRONTEND}, "sources": {"127.0.0.0/8": "203.0.113.0/24"}}


def _template(tmp_path: Path, capacity: int, ports: int = 10, overprovision: bool = False) -> Path:
    doc = json.loads(TEMPLATE.read_text(encoding="utf-8"))
    for resource in doc["resources"]:
        if resource["name"] == "web":
            resource["sku"]["capacity"] = capacity
            resource["properties"]["overprovision"] = overprovision
        if resource["name"] == "lb":
            pool = resource["properties"]["inboundNatPools"][0]["properties"]
            pool["frontendPortRangeEnd"] = START + ports - 1
    path = tmp_path / "t.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _ports(lb: Session) -> dict[int, int]:
    return {row["instanceId"]: row["frontendPort"] for row in lb.ports() if "instanceId" in row}


def _agree(lb: Session) -> None:
    assert {listener.key for listener in lb.runtime.listeners} == set(listen_table(lb.plan))


async def _banner(port: int) -> bytes:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(FRONTEND, port)
        async with stream:
            return bytes(await stream.receive_some(200))


# --- protection -----------------------------------------------------------------------------
async def test_scale_in_skips_a_protected_instance_and_delete_still_takes_it(
    tmp_path: Path,
) -> None:
    async with lbsim.serve(_template(tmp_path, 3), config=CONFIG) as lb:
        report = await lb.protect("web", 2)
        assert report.instances_changed == ("web/2",)
        assert report.added == report.removed == ()
        assert (await lb.protect("web", 2)).empty  # already protected
        rows = {i["instanceId"]: i["protectFromScaleIn"] for i in lb.instances()}
        assert rows == {0: False, 1: False, 2: True}
        report = await lb.scale("web", 1)  # Default would take 2 and 1: it takes 1 and 0
        assert report.instances_removed == ("web/0", "web/1")
        assert _ports(lb) == {2: START + 2}
        assert (await lb.scale("web", 0)).empty  # only protected ones left: none removed
        assert (await _banner(START + 2)).startswith(b"SSH-2.0-lbsim_web_2")
        _agree(lb)
        report = await lb.delete("web", 2)  # a delete asked for is not blocked
        assert report.instances_removed == ("web/2",)
        assert _ports(lb) == {}


async def test_unprotecting_lets_scale_in_take_it_and_unknown_ones_are_not_found(
    tmp_path: Path,
) -> None:
    async with lbsim.serve(_template(tmp_path, 2), config=CONFIG) as lb:
        await lb.protect("web", 1)
        assert (await lb.protect("web", 1, on=False)).instances_changed == ("web/1",)
        assert (await lb.scale("web", 1)).instances_removed == ("web/1",)
        with pytest.raises(LbsimError) as caught:
            await lb.protect("web", 5)
        assert caught.value.code == "ResourceNotFound"
        with pytest.raises(LbsimError) as caught:
            await lb.protect("db", 0)
        assert caught.value.code == "ResourceNotFound"


def test_the_threaded_handle_protects_too(tmp_path: Path) -> None:
    with lbsim.run_in_thread(_template(tmp_path, 2), config=CONFIG) as lb:
        assert lb.protect("web", 0).instances_changed == ("web/0",)
        assert lb.scale("web", 0).instances_removed == ("web/1",)
        assert [i["protectFromScaleIn"] for i in lb.instances()] == [True]


# --- overprovisioning -----------------------------------------------------------------------
def _seed_with_an_inner_gap(path: Path) -> tuple[int, list[int]]:
    """A seed whose fresh ids skip one below the highest (so the gap shows), and the ids, as
    the pure fleet gives them."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    deployment = load_template(doc, str(path), LoadOptions())
    for seed in range(32):
        state = settle(fresh(deployment, Overprovision(seed))).of("web")
        assert state is not None
        ids = sorted(state.ids)
        if ids != list(range(len(ids))):
            return seed, ids
    raise AssertionError("no seed of 32 leaves a gap")


async def test_overprovisioning_leaves_gaps_in_ids_and_ports_and_a_seed_repeats(
    tmp_path: Path,
) -> None:
    path = _template(tmp_path, 6, ports=10, overprovision=True)
    seed, ids = _seed_with_an_inner_gap(path)
    config = {**CONFIG, "overprovision": True, "overprovision_seed": seed}
    seen: list[dict[int, int]] = []
    for _ in range(2):
        async with lbsim.serve(path, config=config) as lb:
            assert sorted(_ports(lb)) == ids  # 8 made, 2 deleted: ids have a gap
            assert all(port == START + i for i, port in _ports(lb).items())
            report = await lb.scale("web", 8)  # 2 new and 1 extra: the freed ports first
            assert len(report.instances_added) == 2
            ports = _ports(lb)
            assert len(ports) == 8
            assert all(i >= 8 for i in set(ports) - set(ids))
            assert any(port != START + i for i, port in ports.items())
            _agree(lb)
            seen.append(ports)
    assert seen[0] == seen[1]  # the same seed, the same ids and ports


async def test_the_port_range_must_hold_the_extras_and_off_makes_none(tmp_path: Path) -> None:
    path = _template(tmp_path, 6, ports=8, overprovision=True)
    async with lbsim.serve(path, config={**CONFIG, "overprovision": True}) as lb:
        assert len(_ports(lb)) == 6
        before = lb.plan
        with pytest.raises(LbsimError) as caught:  # 2 new and 1 extra: 3 ports, 2 are free
            await lb.scale("web", 8)
        assert caught.value.code == "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"
        assert lb.plan is before
        assert len((await lb.scale("web", 7)).instances_added) == 1  # 1 and 1 extra: fits
    async with lbsim.serve(path, config=CONFIG) as lb:  # the setting is off by default
        assert sorted(_ports(lb)) == [0, 1, 2, 3, 4, 5]
        assert len((await lb.scale("web", 8)).instances_added) == 2
