"""The live state of a deployment's scale sets: which instances exist, in what power state,
and in what order they were made. Pure values and functions: scaling, stopping, starting and
deleting each give a new :class:`Fleet`, and :func:`lbsim.control.plan.plan` turns a
deployment and a fleet into the Plan the data plane runs.

Azure's rules, as its scale-set documentation gives them
(learn.microsoft.com/azure/virtual-machine-scale-sets/virtual-machine-scale-sets-faq and
.../virtual-machine-scale-sets-scale-in-policy):

- a fresh deployment has instances ``0 .. capacity-1``;
- scale-out gives new instances ids above the highest id ever used (uniform scale sets never
  reuse an id);
- scale-in removes instances as the scale set's ``scaleInPolicy`` says: ``Default`` the
  highest ids first, ``NewestVM`` the most recently made, ``OldestVM`` the earliest made;
- a stopped (or deallocated) instance keeps its id, private address and NAT ports;
- an instance with ``protectionPolicy.protectFromScaleIn`` is skipped by scale-in, but may be
  deleted, stopped or started explicitly
  (learn.microsoft.com/azure/virtual-machine-scale-sets/virtual-machine-scale-sets-instance-protection);
- with overprovisioning (:class:`Overprovision`), creating instances makes a few extra ones
  that are deleted at once: ids keep gaps, and the extras held NAT ports meanwhile.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from enum import Enum

import attrs

from lbsim.errors import LbsimError
from lbsim.model import Deployment, VirtualMachineScaleSet

# A scale set's largest capacity (Azure: 1,000 instances for platform images;
# learn.microsoft.com/azure/virtual-machine-scale-sets/virtual-machine-scale-sets-placement-groups).
MAX_CAPACITY = 1000


class PowerState(Enum):
    """An instance's power state, as Azure's instance view names it (``PowerState/...``)."""

    RUNNING = "running"
    STOPPED = "stopped"
    DEALLOCATED = "deallocated"


@attrs.frozen
class Instance:
    """One scale-set instance: its id, power state, and when it was made (a counter)."""

    instance_id: int
    state: PowerState = PowerState.RUNNING
    made: int = 0  # creation order across the fleet's life: NewestVM / OldestVM
    protected: bool = False  # protectionPolicy.protectFromScaleIn
    surplus: bool = False  # an overprovisioned extra, deleted once the others exist
    generation: int = 0  # reimages so far: each gives a new OS disk (a new SSH host key)

    @property
    def running(self) -> bool:
        return self.state is PowerState.RUNNING


@attrs.frozen
class ScaleSetState:
    """The instances of one scale set, by id, and the next id scale-out gives."""

    instances: tuple[Instance, ...]
    next_id: int
    template_capacity: int  # the capacity the template asked for when this state was made
    name: str = ""  # as the template spells it

    def find(self, instance_id: int) -> Instance | None:
        return next((i for i in self.instances if i.instance_id == instance_id), None)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(i.instance_id for i in self.instances)


@attrs.frozen
class Fleet:
    """Every scale set's live state, keyed by lower-cased scale-set name."""

    scale_sets: Mapping[str, ScaleSetState] = attrs.field(factory=dict)
    made: int = 0  # instances made so far (the creation counter)

    def of(self, name: str) -> ScaleSetState | None:
        return self.scale_sets.get(name.lower())

    def instances(self, name: str) -> tuple[Instance, ...] | None:
        """The live instances of a scale set, None for one the fleet does not know (a
        deployment's fresh capacity applies then)."""
        state = self.of(name)
        return None if state is None else state.instances


@attrs.frozen
class Overprovision:
    """Azure's overprovisioning of a scale set whose ``overprovision`` is true (its default):
    when it creates instances it makes extra ones and deletes them once the requested ones
    succeed (learn.microsoft.com/azure/virtual-machine-scale-sets/
    virtual-machine-scale-sets-design-overview). Azure does not document how many or which;
    lbsim makes 20% more, rounded up, at least one, and deletes a random choice of that many
    of the new instances, drawn from ``seed``, the scale set and the first new id (so one
    seed always gives the same ids)."""

    seed: int = 0

    def extras_for(self, count: int) -> int:
        return max(1, math.ceil(count * 0.2)) if count > 0 else 0

    def doomed(self, scale_set: str, new_ids: list[int], extra: int) -> set[int]:
        chooser = random.Random(f"{self.seed}/{scale_set.lower()}/{new_ids[0]}")  # noqa: S311
        return set(chooser.sample(new_ids, extra))


def fresh(deployment: Deployment, over: Overprovision | None = None) -> Fleet:
    """A new deployment's fleet: every scale set with instances ``0 .. capacity-1`` (with
    ``over``, that many instances that keep gaps and the surplus ones to delete)."""
    return reconcile(Fleet(), deployment, over)


def settle(fleet: Fleet) -> Fleet:
    """The fleet once the overprovisioned extras are deleted (their ids never come back)."""
    states = {
        key: attrs.evolve(state, instances=tuple(i for i in state.instances if not i.surplus))
        for key, state in fleet.scale_sets.items()
    }
    return Fleet(states, fleet.made)


def has_surplus(fleet: Fleet) -> bool:
    return any(i.surplus for s in fleet.scale_sets.values() for i in s.instances)


def reconcile(fleet: Fleet, deployment: Deployment, over: Overprovision | None = None) -> Fleet:
    """The fleet after (re)loading ``deployment``: scale sets the template no longer has are
    gone, new ones start fresh, and a scale set whose template capacity changed is scaled to
    it; one whose template capacity did not change keeps its live instances (so scale and
    lifecycle changes made at run time survive a reload)."""
    states: dict[str, ScaleSetState] = {}
    made = fleet.made
    for vmss in deployment.virtual_machine_scale_sets:
        state = fleet.of(vmss.name)
        if state is None:
            state = ScaleSetState((), 0, vmss.capacity, vmss.name)
            state, made = _grow(state, vmss, vmss.capacity, made, over)
        elif state.template_capacity != vmss.capacity:
            state, made = _resize(state, vmss, vmss.capacity, made, over)
            state = attrs.evolve(state, template_capacity=vmss.capacity)
        states[vmss.name.lower()] = attrs.evolve(state, name=vmss.name)
    return Fleet(states, made)


def scale(
    fleet: Fleet, vmss: VirtualMachineScaleSet, capacity: int, over: Overprovision | None = None
) -> Fleet:
    """The fleet with ``vmss`` at ``capacity`` instances, or as close as scale-in can come
    without removing instances protected from it (Azure skips them, and documents no error)."""
    if not 0 <= capacity <= MAX_CAPACITY:
        raise LbsimError(
            "InvalidParameter",
            f"The capacity {capacity} of scale set '{vmss.name}' is out of range: a scale set "
            f"holds 0 to {MAX_CAPACITY} instances.",
        )
    state = _known(fleet, vmss.name)
    state, made = _resize(state, vmss, capacity, fleet.made, over)
    return _with(fleet, vmss.name, state, made)


def protect(fleet: Fleet, scale_set: str, instance_id: int, on: bool = True) -> Fleet:
    """The fleet with one instance protected from scale-in (``on``) or not."""
    state = _known(fleet, scale_set)
    _instance(state, scale_set, instance_id)
    instances = tuple(
        attrs.evolve(i, protected=on) if i.instance_id == instance_id else i
        for i in state.instances
    )
    return _with(fleet, scale_set, attrs.evolve(state, instances=instances), fleet.made)


def set_state(fleet: Fleet, scale_set: str, instance_id: int, power: PowerState) -> Fleet:
    """The fleet with one instance in the power state ``power``."""
    state = _known(fleet, scale_set)
    _instance(state, scale_set, instance_id)
    instances = tuple(
        attrs.evolve(i, state=power) if i.instance_id == instance_id else i for i in state.instances
    )
    return _with(fleet, scale_set, attrs.evolve(state, instances=instances), fleet.made)


def reimage(fleet: Fleet, scale_set: str, instance_id: int) -> Fleet:
    """The fleet with one instance reimaged: its OS disk is made again from the image, so
    it keeps its id, address, NAT ports and power state, but not its host keys."""
    state = _known(fleet, scale_set)
    old = _instance(state, scale_set, instance_id)
    new = attrs.evolve(old, generation=old.generation + 1)
    instances = tuple(new if i.instance_id == instance_id else i for i in state.instances)
    return _with(fleet, scale_set, attrs.evolve(state, instances=instances), fleet.made)


def delete(fleet: Fleet, scale_set: str, instance_ids: Iterable[int]) -> Fleet:
    """The fleet without the given instances (their ids are never given again)."""
    state = _known(fleet, scale_set)
    gone = set(instance_ids)
    for instance_id in gone:
        _instance(state, scale_set, instance_id)
    kept = tuple(i for i in state.instances if i.instance_id not in gone)
    return _with(fleet, scale_set, attrs.evolve(state, instances=kept), fleet.made)


def _resize(
    state: ScaleSetState,
    vmss: VirtualMachineScaleSet,
    capacity: int,
    made: int,
    over: Overprovision | None,
) -> tuple[ScaleSetState, int]:
    count = len(state.instances)
    if capacity >= count:
        return _grow(state, vmss, capacity - count, made, over)
    order = _scale_in_order(state.instances, vmss.scale_in_policy)
    doomed = [i for i in order if not i.protected][: count - capacity]
    gone = {i.instance_id for i in doomed}
    kept = tuple(i for i in state.instances if i.instance_id not in gone)
    return attrs.evolve(state, instances=kept), made


def _grow(
    state: ScaleSetState,
    vmss: VirtualMachineScaleSet,
    count: int,
    made: int,
    over: Overprovision | None,
) -> tuple[ScaleSetState, int]:
    """``count`` new instances; with ``over`` (and the scale set's ``overprovision``), extra
    ones too, marked as surplus: :func:`settle` deletes them."""
    extra = over.extras_for(count) if over is not None and vmss.overprovision else 0
    ids = [state.next_id + k for k in range(count + extra)]
    doomed = over.doomed(vmss.name, ids, extra) if over is not None and extra else set()
    new = tuple(Instance(i, made=made + k, surplus=i in doomed) for k, i in enumerate(ids))
    grown = attrs.evolve(state, instances=state.instances + new, next_id=state.next_id + len(ids))
    return grown, made + len(ids)


def _scale_in_order(instances: tuple[Instance, ...], policy: str) -> list[Instance]:
    """Instances in the order a scale-in removes them."""
    if policy == "NewestVM":
        return sorted(instances, key=lambda i: (-i.made, -i.instance_id))
    if policy == "OldestVM":
        return sorted(instances, key=lambda i: (i.made, i.instance_id))
    return sorted(instances, key=lambda i: -i.instance_id)


def _known(fleet: Fleet, scale_set: str) -> ScaleSetState:
    state = fleet.of(scale_set)
    if state is None:
        known = ", ".join(sorted(s.name or k for k, s in fleet.scale_sets.items())) or "none"
        raise LbsimError(
            "ResourceNotFound",
            f"The scale set '{scale_set}' is not in the deployment (scale sets: {known}).",
        )
    return state


def _instance(state: ScaleSetState, scale_set: str, instance_id: int) -> Instance:
    found = state.find(instance_id)
    if found is None:
        ids = ", ".join(str(i) for i in state.ids) or "none"
        raise LbsimError(
            "ResourceNotFound",
            f"The scale set '{scale_set}' has no instance {instance_id} (instances: {ids}).",
        )
    return found


def _with(fleet: Fleet, scale_set: str, state: ScaleSetState, made: int) -> Fleet:
    return Fleet({**fleet.scale_sets, scale_set.lower(): state}, made)
