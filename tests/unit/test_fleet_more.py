"""The rest of a scale set's live semantics in the pure fleet: instances protected from
scale-in (``protectionPolicy.protectFromScaleIn``) and overprovisioning (extra instances made
and deleted, which leave gaps in ids and, while they exist, hold NAT ports)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from templates import load, nat_pool, vmss_behind_lb

from lbsim.control.fleet import (
    Fleet,
    Overprovision,
    PowerState,
    delete,
    fresh,
    has_surplus,
    protect,
    reconcile,
    reimage,
    scale,
    set_state,
    settle,
)
from lbsim.control.plan import plan
from lbsim.control.types import Plan
from lbsim.errors import LbsimError, TemplateInvalid
from lbsim.model import Deployment, VirtualMachineScaleSet

Json = dict[str, Any]
START = 50000


def _deployment(
    capacity: int = 4,
    policy: str | None = None,
    *,
    overprovision: bool = True,
    ports: int = 120,
) -> Deployment:
    doc = vmss_behind_lb(capacity, nat_pools=[nat_pool("ssh", START, START + ports - 1, 22)])
    vmss = next(r for r in doc["resources"] if r["name"] == "vmss")
    vmss["properties"]["overprovision"] = overprovision
    if policy is not None:
        vmss["properties"]["scaleInPolicy"] = {"rules": [policy]}
    return load(doc)


def _vmss(deployment: Deployment) -> VirtualMachineScaleSet:
    return deployment.virtual_machine_scale_sets[0]


def _ids(fleet: Fleet) -> list[int]:
    state = fleet.of("vmss")
    assert state is not None
    return sorted(state.ids)


def _protected(fleet: Fleet, *ids: int) -> Fleet:
    for instance_id in ids:
        fleet = protect(fleet, "vmss", instance_id)
    return fleet


# --- protection from scale-in ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("policy", "kept"),
    [(None, [0, 3]), ("NewestVM", [0, 3]), ("OldestVM", [0, 3])],
)
def test_scale_in_skips_protected_instances(policy: str | None, kept: list[int]) -> None:
    deployment = _deployment(4, policy)
    fleet = _protected(fresh(deployment), 0, 3)
    # Default and NewestVM would take 3 and 2, OldestVM 0 and 1: each takes the next ones
    assert _ids(scale(fleet, _vmss(deployment), 2)) == kept


def test_scale_in_removes_what_it_can_when_protected_instances_remain() -> None:
    deployment = _deployment(4)
    fleet = _protected(fresh(deployment), 1, 2)
    assert _ids(scale(fleet, _vmss(deployment), 0)) == [1, 2]
    everyone = _protected(fresh(deployment), 0, 1, 2, 3)
    assert scale(everyone, _vmss(deployment), 1) == everyone


def test_protection_can_be_lifted_and_scale_in_takes_the_instance_again() -> None:
    deployment = _deployment(3)
    fleet = protect(_protected(fresh(deployment), 2), "vmss", 2, on=False)
    assert _ids(scale(fleet, _vmss(deployment), 2)) == [0, 1]


def test_a_protected_instance_can_be_deleted_stopped_and_started() -> None:
    deployment = _deployment(3)
    fleet = _protected(fresh(deployment), 1)
    stopped = set_state(fleet, "vmss", 1, PowerState.STOPPED)
    state = stopped.of("vmss")
    assert state is not None
    found = state.find(1)
    assert found is not None
    assert (found.protected, found.state) == (True, PowerState.STOPPED)
    assert _ids(delete(fleet, "vmss", [1])) == [0, 2]


def test_a_reload_that_lowers_the_capacity_skips_protected_instances_too() -> None:
    fleet = _protected(fresh(_deployment(4)), 3)
    assert _ids(reconcile(fleet, _deployment(2))) == [0, 3]
    same = reconcile(fleet, _deployment(4))
    assert same == fleet  # capacity unchanged: the protection stays


def test_protecting_an_unknown_instance_or_scale_set_is_not_found() -> None:
    fleet = fresh(_deployment(2))
    with pytest.raises(LbsimError) as caught:
        protect(fleet, "vmss", 7)
    assert caught.value.code == "ResourceNotFound"
    assert "instances: 0, 1" in caught.value.message
    with pytest.raises(LbsimError) as caught:
        protect(fleet, "web", 0)
    assert caught.value.code == "ResourceNotFound"


# --- overprovisioning --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("count", "extra"), [(0, 0), (1, 1), (5, 1), (6, 2), (10, 2), (11, 3), (100, 20)]
)
def test_extras_are_a_fifth_more_rounded_up_and_at_least_one(count: int, extra: int) -> None:
    assert Overprovision().extras_for(count) == extra


@pytest.mark.parametrize("seed", range(8))
def test_a_fresh_overprovisioned_scale_set_keeps_capacity_instances_and_skips_ids(
    seed: int,
) -> None:
    with_extras = fresh(_deployment(6), Overprovision(seed))
    assert has_surplus(with_extras)
    assert len(_ids(with_extras)) == 8  # 6 and 2 extra, all made before any is deleted
    settled = settle(with_extras)
    assert not has_surplus(settled)
    ids = _ids(settled)
    assert len(ids) == 6
    assert set(ids) <= set(range(8))
    state = settled.of("vmss")
    assert state is not None
    assert state.next_id == 8  # the extras' ids are never given again
    assert fresh(_deployment(6), Overprovision(seed)) == with_extras  # same seed, same ids


def test_some_seed_leaves_a_gap_inside_the_ids_and_seeds_differ() -> None:
    chosen = {tuple(_ids(settle(fresh(_deployment(6), Overprovision(s))))) for s in range(8)}
    assert len(chosen) > 1
    assert any(ids != tuple(range(6)) for ids in chosen)


def test_scale_out_overprovisions_only_the_new_instances() -> None:
    deployment = _deployment(2)
    fleet = fresh(deployment)
    grown = scale(fleet, _vmss(deployment), 5, Overprovision(3))
    assert _ids(grown)[:2] == [0, 1]
    assert len(_ids(grown)) == 6  # 3 new and 1 extra
    surplus = [i.instance_id for i in grown.scale_sets["vmss"].instances if i.surplus]
    assert len(surplus) == 1
    assert surplus[0] >= 2
    assert len(_ids(settle(grown))) == 5


def test_a_scale_set_whose_template_says_no_overprovision_gets_no_extras() -> None:
    deployment = _deployment(4, overprovision=False)
    assert not has_surplus(fresh(deployment, Overprovision(1)))
    assert not has_surplus(scale(fresh(deployment), _vmss(deployment), 9, Overprovision(1)))


def test_scale_in_and_the_off_setting_make_no_extras() -> None:
    deployment = _deployment(4)
    assert not has_surplus(fresh(deployment))
    assert not has_surplus(scale(fresh(deployment), _vmss(deployment), 2, Overprovision()))


def _two_step(deployment: Deployment, fleet: Fleet, previous: Plan | None = None) -> Plan:
    """As the live load balancer plans it: the extras hold ports while the others take theirs,
    then the plan without them keeps everyone's."""
    interim = plan(deployment, fleet=fleet, previous=previous)
    return plan(deployment, fleet=settle(fleet), previous=interim)


def _ports(planned: Plan) -> dict[int, int]:
    return {
        e.backend.instance_id: e.frontend_port
        for e in planned.nat
        if e.backend is not None and e.backend.instance_id is not None
    }


def test_the_extras_hold_nat_ports_so_later_ports_are_not_start_plus_id() -> None:
    deployment = _deployment(6)
    vmss = _vmss(deployment)
    for seed in range(8):
        first = fresh(deployment, Overprovision(seed))
        running = _two_step(deployment, first)
        ports = _ports(running)
        # a fresh set: the extras took their ports in id order, the kept ones keep start + id
        assert sorted(ports) == _ids(settle(first))
        assert all(port == START + i for i, port in ports.items())
        # the extras' ports are free again: the next scale-out takes them, below start + id
        grown = scale(settle(first), vmss, 8, Overprovision(seed))
        held = _ports(_two_step(deployment, grown, running))
        assert all(held[i] == START + i for i in ports)  # nobody's port moved
        assert len(set(held.values())) == 8
        new = [i for i in held if i not in ports]
        assert all(i >= 8 for i in new)
        assert any(held[i] != START + i for i in new)


def test_the_port_range_must_hold_the_extras_too() -> None:
    deployment = _deployment(5, ports=5)  # 5 ports: enough without extras only
    assert len(plan(deployment).nat) == 5
    with pytest.raises(TemplateInvalid) as caught:
        plan(deployment, fleet=fresh(deployment, Overprovision()))
    codes = [p.code for p in caught.value.problems]
    assert codes == ["InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"]


def test_a_reimage_keeps_the_instance_but_counts_a_new_generation() -> None:
    fleet = fresh(_deployment(3))
    once = reimage(fleet, "vmss", 1)
    twice = reimage(once, "vmss", 1)
    before = {i.instance_id: i for i in fleet.instances("vmss") or ()}
    after = {i.instance_id: i for i in twice.instances("vmss") or ()}
    assert after.keys() == before.keys()
    assert after[1].generation == 2
    assert attrs.evolve(after[1], generation=0) == before[1]  # id, state, age kept
    assert after[0] == before[0]
    with pytest.raises(LbsimError) as caught:
        reimage(fleet, "vmss", 7)
    assert caught.value.code == "ResourceNotFound"
