"""The live fleet of scale-set instances: ids as Azure gives them (fresh, scale-out above the
highest id ever used, scale-in by ``scaleInPolicy``), stop, start and delete, unknown names,
and a reload of the template (reconcile)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st
from templates import load, scale_set, template, vmss_behind_lb

from lbsim.control.fleet import (
    Fleet,
    PowerState,
    delete,
    fresh,
    reconcile,
    scale,
    set_state,
)
from lbsim.errors import LbsimError
from lbsim.model import Deployment, VirtualMachineScaleSet

Json = dict[str, Any]


def _doc(capacity: int = 3, policy: list[str] | None = None) -> Json:
    doc = vmss_behind_lb(capacity)
    if policy is not None:
        vmss = next(r for r in doc["resources"] if r["name"] == "vmss")
        vmss["properties"]["scaleInPolicy"] = {"rules": policy}
    return doc


def _deployment(capacity: int = 3, policy: list[str] | None = None) -> Deployment:
    return load(_doc(capacity, policy))


def _vmss(deployment: Deployment, name: str = "vmss") -> VirtualMachineScaleSet:
    return next(v for v in deployment.virtual_machine_scale_sets if v.name == name)


def _ids(fleet: Fleet, name: str = "vmss") -> list[int]:
    state = fleet.of(name)
    assert state is not None
    return sorted(state.ids)


# --- fresh and scale ---------------------------------------------------------------------------
def test_a_fresh_fleet_has_instances_zero_to_capacity_minus_one() -> None:
    fleet = fresh(_deployment(4))
    assert _ids(fleet) == [0, 1, 2, 3]
    state = fleet.of("VMSS")  # scale-set names are case-insensitive
    assert state is not None
    assert all(i.state is PowerState.RUNNING for i in state.instances)
    assert (state.next_id, state.template_capacity) == (4, 4)


def test_a_fresh_scale_set_of_capacity_zero_has_no_instances() -> None:
    fleet = fresh(_deployment(0))
    assert _ids(fleet) == []
    assert fleet.instances("vmss") == ()
    assert fleet.instances("other") is None  # unknown to the fleet: not the same as empty


def test_scale_out_continues_above_the_highest_id_ever_used() -> None:
    deployment = _deployment(3)
    vmss = _vmss(deployment)
    fleet = scale(fresh(deployment), vmss, 1)
    assert _ids(fleet) == [0]
    fleet = scale(fleet, vmss, 3)
    assert _ids(fleet) == [0, 3, 4]
    assert _ids(scale(fleet, vmss, 5)) == [0, 3, 4, 5, 6]


def test_scaling_to_the_same_capacity_changes_nothing() -> None:
    deployment = _deployment(3)
    fleet = fresh(deployment)
    assert scale(fleet, _vmss(deployment), 3) == fleet


def test_a_negative_capacity_is_an_invalid_parameter() -> None:
    deployment = _deployment(3)
    with pytest.raises(LbsimError) as caught:
        scale(fresh(deployment), _vmss(deployment), -1)
    assert caught.value.code == "InvalidParameter"
    assert "-1" in caught.value.message


# --- scale-in policies -------------------------------------------------------------------------
def _scaled_in(policy: list[str] | None) -> list[int]:
    """Ids left after 0..2 fresh, scale-out to 5 (3, 4), one stop, then scale-in to 3."""
    deployment = _deployment(3, policy)
    vmss = _vmss(deployment)
    fleet = scale(fresh(deployment), vmss, 5)
    fleet = set_state(fleet, "vmss", 4, PowerState.STOPPED)  # power state is no criterion
    return _ids(scale(fleet, vmss, 3))


def test_default_scale_in_removes_the_highest_ids() -> None:
    assert _scaled_in(None) == [0, 1, 2]
    assert _scaled_in(["Default"]) == [0, 1, 2]


def test_newest_vm_scale_in_removes_the_most_recently_made() -> None:
    # Within one scale set ids grow with creation, so the newest are the highest ids: what
    # tells NewestVM from OldestVM is the other end.
    assert _scaled_in(["NewestVM"]) == [0, 1, 2]


def test_oldest_vm_scale_in_removes_the_earliest_made() -> None:
    assert _scaled_in(["OldestVM"]) == [2, 3, 4]


def test_oldest_vm_removes_the_survivors_of_the_first_deployment_first() -> None:
    deployment = _deployment(2, ["OldestVM"])
    vmss = _vmss(deployment)
    fleet = scale(fresh(deployment), vmss, 4)  # 0 1 2 3
    fleet = scale(fleet, vmss, 3)  # OldestVM: 0 goes
    assert _ids(fleet) == [1, 2, 3]
    fleet = scale(fleet, vmss, 4)  # 4 is made
    assert _ids(scale(fleet, vmss, 2)) == [3, 4]


@pytest.mark.parametrize(
    ("rules", "policy"),
    [
        (None, "Default"),
        ([], "Default"),
        (["Default"], "Default"),
        (["NewestVM"], "NewestVM"),
        (["OldestVM"], "OldestVM"),
        (["newestvm"], "NewestVM"),  # Azure reads the rule case-insensitively
        (["OLDESTVM", "Default"], "OldestVM"),  # the first rule is the one applied
    ],
)
def test_the_loader_reads_scale_in_policy_rules(rules: list[str] | None, policy: str) -> None:
    assert _vmss(_deployment(3, rules)).scale_in_policy == policy


# --- stop, start, delete -----------------------------------------------------------------------
def test_stop_and_start_keep_the_id_and_the_instance_count() -> None:
    fleet = fresh(_deployment(3))
    stopped = set_state(fleet, "vmss", 1, PowerState.STOPPED)
    state = stopped.of("vmss")
    assert state is not None
    assert [(i.instance_id, i.state) for i in state.instances] == [
        (0, PowerState.RUNNING),
        (1, PowerState.STOPPED),
        (2, PowerState.RUNNING),
    ]
    assert not state.instances[1].running
    deallocated = set_state(stopped, "vmss", 1, PowerState.DEALLOCATED)
    started = set_state(deallocated, "vmss", 1, PowerState.RUNNING)
    assert started == fleet  # same ids, same creation order


def test_delete_removes_exactly_that_id_and_it_is_never_given_again() -> None:
    deployment = _deployment(3)
    vmss = _vmss(deployment)
    fleet = delete(fresh(deployment), "vmss", [1])
    assert _ids(fleet) == [0, 2]
    fleet = scale(fleet, vmss, 3)
    assert _ids(fleet) == [0, 2, 3]
    fleet = delete(fleet, "vmss", [3, 0])
    assert _ids(scale(fleet, vmss, 3)) == [2, 4, 5]


def test_deleting_every_instance_leaves_an_empty_scale_set() -> None:
    deployment = _deployment(2)
    fleet = delete(fresh(deployment), "vmss", [0, 1])
    assert fleet.instances("vmss") == ()
    assert _ids(scale(fleet, _vmss(deployment), 1)) == [2]


# --- unknown names -----------------------------------------------------------------------------
def _two_scale_sets() -> Deployment:
    return load(template(scale_set("web", 2), scale_set("api", 1)))


def test_an_unknown_scale_set_is_not_found_and_the_message_names_the_known_ones() -> None:
    deployment = _two_scale_sets()
    fleet = fresh(deployment)
    other = attrs.evolve(_vmss(deployment, "web"), name="db")
    calls: list[Callable[[], Fleet]] = [
        lambda: set_state(fleet, "db", 0, PowerState.STOPPED),
        lambda: delete(fleet, "db", [0]),
        lambda: scale(fleet, other, 3),
    ]
    for call in calls:
        with pytest.raises(LbsimError) as caught:
            call()
        assert caught.value.code == "ResourceNotFound"
        assert "'db'" in caught.value.message
        assert "api, web" in caught.value.message


def test_the_not_found_message_spells_scale_sets_as_the_template_does() -> None:
    fleet = fresh(load(template(scale_set("WebTier", 1))))
    with pytest.raises(LbsimError) as caught:
        set_state(fleet, "db", 0, PowerState.STOPPED)
    assert caught.value.code == "ResourceNotFound"
    assert "(scale sets: WebTier)" in caught.value.message
    with pytest.raises(LbsimError) as caught:
        set_state(fleet, "webtier", 5, PowerState.STOPPED)  # found case-insensitively
    assert "(instances: 0)" in caught.value.message


def test_an_unknown_instance_is_not_found_and_the_message_names_the_instances() -> None:
    fleet = delete(fresh(_deployment(3)), "vmss", [1])
    calls: list[Callable[[], Fleet]] = [
        lambda: set_state(fleet, "vmss", 1, PowerState.RUNNING),
        lambda: delete(fleet, "vmss", [2, 1]),
        lambda: set_state(fleet, "vmss", 7, PowerState.STOPPED),
    ]
    for call in calls:
        with pytest.raises(LbsimError) as caught:
            call()
        assert caught.value.code == "ResourceNotFound"
        assert "'vmss'" in caught.value.message
        assert "(instances: 0, 2)" in caught.value.message


def test_a_failed_delete_deletes_nothing() -> None:
    fleet = fresh(_deployment(3))
    with pytest.raises(LbsimError):
        delete(fleet, "vmss", [0, 9])
    assert _ids(fleet) == [0, 1, 2]  # values: the fleet passed in is never changed


# --- reconcile (a reload of the template) -----------------------------------------------------
def test_reconcile_keeps_live_changes_when_the_template_capacity_is_unchanged() -> None:
    deployment = _deployment(3)
    fleet = scale(fresh(deployment), _vmss(deployment), 5)
    fleet = set_state(fleet, "vmss", 3, PowerState.STOPPED)
    fleet = delete(fleet, "vmss", [0])
    reloaded = reconcile(fleet, _deployment(3))
    assert reloaded == fleet
    assert _ids(reloaded) == [1, 2, 3, 4]


def test_reconcile_applies_a_changed_template_capacity() -> None:
    fleet = scale(fresh(_deployment(3)), _vmss(_deployment(3)), 5)  # 0..4 live
    smaller = reconcile(fleet, _deployment(2))
    assert _ids(smaller) == [0, 1]  # Default: the highest ids go
    state = smaller.of("vmss")
    assert state is not None
    assert state.template_capacity == 2
    assert reconcile(smaller, _deployment(2)) == smaller  # a second reload: no change
    larger = reconcile(smaller, _deployment(4))
    assert _ids(larger) == [0, 1, 5, 6]  # above every id ever used


def test_reconcile_uses_the_reloaded_templates_scale_in_policy() -> None:
    fleet = fresh(_deployment(4))
    assert _ids(reconcile(fleet, _deployment(2, ["OldestVM"]))) == [2, 3]


def test_reconcile_drops_scale_sets_the_template_lost_and_starts_new_ones_fresh() -> None:
    fleet = fresh(load(template(scale_set("web", 2), scale_set("api", 1))))
    fleet = scale(fleet, _vmss(_two_scale_sets(), "web"), 3)
    reloaded = reconcile(fleet, load(template(scale_set("web", 2), scale_set("db", 2))))
    assert sorted(reloaded.scale_sets) == ["db", "web"]
    assert _ids(reloaded, "web") == [0, 1, 2]  # template capacity unchanged: kept
    assert _ids(reloaded, "db") == [0, 1]


# --- laws --------------------------------------------------------------------------------------
_DEPLOYMENT = _deployment(2)
_VMSS = _vmss(_DEPLOYMENT)

# An operation: ("scale", capacity) or (verb, k) acting on the k-th live instance, if any.
_OPERATION = st.one_of(
    st.tuples(st.just("scale"), st.integers(0, 6)),
    st.tuples(st.sampled_from(["stop", "start", "deallocate", "delete"]), st.integers(0, 20)),
)
_POWER = {
    "stop": PowerState.STOPPED,
    "start": PowerState.RUNNING,
    "deallocate": PowerState.DEALLOCATED,
}


@given(st.lists(_OPERATION, max_size=25))
def test_any_sequence_of_operations_keeps_ids_unique_and_never_reuses_one(
    operations: list[tuple[str, int]],
) -> None:
    fleet = fresh(_DEPLOYMENT)
    capacity, deleted = _VMSS.capacity, 0
    ever, gone = set(_ids(fleet)), set[int]()
    for verb, n in operations:
        before = _ids(fleet)
        if verb == "scale":
            fleet, capacity, deleted = scale(fleet, _VMSS, n), n, 0
        elif before:
            target = before[n % len(before)]
            if verb == "delete":
                fleet, deleted = delete(fleet, "vmss", [target]), deleted + 1
            else:
                fleet = set_state(fleet, "vmss", target, _POWER[verb])
                state = fleet.of("vmss")
                assert state is not None
                found = state.find(target)
                assert found is not None
                assert found.state is _POWER[verb]
        ids = _ids(fleet)
        assert len(ids) == len(set(ids))
        new = set(ids) - set(before)
        assert all(i > max(ever, default=-1) for i in new)  # above every id ever used
        ever |= new
        gone |= set(before) - set(ids)
        assert not gone & set(ids)  # an id that left never comes back
        assert len(ids) == capacity - deleted
