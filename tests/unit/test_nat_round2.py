"""NAT port allocation as Azure does it (ports that other rules hold are skipped, held ports
are kept), and ipConfiguration references to pools and rules that do not exist."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import pytest
import strategies as s
from hypothesis import given
from hypothesis import strategies as st
from templates import (
    Json,
    codes,
    ip_configuration,
    lb_ref,
    lb_rule,
    load,
    load_balancer,
    nat_pool,
    nat_rule,
    network_interface,
    plan_of,
    plan_problems,
    public_ip,
    scale_set,
    template,
    vnet,
    where,
)

from lbsim.control.addresses import Addresses
from lbsim.control.backends import Member, backends, reserve_static
from lbsim.control.frontends import plan_frontends
from lbsim.control.index import Index
from lbsim.control.nat import NatExpander
from lbsim.control.plan import plan
from lbsim.control.ports import held_ports
from lbsim.control.types import NatEntry, NatKind, Plan
from lbsim.errors import Severity
from lbsim.model import (
    Deployment,
    LoadBalancer,
    LoadBalancingRule,
    SubResource,
    TransportProtocol,
)

POOLS = "/resources/2/properties/inboundNatPools"
RULES = "/resources/2/properties/inboundNatRules"
LB_RULES = "/resources/2/properties/loadBalancingRules"
VMSS_IPC = (
    "/resources/3/properties/virtualMachineProfile/networkProfile/networkInterfaceConfigurations"
    "/0/properties/ipConfigurations/0/properties"
)
INSIDE = "FrontendPortInsideNatPortRange"


def behind_lb(*resources: Json, **lb: Any) -> Json:
    """A public IP, a VNet and a load balancer ``lb`` (resources 0-2), then ``resources``."""
    return template(public_ip(), vnet(), load_balancer(**lb), *resources)


def vmss(
    capacity: int, pools: Iterable[str] = ("ssh",), backend: Iterable[str] = ("pool",)
) -> Json:
    return scale_set("vmss", capacity, ip_configuration(nat_pools=pools, backend_pools=backend))


def ports(result: Plan, source: str) -> list[tuple[str, str, int]]:
    return [
        (e.backend.label if e.backend else "", e.protocol.value, e.frontend_port)
        for e in result.nat
        if e.source_rule == source
    ]


# --- ports other rules hold ----------------------------------------------------------------------
def test_a_lb_rule_inside_a_pool_range_deploys_as_the_service_fabric_samples_do() -> None:
    doc = behind_lb(
        vmss(3, pools=["rdp"]),
        nat_pools=[nat_pool("rdp", 3389, 4500, 3389)],
        rules=[lb_rule("app", 4000, 8080)],
    )
    result = plan_of(doc)
    assert ports(result, "rdp") == [
        ("vmss/0", "Tcp", 3389),
        ("vmss/1", "Tcp", 3390),
        ("vmss/2", "Tcp", 3391),
    ]
    (warning,) = result.warnings
    assert (warning.code, str(warning.at), warning.severity) == (
        INSIDE,
        f"{LB_RULES}/0",
        Severity.WARNING,
    )
    assert "'app' (Tcp 4000)" in warning.message
    assert "3389-4500 of the inbound NAT pool 'rdp'" in warning.message


def test_a_pool_skips_the_ports_single_port_rules_hold_on_its_frontend_and_protocol() -> None:
    doc = behind_lb(
        vmss(3),
        nat_pools=[nat_pool("ssh", 50000, 50009, 22, protocol="All")],
        nat_rules=[nat_rule("admin", 22, port=50001, protocol="Udp")],  # Udp is enough
        rules=[lb_rule("web", 50003, 80), lb_rule("dns", 50000, 53, protocol="Udp")],
    )
    result = plan_of(doc)
    assert [p for _, t, p in ports(result, "ssh") if t == "Tcp"] == [50002, 50004, 50005]
    assert [p for _, t, p in ports(result, "ssh") if t == "Udp"] == [50002, 50004, 50005]
    assert where(result.warnings) == {INSIDE: [f"{LB_RULES}/0", f"{LB_RULES}/1", f"{RULES}/0"]}


def test_a_port_on_another_protocol_or_frontend_is_not_skipped_nor_warned_about() -> None:
    doc = behind_lb(
        vmss(2),
        nat_pools=[nat_pool("ssh", 50000, 50009, 22)],
        rules=[lb_rule("dns", 50000, 53, protocol="Udp")],
    )
    result = plan_of(doc)
    assert [p for _, _, p in ports(result, "ssh")] == [50000, 50001]
    assert result.warnings == ()


def test_a_range_runs_out_only_when_no_port_is_left() -> None:
    rules = [lb_rule("web", 50001, 80)]
    enough = plan_of(behind_lb(vmss(2), nat_pools=[nat_pool("ssh", 50000, 50002, 22)], rules=rules))
    assert [p for _, _, p in ports(enough, "ssh")] == [50000, 50002]
    (problem,) = plan_problems(
        behind_lb(vmss(3), nat_pools=[nat_pool("ssh", 50000, 50002, 22)], rules=rules)
    )
    assert (problem.code, str(problem.at)) == (
        "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts",
        f"{POOLS}/0",
    )
    assert "3 port(s), 1 of them held by other rules" in problem.message
    assert "3 backend(s)" in problem.message


def test_a_v2_rule_skips_single_ports_and_a_pool_skips_the_v2_rules_ports() -> None:
    doc = behind_lb(
        vmss(2),
        nat_pools=[nat_pool("ssh", 60000, 60009, 22)],
        nat_rules=[
            nat_rule("v2", 23, ports=(60000, 60009), pool="pool"),
            nat_rule("v1", 24, port=60000),
        ],
    )
    result = plan_of(doc)
    assert [p for _, _, p in ports(result, "v2")] == [60001, 60002]
    assert [p for _, _, p in ports(result, "ssh")] == [60003, 60004]
    assert sorted(where(result.warnings)[INSIDE]) == [f"{RULES}/0", f"{RULES}/1", f"{RULES}/1"]
    assert "inbound NAT rule 'v2'" in str(result.warnings)  # v1 is inside v2 and ssh
    v2 = next(w for w in result.warnings if str(w.at) == f"{RULES}/0")
    assert "'v2' (Tcp 60000-60009) overlaps" in v2.message
    assert "inbound NAT pool 'ssh'" in v2.message


@pytest.mark.parametrize(
    ("settings", "code", "at"),
    [
        (
            {
                "nat_pools": [
                    nat_pool("a", 50000, 50010, 22),
                    nat_pool("b", 50005, 50006, 23, protocol="All"),
                ]
            },
            "InboundNatPoolFrontendPortRangesOverlapping",
            f"{POOLS}/1",
        ),
        (
            {
                "nat_rules": [nat_rule("r", 22, port=443, protocol="All")],
                "rules": [lb_rule("web", 443, 443, protocol="Udp")],
            },
            "LoadBalancerFrontendPortConflict",
            f"{LB_RULES}/0",
        ),
    ],
    ids=["two-pools", "two-single-ports"],
)
def test_what_really_collides_stays_an_error(settings: Json, code: str, at: str) -> None:
    (problem,) = plan_problems(behind_lb(**settings))
    assert (problem.code, str(problem.at)) == (code, at)


# --- held ports ---------------------------------------------------------------------------------
def members_of(deployment: Deployment) -> tuple[Index, dict[str, Any], list[Member]]:
    """What ``plan`` hands the NAT expander: the index, frontends and backends."""
    index, addresses = Index(deployment), Addresses()
    reserve_static(deployment, addresses)
    frontends, _ = plan_frontends(deployment, index, addresses, {})
    return index, frontends, backends(deployment, index, addresses)


def expand(
    deployment: Deployment, held: dict[tuple[str, str], int], drop: Iterable[int] = ()
) -> tuple[list[NatEntry], list[str]]:
    """The NAT entries with ``held`` ports, without the instances ``drop`` (deleted ones)."""
    index, frontends, members = members_of(deployment)
    members = [m for m in members if m.backend.instance_id not in set(drop)]
    expander = NatExpander(index, frontends, members, held=held)
    entries = expander.expand(deployment.load_balancers)
    return entries, codes(expander.problems)


def by_instance(entries: Iterable[NatEntry]) -> dict[int | None, int]:
    return {e.backend.instance_id: e.frontend_port for e in entries if e.backend}


def test_a_deleted_instances_port_goes_to_the_next_new_instance() -> None:
    pools = [nat_pool("ssh", 50000, 50002, 22)]
    before = plan_of(behind_lb(vmss(3), nat_pools=pools))
    held = held_ports(before)
    assert sorted(held.values()) == [50000, 50001, 50002]
    entries, problems = expand(load(behind_lb(vmss(4), nat_pools=pools)), held, drop=[1])
    assert (by_instance(entries), problems) == ({0: 50000, 2: 50002, 3: 50001}, [])


def test_held_ports_are_kept_out_of_order_and_given_up_when_out_of_range_or_taken() -> None:
    doc = behind_lb(
        vmss(4), nat_pools=[nat_pool("ssh", 50000, 50009, 22)], rules=[lb_rule("web", 50005, 80)]
    )
    deployment = load(doc)
    pool_id = deployment.load_balancers[0].inbound_nat_pools[0].id.lower()
    keys = [m.backend.key for m in members_of(deployment)[2]]
    held = {
        (pool_id, keys[0]): 50007,  # kept
        (pool_id, keys[1]): 50005,  # the load-balancing rule's: given up
        (pool_id, keys[2]): 50007,  # instance 0 has it: given up
        (pool_id, keys[3]): 51000,  # outside the range: given up
        (pool_id, "gone"): 50000,  # a backend that no longer exists: the port is free
        ("elsewhere", keys[1]): 50001,  # another pool's
    }
    entries, problems = expand(deployment, held)
    assert (by_instance(entries), problems) == ({0: 50007, 1: 50000, 2: 50001, 3: 50002}, [])


def test_held_ports_read_back_pools_and_v2_rules_by_id_and_backend_only() -> None:
    doc = behind_lb(
        vmss(2),
        network_interface("nic", ip_configuration(nat_rules=["v1"], ip="10.0.0.10")),
        nat_pools=[nat_pool("ssh", 50000, 50009, 22, protocol="All")],
        nat_rules=[
            nat_rule("v2", 23, ports=(60000, 60009), pool="pool"),
            nat_rule("v1", 24, port=3389),
        ],
    )
    result = plan_of(doc)
    lb = load(doc).load_balancers[0]
    pool_id, v2_id = lb.inbound_nat_pools[0].id, lb.inbound_nat_rules[0].id
    assert {e.source_id for e in result.nat} == {pool_id, v2_id, lb.inbound_nat_rules[1].id}
    vmss_keys = [b.key for b in result.backends if b.scale_set]
    assert held_ports(result) == {
        (pool_id.lower(), vmss_keys[0]): 50000,
        (pool_id.lower(), vmss_keys[1]): 50001,
        (v2_id.lower(), vmss_keys[0]): 60000,
        (v2_id.lower(), vmss_keys[1]): 60001,
    }


def near(draw: st.DrawFn, lb: LoadBalancer) -> int:
    """A port in or just around one of ``lb``'s pool ranges."""
    pool = draw(st.sampled_from(lb.inbound_nat_pools))
    start, end = pool.frontend_port_range_start, pool.frontend_port_range_end
    return draw(st.integers(start - 2, end + 2))


@st.composite
def held_cases(draw: st.DrawFn) -> tuple[Deployment, dict[tuple[str, str], int]]:
    """A deployment of NAT pools with load-balancing rules on some of their ports, and any
    held ports: in range or not, for present backends or not, colliding or not."""
    deployment = draw(s.nat_pool_deployments())
    (lb,) = deployment.load_balancers
    rules = []
    for i, port in enumerate(sorted({near(draw, lb) for _ in range(draw(st.integers(0, 4)))})):
        frontend = draw(st.sampled_from(lb.frontend_ip_configurations))
        rules.append(
            LoadBalancingRule(
                id=f"{lb.id}/loadBalancingRules/r{i}",
                name=f"r{i}",
                frontend_ip_configuration=SubResource(frontend.id),
                protocol=draw(st.sampled_from((TransportProtocol.TCP, TransportProtocol.UDP))),
                frontend_port=port,
                backend_port=80 + i,
            )
        )
    lb = attrs.evolve(lb, load_balancing_rules=tuple(rules))
    deployment = attrs.evolve(deployment, load_balancers=(lb,))
    keys = [m.backend.key for m in members_of(deployment)[2]] + ["gone"]
    pool_ids = [p.id.lower() for p in lb.inbound_nat_pools]
    held: dict[tuple[str, str], int] = {}
    for _ in range(draw(st.integers(0, 12))):
        held[(draw(st.sampled_from(pool_ids)), draw(st.sampled_from(keys)))] = near(draw, lb)
    return deployment, held


@given(held_cases())
def test_any_held_ports_give_each_member_one_free_port_per_pool_and_keep_the_free_ones(
    case: tuple[Deployment, dict[tuple[str, str], int]],
) -> None:
    deployment, held = case
    (lb,) = deployment.load_balancers
    index, frontends, members = members_of(deployment)
    expander = NatExpander(index, frontends, members, held=held)
    entries = expander.expand([lb])
    singles = {
        (r.frontend_ip_configuration.key, r.protocol, r.frontend_port)
        for r in lb.load_balancing_rules
    }
    listen = [e.listen_key for e in entries]  # (frontend address, protocol, port)
    assert len(listen) == len(set(listen))
    assert not {(e.frontend.key, e.protocol, e.frontend_port) for e in entries} & singles
    for pool in lb.inbound_nat_pools:
        users = [
            m.backend.key
            for m in members
            if any(
                r.key == pool.id.lower() for r in m.ip_configuration.load_balancer_inbound_nat_pools
            )
        ]
        mine = [e for e in entries if e.source_id == pool.id]
        start, end = pool.frontend_port_range_start, pool.frontend_port_range_end
        fe, transports = pool.frontend_ip_configuration.key, pool.protocol.transports()
        free = [
            p for p in range(start, end + 1) if all((fe, t, p) not in singles for t in transports)
        ]
        if len(free) < len(users):
            assert "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts" in codes(
                expander.problems
            )
            continue
        got = {(e.backend.key, e.protocol): e.frontend_port for e in mine if e.backend}
        assert len(mine) == len(got) == len(users) * len(transports)
        assert set(got) == {(k, t) for k in users for t in transports}
        assert all(start <= p <= end for p in got.values())
        kept: set[int] = set()
        for key in users:  # the first member (in order) holding a free port keeps it
            port = held.get((pool.id.lower(), key))
            if port in free and port not in kept:
                kept.add(port)
                assert {got[(key, t)] for t in transports} == {port}
    assert expander.problems == [] or all(
        p.code == "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts"
        for p in expander.problems
    )


# --- references to pools and rules that do not exist ---------------------------------------------
def test_a_scale_set_naming_a_pool_the_load_balancer_lacks_is_invalid_resource_reference() -> None:
    ipc = ip_configuration(nat_pools=["ssh", "shh"], backend_pools=["pool", "pol"])
    problems = plan_problems(
        behind_lb(scale_set("vmss", 2, ipc), nat_pools=[nat_pool("ssh", 50000, 50009, 22)])
    )
    assert where(problems) == {
        "InvalidResourceReference": [
            f"{VMSS_IPC}/loadBalancerBackendAddressPools/1",
            f"{VMSS_IPC}/loadBalancerInboundNatPools/1",
        ]
    }
    assert (
        "load balancer 'lb' has no inbound NAT pool 'shh' (its inbound NAT pools: 'ssh')"
        in problems[1].message
    )
    assert "of scale set 'vmss'" in problems[1].message


def test_a_nic_naming_a_nat_rule_the_load_balancer_lacks_or_a_wrong_type_is_an_error() -> None:
    ipc = ip_configuration(nat_rules=["rdp"])
    ipc["properties"]["loadBalancerBackendAddressPools"] = [lb_ref("lb", "inboundNatRules", "ssh")]
    problems = plan_problems(
        behind_lb(network_interface("nic", ipc), nat_rules=[nat_rule("ssh", 22, port=50000)])
    )
    at = "/resources/3/properties/ipConfigurations/0/properties"
    assert where(problems) == {
        "InvalidJsonReferenceWrongType": [f"{at}/loadBalancerBackendAddressPools/0"],
        "InvalidResourceReference": [f"{at}/loadBalancerInboundNatRules/0"],
    }
    assert "a backend address pool is expected" in problems[0].message
    assert "network interface 'nic'" in problems[1].message


def test_a_pool_of_a_load_balancer_outside_the_template_is_warned_about_by_name() -> None:
    far = "/subscriptions/x/resourceGroups/y/providers/Microsoft.Network/loadBalancers/far"
    ipc = ip_configuration()
    ipc["properties"]["loadBalancerInboundNatPools"] = [{"id": f"{far}/inboundNatPools/ssh"}]
    result = plan_of(behind_lb(scale_set("vmss", 2, ipc)))
    assert result.nat == ()
    (warning,) = result.warnings
    assert (warning.code, str(warning.at), warning.severity) == (
        "LoadBalancerOutsideTemplate",
        f"{VMSS_IPC}/loadBalancerInboundNatPools/0",
        Severity.WARNING,
    )
    assert far.lower() in warning.message
    assert "'ssh'" in warning.message


def test_references_that_resolve_give_no_problem() -> None:
    doc = behind_lb(vmss(2), nat_pools=[nat_pool("ssh", 50000, 50009, 22)])
    result = plan(load(doc))
    assert (len(result.nat), result.warnings) == (2, ())
    assert {e.kind for e in result.nat} == {NatKind.POOL}
