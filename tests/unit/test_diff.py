"""Plans over a live fleet and the change between two plans: the laws of ``diff`` and
``listen_table``, ``plan`` as a function, scale sets that never disturb each other, and what
an NSG change, a stop, a delete and a scale-out show."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st
from templates import (
    NSG,
    Json,
    ip_configuration,
    lb_rule,
    load,
    load_balancer,
    nat_pool,
    nsg,
    probe,
    public_ip,
    resource_id,
    scale_set,
    security_rule,
    subnet,
    template,
    vnet,
)

from lbsim.control.diff import diff, listen_table
from lbsim.control.fleet import (
    Fleet,
    PowerState,
    delete,
    fresh,
    reconcile,
    reimage,
    scale,
    set_state,
)
from lbsim.control.plan import plan
from lbsim.control.types import BalancingEntry, NatEntry, Plan
from lbsim.model import Deployment

NSG_ID = resource_id(NSG, "nsg").lower()


# --- templates ---------------------------------------------------------------------------------
def _nsg(ssh_source: str = "203.0.113.0/24") -> Json:
    return nsg(
        "nsg",
        security_rule("allow-ssh", 100, source=ssh_source, port="22"),
        security_rule("allow-http", 110, port="80"),
        security_rule("allow-api", 120, port="8080"),
    )


def one_scale_set(capacity: int = 2, *, ssh_source: str = "203.0.113.0/24") -> Json:
    """A scale set ``vmss`` in NAT pool ``ssh`` (50000-50009 -> 22) and in backend pool
    ``pool`` of rule ``http`` (80 -> 80, probe ``http``), in a subnet with NSG ``nsg``."""
    return template(
        _nsg(ssh_source),
        vnet("vnet", "10.0.0.0/16", subnet("default", "10.0.0.0/24", nsg="nsg")),
        public_ip(),
        load_balancer(
            nat_pools=[nat_pool("ssh", 50000, 50009, 22)],
            rules=[lb_rule("http", 80, 80, probe="http")],
            probes=[probe("http", 80)],
        ),
        scale_set("vmss", capacity, ip_configuration(nat_pools=["ssh"], backend_pools=["pool"])),
    )


def two_scale_sets(web: int = 2, api: int = 2) -> Json:
    """Scale sets ``web`` and ``api`` in one subnet with NSG ``nsg``, each with a NAT pool
    and a backend pool and rule of its own on one frontend."""
    return template(
        _nsg(),
        vnet("vnet", "10.0.0.0/16", subnet("default", "10.0.0.0/24", nsg="nsg")),
        public_ip(),
        load_balancer(
            backend_pools=["web", "api"],
            nat_pools=[
                nat_pool("ssh-web", 50000, 50009, 22),
                nat_pool("ssh-api", 50100, 50109, 22),
            ],
            rules=[
                lb_rule("web", 80, 80, pool="web", probe="http"),
                lb_rule("api", 8080, 8080, pool="api"),
            ],
            probes=[probe("http", 80)],
        ),
        scale_set("web", web, ip_configuration(nat_pools=["ssh-web"], backend_pools=["web"])),
        scale_set("api", api, ip_configuration(nat_pools=["ssh-api"], backend_pools=["api"])),
    )


ONE = load(one_scale_set())
TWO = load(two_scale_sets())

# --- fleets ------------------------------------------------------------------------------------
# An operation on the fleet: (scale set, verb, n); scale to n, or act on the n-th live instance.
Operation = tuple[int, str, int]
_OPERATIONS = st.lists(
    st.tuples(
        st.integers(0, 1),
        st.sampled_from(["scale", "scale", "stop", "start", "deallocate", "delete"]),
        st.integers(0, 5),
    ),
    max_size=8,
)
_POWER = {
    "stop": PowerState.STOPPED,
    "start": PowerState.RUNNING,
    "deallocate": PowerState.DEALLOCATED,
}


def live(
    deployment: Deployment, operations: Sequence[Operation], fleet: Fleet | None = None
) -> Fleet:
    """The fleet after ``operations`` (on ``fleet``, else a fresh one)."""
    fleet = fleet or fresh(deployment)
    sets = deployment.virtual_machine_scale_sets
    for which, verb, n in operations:
        vmss = sets[which % len(sets)]
        if verb == "scale":
            fleet = scale(fleet, vmss, n)
            continue
        state = fleet.of(vmss.name)
        ids = sorted(state.ids) if state is not None else []
        if not ids:
            continue
        target = ids[n % len(ids)]
        if verb == "delete":
            fleet = delete(fleet, vmss.name, [target])
        else:
            fleet = set_state(fleet, vmss.name, target, _POWER[verb])
    return fleet


def label_of(entry: NatEntry | BalancingEntry) -> set[str]:
    """The instances an entry reaches."""
    if isinstance(entry, NatEntry):
        return {entry.backend.label} if entry.backend is not None else set()
    return {b.label for b in entry.backends}


# --- laws --------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(_OPERATIONS)
def test_a_plan_differs_from_itself_in_nothing(operations: list[Operation]) -> None:
    for deployment in (ONE, TWO):
        p = plan(deployment, fleet=live(deployment, operations))
        assert diff(p, p).empty
        assert diff(p, plan(deployment, fleet=live(deployment, operations))).empty


@settings(max_examples=60, deadline=None)
@given(_OPERATIONS, _OPERATIONS)
def test_listeners_of_a_plus_added_minus_removed_are_bs(
    first: list[Operation], second: list[Operation]
) -> None:
    for deployment in (ONE, TWO):
        fleet_a = live(deployment, first)
        a = plan(deployment, fleet=fleet_a)
        for b in (
            plan(deployment, fleet=live(deployment, second)),  # an unrelated fleet
            plan(deployment, fleet=live(deployment, second, fleet_a), previous=a),  # a's future
        ):
            change = diff(a, b)
            before, after = listen_table(a), listen_table(b)
            assert set(change.listeners_added).isdisjoint(before)
            assert set(change.listeners_removed) <= set(before)
            assert (set(before) | set(change.listeners_added)) - set(
                change.listeners_removed
            ) == set(after)
            assert set(change.listeners_changed) == {
                k for k in before.keys() & after.keys() if before[k] != after[k]
            }
            assert len(set(change.listeners_changed)) == len(change.listeners_changed)
            labels = {b.label for b in a.backends}, {b.label for b in b.backends}
            assert set(change.instances_added) == labels[1] - labels[0]
            assert set(change.instances_removed) == labels[0] - labels[1]
            if a == b:
                assert change.empty
            if change.empty:
                assert before == after


@settings(max_examples=40, deadline=None)
@given(_OPERATIONS, st.booleans())
def test_plan_is_a_function_of_its_inputs(operations: list[Operation], again: bool) -> None:
    for deployment in (ONE, TWO):
        fleet = live(deployment, operations)
        first = plan(deployment, {"lb/fe": "127.0.0.9"}, fleet=fleet)
        assert plan(deployment, {"lb/fe": "127.0.0.9"}, fleet=fleet) == first
        previous = plan(deployment) if again else first
        assert plan(deployment, fleet=fleet, previous=previous) == plan(
            deployment, fleet=fleet, previous=previous
        )


@settings(max_examples=60, deadline=None)
@given(_OPERATIONS, st.integers(0, 6))
def test_scaling_one_scale_set_never_changes_anothers(
    operations: list[Operation], capacity: int
) -> None:
    fleet = live(TWO, operations)
    a = plan(TWO, fleet=fleet)
    web = next(v for v in TWO.virtual_machine_scale_sets if v.name == "web")
    b = plan(TWO, fleet=scale(fleet, web, capacity), previous=a)
    change = diff(a, b)

    def api_listeners(p: Plan) -> dict[object, NatEntry | BalancingEntry]:
        return {
            k: e
            for k, e in listen_table(p).items()
            if any(x.startswith("api/") for x in label_of(e))
        }

    assert api_listeners(a) == api_listeners(b)  # same keys, equal entries
    assert {x.label: x.private_ip_address for x in a.backends if x.scale_set == "api"} == {
        x.label: x.private_ip_address for x in b.backends if x.scale_set == "api"
    }
    touched = change.listeners_added + change.listeners_removed + change.listeners_changed
    assert not set(touched) & set(api_listeners(a))
    instances = change.instances_added + change.instances_removed + change.instances_changed
    assert all(label.startswith("web/") for label in instances)


@settings(max_examples=30, deadline=None)
@given(_OPERATIONS)
def test_previous_keeps_every_remaining_backends_private_address(
    operations: list[Operation],
) -> None:
    a = plan(TWO)
    b = plan(TWO, fleet=live(TWO, operations), previous=a)
    old = {x.key: x.private_ip_address for x in a.backends}
    for backend in b.backends:
        if backend.key in old:
            assert backend.private_ip_address == old[backend.key], backend.label
    assert len({x.private_ip_address for x in b.backends}) == len(b.backends)


# --- what a change shows -----------------------------------------------------------------------
def test_a_changed_nsg_rule_shows_in_nsgs_changed_and_every_listener_behind_it() -> None:
    a = plan(ONE)
    reloaded = load(one_scale_set(ssh_source="198.51.100.0/24"))
    b = plan(reloaded, fleet=reconcile(fresh(ONE), reloaded), previous=a)
    change = diff(a, b)
    assert change.nsgs_changed == (NSG_ID,)
    assert set(change.listeners_changed) == set(listen_table(a))  # all behind the subnet's NSG
    assert (change.listeners_added, change.listeners_removed) == ((), ())
    assert (change.instances_added, change.instances_removed, change.instances_changed) == (
        (),
        (),
        (),
    )


def test_an_nsg_whose_last_backend_goes_has_not_changed() -> None:
    """``nsgs_changed`` names NSGs whose rules changed: scaling every instance behind an
    unchanged NSG to zero (and back) changes listeners and instances, not the NSG."""
    deployment = load(one_scale_set(2))
    fleet = fresh(deployment)
    a = plan(deployment, fleet=fleet)
    empty = plan(deployment, fleet=scale(fleet, deployment.virtual_machine_scale_sets[0], 0))
    assert diff(a, empty).instances_removed == ("vmss/0", "vmss/1")
    assert diff(a, empty).nsgs_changed == ()
    assert diff(empty, a).nsgs_changed == ()


def test_an_unchanged_reload_is_no_change() -> None:
    a = plan(ONE)
    reloaded = load(one_scale_set())
    assert diff(a, plan(reloaded, fleet=reconcile(fresh(ONE), reloaded), previous=a)).empty


def test_a_reload_that_only_moves_resources_is_no_change() -> None:
    """Where a resource sits in the template is no part of what Azure builds."""
    a = plan(ONE)
    doc = one_scale_set()
    doc["resources"] = [public_ip("other"), *reversed(doc["resources"])]
    reloaded = load(doc)
    assert diff(a, plan(reloaded, fleet=reconcile(fresh(ONE), reloaded), previous=a)).empty


def test_a_stop_shows_in_instances_changed_and_its_listeners_only() -> None:
    deployment = load(one_scale_set(3))
    fleet = fresh(deployment)
    a = plan(deployment, fleet=fleet)
    b = plan(deployment, fleet=set_state(fleet, "vmss", 1, PowerState.STOPPED), previous=a)
    change = diff(a, b)
    assert change.instances_changed == ("vmss/1",)
    assert (change.instances_added, change.instances_removed, change.nsgs_changed) == ((), (), ())
    table = listen_table(a)
    changed = {table[k].rule_name for k in change.listeners_changed}
    assert changed == {"ssh.1", "http"}  # its NAT port and the rule it is a backend of
    assert (change.listeners_added, change.listeners_removed) == ((), ())
    assert diff(b, plan(deployment, fleet=fleet, previous=b)).instances_changed == ("vmss/1",)


def test_a_reimage_changes_the_instance_and_its_listeners_but_not_its_address() -> None:
    deployment = load(one_scale_set(3))
    fleet = fresh(deployment)
    a = plan(deployment, fleet=fleet)
    b = plan(deployment, fleet=reimage(fleet, "vmss", 2), previous=a)
    change = diff(a, b)
    assert change.instances_changed == ("vmss/2",)
    table = listen_table(a)
    assert {table[k].rule_name for k in change.listeners_changed} == {"ssh.2", "http"}
    assert [x.private_ip_address for x in a.backends] == [x.private_ip_address for x in b.backends]
    assert [x.generation for x in b.backends] == [0, 0, 1]


def test_scale_out_adds_listeners_and_instances_and_changes_the_rule() -> None:
    deployment = load(one_scale_set(2))
    fleet = fresh(deployment)
    a = plan(deployment, fleet=fleet)
    b = plan(
        deployment, fleet=scale(fleet, deployment.virtual_machine_scale_sets[0], 4), previous=a
    )
    change = diff(a, b)
    assert change.instances_added == ("vmss/2", "vmss/3")
    added = {listen_table(b)[k].rule_name for k in change.listeners_added}
    assert added == {"ssh.2", "ssh.3"}
    assert {listen_table(b)[k].rule_name for k in change.listeners_changed} == {"http"}
    assert change.listeners_removed == ()
    assert change.instances_removed == ()


def test_scale_in_to_zero_removes_the_rule_listener_too() -> None:
    deployment = load(one_scale_set(2))
    fleet = fresh(deployment)
    a = plan(deployment, fleet=fleet)
    b = plan(
        deployment, fleet=scale(fleet, deployment.virtual_machine_scale_sets[0], 0), previous=a
    )
    change = diff(a, b)
    assert set(change.listeners_removed) == set(listen_table(a))
    assert listen_table(b) == {}
    assert set(change.instances_removed) == {"vmss/0", "vmss/1"}


# --- NAT ports kept for an instance's life ------------------------------------------------------
def _ssh_ports(p: Plan) -> dict[str, int]:
    return {e.backend.label: e.frontend_port for e in p.nat if e.backend is not None}


def test_an_instance_keeps_its_nat_port_when_a_lower_one_is_deleted() -> None:
    deployment = load(one_scale_set(3))
    fleet = fresh(deployment)
    a = plan(deployment, fleet=fleet)
    b = plan(deployment, fleet=delete(fleet, "vmss", [1]), previous=a)
    assert _ssh_ports(b) == {"vmss/0": 50000, "vmss/2": 50002}
    change = diff(a, b)
    assert {listen_table(a)[k].rule_name for k in change.listeners_removed} == {"ssh.1"}
    assert change.listeners_added == ()


def test_a_freed_nat_port_is_reused_by_the_next_instance() -> None:
    deployment = load(one_scale_set(3))
    fleet = delete(fresh(deployment), "vmss", [1])
    a = plan(deployment, fleet=fresh(deployment))
    b = plan(deployment, fleet=fleet, previous=a)
    c = plan(
        deployment, fleet=scale(fleet, deployment.virtual_machine_scale_sets[0], 3), previous=b
    )
    assert _ssh_ports(c) == {"vmss/0": 50000, "vmss/2": 50002, "vmss/3": 50001}
