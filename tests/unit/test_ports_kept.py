"""Each backend keeps its NAT port for its life, across ranges that overlap on one frontend: a
V2 NAT rule's range over a NAT pool's (a warning only). Every range re-takes its backends'
held ports before any new backend takes a free one, so scaling one scale set never moves an
instance of the other."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from templates import (
    Json,
    codes,
    ip_configuration,
    lb_rule,
    load,
    load_balancer,
    nat_pool,
    nat_rule,
    public_ip,
    scale_set,
    template,
    vnet,
)

from lbsim.control.fleet import Fleet, fresh, reconcile, scale
from lbsim.control.plan import plan
from lbsim.control.ports import held_ports
from lbsim.control.types import Plan
from lbsim.errors import TemplateInvalid
from lbsim.model import Deployment, TransportProtocol

INSIDE = "FrontendPortInsideNatPortRange"


def overlapping(
    *,
    a: int = 2,
    b: int = 2,
    pool_ports: tuple[int, int] = (50000, 50009),
    v2_ports: tuple[int, int] = (50000, 50009),
    rules: Iterable[Json] = (),
    v2_rules: Iterable[Json] = (),
) -> Json:
    """Scale set ``a`` behind the NAT pool ``ssh``, scale set ``b`` in the backend pool of the
    V2 NAT rule ``v2``; both ranges on the frontend ``fe``, Tcp."""
    return template(
        public_ip(),
        vnet(),
        load_balancer(
            nat_pools=[nat_pool("ssh", *pool_ports, 22)],
            nat_rules=[nat_rule("v2", 23, ports=v2_ports, pool="pool"), *v2_rules],
            rules=list(rules),
        ),
        scale_set("a", a, ip_configuration(nat_pools=["ssh"])),
        scale_set("b", b, ip_configuration(backend_pools=["pool"])),
    )


def ports(result: Plan, source: str) -> dict[str, int]:
    """Backend label -> frontend port of the NAT entries of ``source`` (a pool or rule)."""
    return {
        e.backend.label: e.frontend_port
        for e in result.nat
        if e.source_rule == source and e.backend is not None
    }


def scaled(deployment: Deployment, fleet: Fleet, name: str, capacity: int) -> Fleet:
    found = next(v for v in deployment.virtual_machine_scale_sets if v.name == name)
    return scale(fleet, found, capacity)


def start(doc: Json) -> tuple[Deployment, Fleet, Plan]:
    deployment = load(doc)
    fleet = fresh(deployment)
    return deployment, fleet, plan(deployment, fleet=fleet)


# --- a V2 rule's range over a pool's --------------------------------------------------------------
def test_a_fresh_deployment_gives_the_v2_rule_the_lowest_ports_and_the_pool_the_next() -> None:
    _, _, result = start(overlapping())
    assert ports(result, "v2") == {"b/0": 50000, "b/1": 50001}
    assert ports(result, "ssh") == {"a/0": 50002, "a/1": 50003}
    assert INSIDE in codes(result.warnings)


def test_a_new_v2_member_does_not_move_a_pool_instance() -> None:
    deployment, fleet, before = start(overlapping())
    after = plan(deployment, fleet=scaled(deployment, fleet, "b", 3), previous=before)
    assert ports(after, "ssh") == {"a/0": 50002, "a/1": 50003}
    assert ports(after, "v2") == {"b/0": 50000, "b/1": 50001, "b/2": 50004}


def test_a_pool_scale_out_does_not_move_a_v2_member() -> None:
    deployment, fleet, before = start(overlapping())
    after = plan(deployment, fleet=scaled(deployment, fleet, "a", 3), previous=before)
    assert ports(after, "v2") == {"b/0": 50000, "b/1": 50001}
    assert ports(after, "ssh") == {"a/0": 50002, "a/1": 50003, "a/2": 50004}


def test_a_port_freed_by_a_scale_in_goes_to_the_next_new_backend_of_either_range() -> None:
    deployment, fleet, first = start(overlapping())
    fleet = scaled(deployment, fleet, "b", 1)  # b/1 goes: 50001 is free
    second = plan(deployment, fleet=fleet, previous=first)
    fleet = scaled(deployment, fleet, "a", 3)  # a/2 takes 50001
    third = plan(deployment, fleet=fleet, previous=second)
    assert ports(third, "ssh") == {"a/0": 50002, "a/1": 50003, "a/2": 50001}
    fleet = scaled(deployment, fleet, "b", 2)  # b/2 must not take a/2's port
    fourth = plan(deployment, fleet=fleet, previous=third)
    assert ports(fourth, "ssh") == {"a/0": 50002, "a/1": 50003, "a/2": 50001}
    assert ports(fourth, "v2") == {"b/0": 50000, "b/2": 50004}


def test_a_held_port_a_new_single_port_rule_claims_moves_only_its_holder() -> None:
    _, fleet, before = start(overlapping())
    reloaded = load(overlapping(rules=[lb_rule("web", 50001, 80)]))
    after = plan(reloaded, fleet=reconcile(fleet, reloaded), previous=before)
    assert ports(after, "ssh") == {"a/0": 50002, "a/1": 50003}
    assert ports(after, "v2") == {"b/0": 50000, "b/1": 50004}


def test_a_held_port_outside_a_narrowed_range_moves_only_its_holder() -> None:
    _, fleet, before = start(overlapping())
    reloaded = load(overlapping(v2_ports=(50001, 50009)))
    after = plan(reloaded, fleet=reconcile(fleet, reloaded), previous=before)
    assert ports(after, "ssh") == {"a/0": 50002, "a/1": 50003}
    assert ports(after, "v2") == {"b/0": 50004, "b/1": 50001}


def test_a_range_whose_free_ports_other_backends_hold_refuses_the_scale_out() -> None:
    deployment, fleet, before = start(overlapping(v2_ports=(50000, 50002)))
    assert ports(before, "ssh") == {"a/0": 50002, "a/1": 50003}
    with pytest.raises(TemplateInvalid) as caught:
        plan(deployment, fleet=scaled(deployment, fleet, "b", 3), previous=before)
    (problem,) = caught.value.problems
    assert problem.code == "InboundNatRuleFrontendPortRangeSmallerThanRequestedPorts"
    assert "50000-50002 of 'v2' has 3 port(s), 1 of them held by other rules" in problem.message
    assert "3 backend(s)" in problem.message


def test_two_v2_rules_whose_ranges_overlap_are_a_conflict() -> None:
    doc = overlapping(v2_rules=[nat_rule("other", 24, ports=(50005, 50010), pool="pool")])
    with pytest.raises(TemplateInvalid) as caught:
        plan(load(doc))
    assert codes(caught.value.problems) == ["LoadBalancerFrontendPortConflict"]


def test_plans_are_deterministic() -> None:
    deployment, fleet, before = start(overlapping())
    fleet = scaled(deployment, scaled(deployment, fleet, "b", 1), "a", 4)
    one = plan(deployment, fleet=fleet, previous=before)
    two = plan(deployment, fleet=fleet, previous=before)
    assert one.nat == two.nat


# --- any sequence of scale-outs and scale-ins -----------------------------------------------------
steps = st.lists(st.tuples(st.sampled_from(("a", "b")), st.integers(0, 4)), max_size=8)


@settings(max_examples=60, deadline=None)
@given(
    shift=st.integers(0, 5),
    single=st.none() | st.integers(50000, 50014),
    capacities=st.tuples(st.integers(0, 4), st.integers(0, 4)),
    changes=steps,
)
def test_no_backend_that_stays_ever_changes_its_port(
    shift: int,
    single: int | None,
    capacities: tuple[int, int],
    changes: list[tuple[str, int]],
) -> None:
    """Two scale sets behind a pool and a V2 rule whose ranges overlap (and maybe a
    load-balancing rule on one port): each range has room for both scale sets' largest size,
    so every step plans, and a backend that stays keeps every port it had."""
    rules = [] if single is None else [lb_rule("web", single, 80)]
    doc = overlapping(
        a=capacities[0],
        b=capacities[1],
        v2_ports=(50000 + shift, 50009 + shift),
        rules=rules,
    )
    deployment, fleet, current = start(doc)
    for name, capacity in changes:
        fleet = scaled(deployment, fleet, name, capacity)
        following = plan(deployment, fleet=fleet, previous=current)
        had, has = held_ports(current), held_ports(following)
        assert {k: p for k, p in had.items() if k in has} == {k: has[k] for k in had if k in has}
        alive = {b.key for b in following.backends}
        assert {k for k in had if k[1] in alive} <= set(has)  # nobody that stays lost its port
        slots = [(e.frontend.key, e.protocol, e.frontend_port) for e in following.nat]
        assert len(slots) == len(set(slots))
        assert all(e.protocol is TransportProtocol.TCP for e in following.nat)
        assert len(following.nat) == sum(
            len(fleet.instances(n) or ()) for n in ("a", "b")
        )  # one entry per instance: every backend has a port
        current = following
