"""lbsim.control: NAT pools and rules, conflicts, references, private and frontend addresses,
the flow check, and the laws of ``plan``."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
import pytest
import strategies as s
from hypothesis import given
from templates import (
    LB,
    Json,
    codes,
    internal_frontend,
    ip_configuration,
    lb_ref,
    lb_rule,
    load,
    load_balancer,
    nat_pool,
    nat_rule,
    network_interface,
    nsg,
    plan_of,
    plan_problems,
    probe,
    public_frontend,
    public_ip,
    resource_id,
    rid,
    scale_set,
    security_rule,
    subnet,
    template,
    vmss_behind_lb,
    vnet,
    where,
)

from lbsim.control.check import check_direct, check_nat, find_entry, find_nat_entry
from lbsim.control.plan import plan
from lbsim.control.types import NatEntry, NatKind, Plan
from lbsim.errors import LbsimError
from lbsim.model import Deployment, ProbeProtocol, SecurityRuleAccess, TransportProtocol

TCP, UDP = TransportProtocol.TCP, TransportProtocol.UDP
POOLS = "/resources/2/properties/inboundNatPools"
RULES = "/resources/2/properties/inboundNatRules"


def rows(result: Plan) -> list[tuple[str, str, int, int, str | None, str | None]]:
    """The NAT table as (rule, protocol, frontend port, backend port, instance, backend IP)."""
    return [
        (
            e.rule_name,
            e.protocol.value,
            e.frontend_port,
            e.backend_port,
            e.backend.label if e.backend else None,
            e.backend.private_ip_address if e.backend else None,
        )
        for e in result.nat
    ]


def behind_lb(*resources: Json, frontends: list[Json] | None = None, **lb: Any) -> Json:
    """A public IP, a VNet and a load balancer ``lb`` (resources 0-2), then ``resources``."""
    balancer = load_balancer(frontends=frontends, **lb)
    return template(public_ip(), vnet(), balancer, *resources)


# --- NAT pools ---------------------------------------------------------------------------------
def test_pool_maps_instance_i_to_start_plus_i() -> None:
    result = plan_of(vmss_behind_lb(3))
    assert rows(result) == [
        ("ssh.0", "Tcp", 50000, 22, "vmss/0", "10.0.0.4"),
        ("ssh.1", "Tcp", 50001, 22, "vmss/1", "10.0.0.5"),
        ("ssh.2", "Tcp", 50002, 22, "vmss/2", "10.0.0.6"),
    ]
    entry = result.nat[0]
    assert (entry.kind, entry.source_rule, entry.load_balancer) == (NatKind.POOL, "ssh", "lb")
    assert (entry.frontend.label, entry.frontend.address) == ("lb/fe", "127.0.0.1")
    assert (entry.idle_timeout_s, str(entry.at)) == (240.0, f"{POOLS}/0")


def test_pool_with_protocol_all_gives_a_tcp_and_a_udp_entry_per_instance() -> None:
    result = plan_of(
        vmss_behind_lb(2, nat_pools=[nat_pool("dns", 40000, 40009, 53, protocol="All")])
    )
    assert [r[:3] for r in rows(result)] == [
        ("dns.0", "Tcp", 40000),
        ("dns.0", "Udp", 40000),
        ("dns.1", "Tcp", 40001),
        ("dns.1", "Udp", 40001),
    ]


def test_two_pools_give_each_instance_one_port_in_each() -> None:
    pools = [nat_pool("ssh", 50000, 50099, 22), nat_pool("admin", 51000, 51099, 8080)]
    result = plan_of(vmss_behind_lb(2, nat_pools=pools))
    assert [r[:5] for r in rows(result)] == [
        ("ssh.0", "Tcp", 50000, 22, "vmss/0"),
        ("ssh.1", "Tcp", 50001, 22, "vmss/1"),
        ("admin.0", "Tcp", 51000, 8080, "vmss/0"),
        ("admin.1", "Tcp", 51001, 8080, "vmss/1"),
    ]


def test_pool_range_exactly_as_large_as_the_scale_set_is_enough() -> None:
    result = plan_of(vmss_behind_lb(3, nat_pools=[nat_pool("ssh", 50000, 50002, 22)]))
    assert [e.frontend_port for e in result.nat] == [50000, 50001, 50002]


def test_pool_range_smaller_than_the_scale_set_is_azures_error() -> None:
    (problem,) = plan_problems(vmss_behind_lb(3, nat_pools=[nat_pool("ssh", 50000, 50001, 22)]))
    assert (problem.code, str(problem.at)) == (
        "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts",
        f"{POOLS}/0",
    )
    assert "2 port(s)" in problem.message
    assert "3 backend(s)" in problem.message


def test_empty_scale_set_and_unused_pool_give_no_entries() -> None:
    assert plan_of(vmss_behind_lb(0)).nat == ()
    doc = behind_lb(scale_set("vmss", 2), nat_pools=[nat_pool("ssh", 50000, 50099, 22)])
    assert plan_of(doc).nat == ()


# --- NAT rules V1 and V2 ----------------------------------------------------------------------
def test_v1_rules_reach_the_nics_that_list_them() -> None:
    doc = behind_lb(
        network_interface("nic-a", ip_configuration(nat_rules=["rdp-a"])),
        network_interface("nic-b", ip_configuration(nat_rules=["rdp-b"], ip="10.0.0.4")),
        nat_rules=[
            nat_rule("rdp-a", 3389, port=50001),
            nat_rule("rdp-b", 3389, port=50002, protocol="All"),
            nat_rule("orphan", 22, port=50003),
        ],
    )
    result = plan_of(doc)
    assert rows(result) == [
        ("rdp-a", "Tcp", 50001, 3389, "nic-a", "10.0.0.5"),
        ("rdp-b", "Tcp", 50002, 3389, "nic-b", "10.0.0.4"),
        ("rdp-b", "Udp", 50002, 3389, "nic-b", "10.0.0.4"),
        ("orphan", "Tcp", 50003, 22, None, None),
    ]
    assert {e.kind for e in result.nat} == {NatKind.RULE_V1}
    assert [str(e.at) for e in result.nat[:2]] == [f"{RULES}/0", f"{RULES}/1"]


def test_v2_rule_gives_one_port_per_backend_pool_member_in_order() -> None:
    doc = behind_lb(
        network_interface("nic", ip_configuration(backend_pools=["pool"])),
        scale_set("vmss", 2, ip_configuration(backend_pools=["pool"])),
        nat_rules=[nat_rule("ssh", 22, ports=(60000, 60099), pool="pool")],
    )
    result = plan_of(doc)
    assert rows(result) == [
        ("ssh", "Tcp", 60000, 22, "nic", "10.0.0.4"),
        ("ssh", "Tcp", 60001, 22, "vmss/0", "10.0.0.5"),
        ("ssh", "Tcp", 60002, 22, "vmss/1", "10.0.0.6"),
    ]
    assert {e.kind for e in result.nat} == {NatKind.RULE_V2}


def test_v2_range_smaller_than_the_pool_is_an_error() -> None:
    doc = behind_lb(
        scale_set("vmss", 3, ip_configuration(backend_pools=["pool"])),
        nat_rules=[nat_rule("ssh", 22, ports=(60000, 60001), pool="pool")],
    )
    (problem,) = plan_problems(doc)
    assert (problem.code, str(problem.at)) == (
        "InboundNatRuleFrontendPortRangeSmallerThanRequestedPorts",
        f"{RULES}/0",
    )


@pytest.mark.parametrize(
    ("rule", "code"),
    [
        (nat_rule("r", 22, pool="pool"), "MissedInboundNatRuleV2Properties"),
        (nat_rule("r", 22, ports=(60000, 60009)), "MissedInboundNatRuleV2Properties"),
        (nat_rule("r", 22), "MissedInboundNatRuleV2Properties"),
        (
            nat_rule("r", 22, port=5, ports=(60000, 60009), pool="pool"),
            "UnsupportedSetOfInboundNatRulePropertiesWhenFrontendPortIsSpecified",
        ),
    ],
    ids=["pool-without-range", "range-without-pool", "no-port-at-all", "port-and-range"],
)
def test_nat_rule_mixing_v1_and_v2_properties_is_azures_error(rule: Json, code: str) -> None:
    doc = behind_lb(
        scale_set("vmss", 1, ip_configuration(backend_pools=["pool"])), nat_rules=[rule]
    )
    (problem,) = plan_problems(doc)
    assert (problem.code, str(problem.at)) == (code, f"{RULES}/0")


def test_v1_rule_without_a_nic_cannot_be_checked() -> None:
    result = plan_of(behind_lb(nat_rules=[nat_rule("orphan", 22, port=50003)]))
    with pytest.raises(LbsimError) as caught:
        check_nat(result, find_nat_entry(result, TCP, 50003), "198.51.100.1", 1)
    assert caught.value.code == "NatRuleHasNoBackend"


# --- conflicts ---------------------------------------------------------------------------------
def test_overlapping_pool_ranges_on_one_frontend_and_protocol() -> None:
    pools = [nat_pool("a", 50000, 50010, 22), nat_pool("b", 50010, 50020, 23, protocol="All")]
    (problem,) = plan_problems(vmss_behind_lb(1, nat_pools=pools))
    assert (problem.code, str(problem.at)) == (
        "InboundNatPoolFrontendPortRangesOverlapping",
        f"{POOLS}/1",
    )
    assert "'a' (50000-50010)" in problem.message


@pytest.mark.parametrize(
    "second",
    [
        nat_pool("b", 50005, 50020, 23, protocol="Udp"),
        nat_pool("b", 50005, 50020, 23, frontend="fe2"),
        nat_pool("b", 50011, 50020, 23),
    ],
    ids=["other-protocol", "other-frontend", "adjacent"],
)
def test_pool_ranges_may_overlap_on_another_protocol_or_frontend(second: Json) -> None:
    pools = [nat_pool("a", 50000, 50010, 22), second]
    doc = vmss_behind_lb(2, nat_pools=pools)
    doc["resources"].insert(0, public_ip("pip2"))
    frontends = doc["resources"][3]["properties"]["frontendIPConfigurations"]
    frontends.append(public_frontend("fe2", "pip2"))
    assert len(plan_of(doc).nat) == 4


@pytest.mark.parametrize(
    ("settings", "at"),
    [
        (
            {
                "nat_rules": [
                    nat_rule("a", 22, ports=(60000, 60010), pool="pool"),
                    nat_rule("b", 23, ports=(60010, 60020), pool="pool", protocol="All"),
                ]
            },
            f"{RULES}/1",
        ),
        (
            {
                "nat_rules": [nat_rule("v1", 22, port=60010, protocol="All")],
                "rules": [lb_rule("web", 60010, 80, protocol="Udp")],
            },
            "/resources/2/properties/loadBalancingRules/0",
        ),
        (
            {"rules": [lb_rule("a", 80, 80), lb_rule("b", 80, 8080)]},
            "/resources/2/properties/loadBalancingRules/1",
        ),
        (
            {"nat_rules": [nat_rule("nat", 22, port=443)], "rules": [lb_rule("web", 443, 443)]},
            "/resources/2/properties/loadBalancingRules/0",
        ),
    ],
    ids=["v2-vs-v2", "v1-all-vs-lb-rule-udp", "lb-rule-vs-lb-rule", "nat-rule-vs-lb-rule"],
)
def test_two_rules_on_one_frontend_protocol_and_port_conflict(settings: Json, at: str) -> None:
    (problem,) = plan_problems(behind_lb(**settings))
    assert (problem.code, str(problem.at)) == ("LoadBalancerFrontendPortConflict", at)


def test_lb_rules_on_one_backend_port_protocol_and_pool_conflict_without_floating_ip() -> None:
    rules = [lb_rule("a", 80, 80), lb_rule("b", 81, 80)]
    (problem,) = plan_problems(behind_lb(rules=rules))
    assert (problem.code, str(problem.at)) == (
        "RulesUseSameBackendPortProtocolAndPool",
        "/resources/2/properties/loadBalancingRules/1",
    )
    assert "'a' and 'b'" in problem.message


@pytest.mark.parametrize(
    "second",
    [lb_rule("b", 81, 80, floating_ip=True), lb_rule("b", 81, 80, protocol="Udp")],
    ids=["floating-ip", "other-protocol"],
)
def test_lb_rules_may_share_a_backend_port_with_floating_ip_or_another_protocol(
    second: Json,
) -> None:
    result = plan_of(behind_lb(rules=[lb_rule("a", 80, 80), second]))
    assert [e.rule_name for e in result.balancing] == ["a", "b"]


@pytest.mark.parametrize(
    ("settings", "at"),
    [
        ({"nat_pools": [nat_pool("p", 50010, 50000, 22)]}, f"{POOLS}/0"),
        ({"nat_rules": [nat_rule("r", 22, ports=(60010, 60000), pool="pool")]}, f"{RULES}/0"),
    ],
    ids=["pool", "v2-rule"],
)
def test_range_that_ends_before_it_starts_is_one_error(settings: Json, at: str) -> None:
    ipc = ip_configuration(
        nat_pools=["p"] if "nat_pools" in settings else (), backend_pools=["pool"]
    )
    (problem,) = plan_problems(behind_lb(scale_set("vmss", 2, ipc), **settings))
    assert (problem.code, str(problem.at)) == ("InvalidFrontendPortRange", at)


def test_every_plan_problem_is_reported_together() -> None:
    pools = [nat_pool("a", 50000, 50001, 22), nat_pool("b", 50001, 50010, 23)]
    doc = behind_lb(
        scale_set("vmss", 3, ip_configuration(nat_pools=["a"])),
        nat_pools=pools,
        nat_rules=[nat_rule("r", 22)],
        rules=[lb_rule("x", 80, 80), lb_rule("y", 81, 80)],
    )
    assert where(plan_problems(doc)) == {
        "InboundNatPoolFrontendPortRangesOverlapping": [f"{POOLS}/1"],
        "RulesUseSameBackendPortProtocolAndPool": ["/resources/2/properties/loadBalancingRules/1"],
        "MissedInboundNatRuleV2Properties": [f"{RULES}/0"],
        "InboundNatPoolFrontendPortRangeSmallerThanRequestedPorts": [f"{POOLS}/0"],
    }


# --- references --------------------------------------------------------------------------------
def test_missing_frontend_pool_or_probe_of_a_template_lb_is_invalid_resource_reference() -> None:
    doc = behind_lb(
        scale_set("vmss", 2, ip_configuration(nat_pools=["p"], backend_pools=["pool"])),
        nat_pools=[nat_pool("p", 50000, 50010, 22, frontend="nofe")],
        rules=[lb_rule("r", 80, 80, pool="nopool", probe="noprobe")],
    )
    problems = plan_problems(doc)
    assert where(problems) == {
        "InvalidResourceReference": [
            f"{POOLS}/0/properties/frontendIPConfiguration",
            "/resources/2/properties/loadBalancingRules/0/properties/backendAddressPool",
            "/resources/2/properties/loadBalancingRules/0/properties/probe",
        ]
    }
    assert (
        resource_id("Microsoft.Network/loadBalancers/probes", "lb", "noprobe")
        in problems[2].message
    )


def test_reference_to_a_resource_of_the_wrong_type_is_an_error() -> None:
    rule = lb_rule("r", 80, 80)
    rule["properties"]["probe"] = lb_ref("lb", "backendAddressPools", "pool")
    (problem,) = plan_problems(behind_lb(rules=[rule]))
    assert (problem.code, str(problem.at)) == (
        "InvalidJsonReferenceWrongType",
        "/resources/2/properties/loadBalancingRules/0/properties/probe",
    )


def test_reference_outside_the_template_is_a_warning() -> None:
    far = "/subscriptions/x/resourceGroups/y/providers/Microsoft.Network/loadBalancers/far"
    outside = {"id": f"{far}/backendAddressPools/p"}
    rule = lb_rule("r", 80, 80)
    rule["properties"]["backendAddressPool"] = outside
    result = plan_of(behind_lb(rules=[rule]))
    assert [e.backends for e in result.balancing] == [()]
    (warning,) = result.warnings
    assert (warning.code, str(warning.at)) == (
        "ReferenceOutsideTemplate",
        "/resources/2/properties/loadBalancingRules/0/properties/backendAddressPool",
    )


def test_nic_in_a_subnet_outside_the_template_is_warned_about() -> None:
    doc = template(network_interface("nic", ip_configuration(vnet_name="elsewhere")))
    result = plan_of(doc)
    assert [b.private_ip_address for b in result.backends] == ["10.255.0.4"]
    assert Counter(codes(result.warnings)) == Counter(
        {"ReferenceOutsideTemplate": 1, "SubnetOutsideTemplate": 1}
    )


# --- private and frontend addresses --------------------------------------------------------------
def _internal() -> Json:
    return template(
        vnet("vnet", "10.0.0.0/16", subnet("default", "10.0.0.0/24")),
        load_balancer(
            frontends=[internal_frontend("dyn"), internal_frontend("st", ip="10.0.0.5")],
            nat_pools=[nat_pool("p", 50000, 50010, 22, frontend="dyn")],
        ),
        network_interface("nic", ip_configuration(ip="10.0.0.4")),
        scale_set("vmss", 3, ip_configuration(nat_pools=["p"])),
    )


def test_static_addresses_are_reserved_before_dynamic_ones_go_from_dot_4_up() -> None:
    result = plan_of(_internal())
    frontends = {f.label: (f.address, f.private_ip_address) for f in result.frontends}
    assert frontends == {"lb/dyn": ("127.0.0.1", "10.0.0.6"), "lb/st": ("127.0.0.2", "10.0.0.5")}
    assert [(b.label, b.private_ip_address) for b in result.backends] == [
        ("nic", "10.0.0.4"),
        ("vmss/0", "10.0.0.7"),
        ("vmss/1", "10.0.0.8"),
        ("vmss/2", "10.0.0.9"),
    ]


def test_static_address_outside_its_subnet_is_an_error() -> None:
    doc = template(vnet(), network_interface("nic", ip_configuration(ip="10.1.0.4")))
    (problem,) = plan_problems(doc)
    assert (problem.code, str(problem.at)) == (
        "PrivateIPAddressNotInSubnet",
        "/resources/1/properties/ipConfigurations/0",
    )


def test_full_subnet_is_an_error() -> None:
    # a /29 has 8 addresses: Azure keeps the first four and the last, leaving three
    doc = template(
        vnet("vnet", "10.0.0.0/16", subnet("default", "10.0.0.0/29")), scale_set("vmss", 4)
    )
    assert codes(plan_problems(doc)) == ["SubnetIsFull"]
    three = template(
        vnet("vnet", "10.0.0.0/16", subnet("default", "10.0.0.0/29")), scale_set("vmss", 3)
    )
    assert [b.private_ip_address for b in plan_of(three).backends] == [
        "10.0.0.4",
        "10.0.0.5",
        "10.0.0.6",
    ]


def test_public_frontends_take_loopback_addresses_in_order_then_internal_ones() -> None:
    doc = template(
        public_ip("a"),
        public_ip("b"),
        vnet(),
        load_balancer(
            frontends=[
                public_frontend("fa", "a"),
                internal_frontend("int"),
                public_frontend("fb", "b"),
            ]
        ),
    )
    frontends = [
        (f.label, f.address, f.public_ip_address, f.private_ip_address)
        for f in plan_of(doc).frontends
    ]
    assert frontends == [
        ("lb/fa", "127.0.0.1", "a", None),
        ("lb/int", "127.0.0.3", None, "10.0.0.4"),
        ("lb/fb", "127.0.0.2", "b", None),
    ]


@pytest.mark.parametrize("name", ["lb/dyn", "DYN"])
def test_frontend_address_override_moves_the_frontend_and_its_entries(name: str) -> None:
    result = plan(load(_internal()), {name: "127.0.0.9"})
    frontends = {f.label: f.address for f in result.frontends}
    assert frontends == {"lb/dyn": "127.0.0.9", "lb/st": "127.0.0.2"}
    assert {e.frontend.address for e in result.nat} == {"127.0.0.9"}


def test_unknown_or_ambiguous_frontend_override_is_an_error() -> None:
    doc = template(
        public_ip("a"),
        public_ip("b"),
        load_balancer("lb1", frontends=[public_frontend("fe", "a")], backend_pools=()),
        load_balancer("lb2", frontends=[public_frontend("fe", "b")], backend_pools=()),
    )
    deployment = load(doc)
    for name, why in (("nope", "matches no frontend"), ("fe", "is ambiguous")):
        with pytest.raises(LbsimError) as caught:
            plan(deployment, {name: "127.0.0.9"})
        assert caught.value.code == "UnknownFrontend"
        assert why in caught.value.message
    assert {f.label: f.address for f in plan(deployment, {"lb2/fe": "127.0.0.7"}).frontends} == {
        "lb1/fe": "127.0.0.1",
        "lb2/fe": "127.0.0.7",
    }


# --- load-balancing rules ------------------------------------------------------------------------
def test_lb_rule_gets_its_pool_members_and_probe() -> None:
    doc = behind_lb(
        scale_set("vmss", 2, ip_configuration(backend_pools=["pool"])),
        rules=[lb_rule("web", 80, 8080, probe="http", protocol="All")],
        probes=[probe("http", 8080)],
    )
    entries = plan_of(doc).balancing
    assert [(e.rule_name, e.protocol, e.frontend_port, e.backend_port) for e in entries] == [
        ("web", TCP, 80, 8080),
        ("web", UDP, 80, 8080),
    ]
    assert [b.label for b in entries[0].backends] == ["vmss/0", "vmss/1"]
    assert entries[0].probe is not None
    assert (entries[0].probe.name, entries[0].probe.port, entries[0].probe.interval_s) == (
        "http",
        8080,
        15.0,
    )


def test_ha_ports_rule_is_left_out_with_a_warning() -> None:
    result = plan_of(behind_lb(rules=[lb_rule("ha", 0, 0, protocol="All")]))
    assert result.balancing == ()
    assert codes(result.warnings) == ["HaPortsNotEmulated"]


# --- the flow check -----------------------------------------------------------------------------
def _guarded(nic_rules: tuple[Json, ...] = ()) -> Plan:
    subnet_nsg = nsg(
        "subnet-nsg",
        security_rule("deny-bad", 100, "Deny", source="203.0.113.66"),
        security_rule("allow-ssh", 200, source="203.0.113.0/24", port="22"),
    )
    doc = vmss_behind_lb(2, subnet_nsg=subnet_nsg)
    if nic_rules:
        doc["resources"].insert(0, nsg("nic-nsg", *nic_rules))
        profile = doc["resources"][-1]["properties"]["virtualMachineProfile"]
        nic = profile["networkProfile"]["networkInterfaceConfigurations"][0]["properties"]
        nic["networkSecurityGroup"] = rid("Microsoft.Network/networkSecurityGroups", "nic-nsg")
    return plan_of(doc)


def test_nat_flow_is_judged_with_the_client_address_and_the_backend_port() -> None:
    result = _guarded()
    check = check_nat(result, find_nat_entry(result, TCP, 50001), "203.0.113.7", 40000)
    flow = check.flow
    assert (str(flow.source_address), flow.source_port) == ("203.0.113.7", 40000)
    assert (str(flow.destination_address), flow.destination_port) == ("10.0.0.5", 22)
    assert (check.verdict.access, check.verdict.rule and check.verdict.rule.name) == (
        SecurityRuleAccess.ALLOW,
        "allow-ssh",
    )
    assert check.nat is not None
    assert check.nat.rule_name == "ssh.1"
    assert check.verdict.level == "subnet"


def test_subnet_deny_wins_over_a_nic_allow() -> None:
    result = _guarded((security_rule("allow-all", 100),))
    check = check_nat(result, find_nat_entry(result, TCP, 50000), "203.0.113.66", 1)
    verdict = check.verdict
    assert verdict.access is SecurityRuleAccess.DENY
    assert (verdict.rule and verdict.rule.name, verdict.level) == ("deny-bad", "subnet")
    assert verdict.network_security_group == resource_id(
        "Microsoft.Network/networkSecurityGroups", "subnet-nsg"
    )
    assert [(e.rule.name, e.matched) for e in verdict.evaluated] == [("deny-bad", True)]


def test_nic_deny_blocks_what_the_subnet_allows() -> None:
    result = _guarded((security_rule("deny-ssh", 100, "Deny", port="22"),))
    verdict = check_nat(result, find_nat_entry(result, TCP, 50000), "203.0.113.7", 1).verdict
    assert (verdict.access, verdict.rule and verdict.rule.name, verdict.level) == (
        SecurityRuleAccess.DENY,
        "deny-ssh",
        "networkInterface",
    )


@pytest.mark.parametrize(
    ("sku", "access"), [("Basic", SecurityRuleAccess.ALLOW), ("Standard", SecurityRuleAccess.DENY)]
)
def test_without_any_nsg_a_basic_load_balancer_is_open_and_a_standard_one_closed(
    sku: str, access: SecurityRuleAccess
) -> None:
    doc = vmss_behind_lb(1)
    for item in doc["resources"]:
        if "sku" in item and item["type"] != "Microsoft.Compute/virtualMachineScaleSets":
            item["sku"]["name"] = sku  # the load balancer and its public IP
    result = plan_of(doc)
    entry = find_nat_entry(result, TCP, 50000)
    assert entry.frontend.sku == sku
    verdict = check_nat(result, entry, "198.51.100.1", 1).verdict
    assert (verdict.access, verdict.rule, verdict.evaluated) == (access, None, ())


def test_a_standard_internal_load_balancer_without_nsg_admits_its_virtual_network_only() -> None:
    doc = template(
        vnet("vnet", "10.0.0.0/16", subnet("default", "10.0.0.0/24")),
        load_balancer(
            frontends=[internal_frontend(ip="10.0.0.100")],
            nat_pools=[nat_pool("ssh", 50000, 50119, 22)],
        ),
        scale_set("vmss", 1, ip_configuration(nat_pools=["ssh"], backend_pools=["pool"])),
    )
    result = plan_of(doc)
    entry = find_nat_entry(result, TCP, 50000)
    inside = check_nat(result, entry, "10.0.7.9", 1).verdict
    outside = check_nat(result, entry, "198.51.100.1", 1).verdict
    assert (inside.access, outside.access) == (SecurityRuleAccess.ALLOW, SecurityRuleAccess.DENY)


def test_direct_flow_to_a_frontend_goes_through_the_nat_and_to_a_backend_does_not() -> None:
    result = _guarded()
    via_nat = check_direct(result, TCP, "203.0.113.7", 1, address="127.0.0.1", port=50001)
    assert via_nat.nat is not None
    assert via_nat.nat.rule_name == "ssh.1"
    direct = check_direct(result, TCP, "203.0.113.7", 1, address="10.0.0.5", port=23)
    assert (direct.nat, direct.backend.label, direct.verdict.access) == (
        None,
        "vmss/1",
        SecurityRuleAccess.DENY,
    )
    with pytest.raises(LbsimError) as caught:
        check_direct(result, TCP, "203.0.113.7", 1, address="10.9.9.9", port=22)
    assert caught.value.code == "NoSuchDestination"


def test_finding_a_nat_entry_by_port_protocol_and_frontend() -> None:
    doc = vmss_behind_lb(1)
    doc["resources"].insert(0, public_ip("pip2"))
    lb = doc["resources"][3]["properties"]
    lb["frontendIPConfigurations"].append(public_frontend("fe2", "pip2"))
    lb["inboundNatPools"].append(nat_pool("ssh2", 50000, 50099, 22, frontend="fe2"))
    ipc = doc["resources"][-1]["properties"]["virtualMachineProfile"]["networkProfile"]
    ipc["networkInterfaceConfigurations"][0]["properties"]["ipConfigurations"][0]["properties"][
        "loadBalancerInboundNatPools"
    ].append(lb_ref("lb", "inboundNatPools", "ssh2"))
    result = plan_of(doc)
    with pytest.raises(LbsimError) as caught:
        find_nat_entry(result, TCP, 50000)
    assert caught.value.code == "AmbiguousFrontendPort"
    assert find_nat_entry(result, TCP, 50000, "lb/fe2").rule_name == "ssh2.0"
    assert find_nat_entry(result, TCP, 50000, "127.0.0.1").rule_name == "ssh.0"
    with pytest.raises(LbsimError) as caught:
        find_nat_entry(result, UDP, 50000)
    assert caught.value.code == "NoSuchFrontendPort"


# --- laws ----------------------------------------------------------------------------------------
def _pool_entries(result: Plan) -> dict[str, list[NatEntry]]:
    out: dict[str, list[NatEntry]] = {}
    for entry in result.nat:
        if entry.kind is NatKind.POOL:
            out.setdefault(entry.source_rule, []).append(entry)
    return out


def _users(deployment: Deployment, pool_id: str) -> list[tuple[str, int]]:
    """The (scale set, instance) pairs whose NICs use the pool, in instance order."""
    return [
        (vmss.name, instance)
        for vmss in deployment.virtual_machine_scale_sets
        for instance in range(vmss.capacity)
        for config in vmss.network_interface_configurations
        for ipc in config.ip_configurations
        if pool_id.lower() in {r.key for r in ipc.load_balancer_inbound_nat_pools}
    ]


@given(s.nat_pool_deployments())
def test_every_instance_gets_exactly_one_port_per_pool_inside_its_range(
    deployment: Deployment,
) -> None:
    by_pool = _pool_entries(plan(deployment))
    for pool in deployment.load_balancers[0].inbound_nat_pools:
        entries = by_pool.get(pool.name, [])
        transports = pool.protocol.transports()
        got = Counter(
            (e.backend.scale_set, e.backend.instance_id, e.protocol) for e in entries if e.backend
        )
        wanted = Counter(
            (name, i, t) for name, i in _users(deployment, pool.id) for t in transports
        )
        assert got == wanted
        for entry in entries:
            assert (
                pool.frontend_port_range_start
                <= entry.frontend_port
                <= pool.frontend_port_range_end
            )
            assert entry.rule_name == f"{pool.name}.{entry.backend and entry.backend.instance_id}"


@given(s.nat_pool_deployments())
def test_no_two_entries_share_frontend_address_protocol_and_port(deployment: Deployment) -> None:
    keys = [e.listen_key for e in plan(deployment).nat]
    assert len(keys) == len(set(keys))


@given(s.nat_pool_deployments())
def test_plan_is_deterministic(deployment: Deployment) -> None:
    rebuilt = attrs.evolve(
        deployment,
        load_balancers=tuple(attrs.evolve(lb) for lb in deployment.load_balancers),
    )
    assert plan(deployment) == plan(deployment) == plan(rebuilt)


def _ports(deployment: Deployment) -> dict[tuple[str, str, int], int]:
    """Each pool entry's frontend port by (pool, scale set, instance)."""
    return {
        (e.source_rule, e.backend.scale_set or "", e.backend.instance_id or 0): e.frontend_port
        for e in plan(deployment).nat
        if e.backend is not None
    }


@given(s.nat_pool_deployments())
def test_ports_depend_only_on_instance_order(deployment: Deployment) -> None:
    (lb,) = deployment.load_balancers
    ports = _ports(deployment)
    for pool in lb.inbound_nat_pools:
        for position, (name, instance) in enumerate(_users(deployment, pool.id)):
            assert ports[(pool.name, name, instance)] == pool.frontend_port_range_start + position
    # declaration order of the pools, backend ports, protocols and subnet addresses do not matter
    changed = tuple(
        attrs.evolve(p, backend_port=p.backend_port + 1, protocol=TransportProtocol.TCP)
        for p in reversed(lb.inbound_nat_pools)
    )
    (network,) = deployment.virtual_networks
    moved = attrs.evolve(network.subnets[0], address_prefixes=("10.9.0.0/24",))
    variant = attrs.evolve(
        deployment,
        load_balancers=(attrs.evolve(lb, inbound_nat_pools=changed),),
        virtual_networks=(attrs.evolve(network, subnets=(moved,)),),
    )
    assert _ports(variant) == ports


# --- finding what listens on a frontend port ----------------------------------------------------
def _two_frontends_on_443(backend_pool: str | None = "pool") -> Plan:
    frontends = [public_frontend("a"), internal_frontend("b")]
    rules = [lb_rule("on-a", 443, 443, frontend="a"), lb_rule("on-b", 443, 444, frontend="b")]
    ipc = ip_configuration(backend_pools=[backend_pool] if backend_pool else [])
    doc = behind_lb(scale_set("vmss", 1, ipc), frontends=frontends, rules=rules)
    return plan_of(doc)


def test_a_rule_port_on_two_frontends_asks_which_and_each_is_found_by_name() -> None:
    result = _two_frontends_on_443()
    with pytest.raises(LbsimError) as caught:
        find_entry(result, TCP, 443)
    assert caught.value.code == "AmbiguousFrontendPort"
    assert "lb/a" in caught.value.message
    assert "lb/b" in caught.value.message
    found = find_entry(result, TCP, 443, "lb/b")
    assert (found.rule_name, found.backend_port) == ("on-b", 444)


def test_nothing_on_a_port_says_so_and_names_the_other_transport() -> None:
    result = _two_frontends_on_443()
    with pytest.raises(LbsimError) as caught:
        find_entry(result, UDP, 443, "lb/a")
    assert caught.value.code == "NoSuchFrontendPort"
    assert "load-balancing rule" in caught.value.message
    assert "(it is a Tcp port)" in caught.value.message


def test_a_rule_whose_pool_is_empty_is_its_own_error() -> None:
    result = _two_frontends_on_443(backend_pool=None)  # nobody in "pool"
    with pytest.raises(LbsimError) as caught:
        find_entry(result, TCP, 443, "lb/a")
    assert caught.value.code == "LoadBalancingRuleHasNoBackend"
    assert "'on-a'" in caught.value.message


def test_a_public_ip_per_instance_gives_each_instance_a_frontend_of_its_own() -> None:
    ipc = ip_configuration(nat_pools=["ssh"], backend_pools=["pool"])
    ipc["properties"]["publicIPAddressConfiguration"] = {
        "name": "pub",
        "properties": {"idleTimeoutInMinutes": 15},
    }
    doc = behind_lb(scale_set("vmss", 2, ipc), nat_pools=[nat_pool("ssh", 50000, 50119, 22)])
    result = plan_of(doc)
    own = [e for e in result.nat if e.kind is NatKind.INSTANCE_PUBLIC_IP]
    assert [(e.frontend.label, e.rule_name, e.frontend_port, e.backend_port) for e in own] == [
        ("pub/vmss_0", "pub.22", 22, 22),  # a Basic public IP that no NSG guards: Linux's SSH
        ("pub/vmss_1", "pub.22", 22, 22),
    ]
    assert {e.idle_timeout_s for e in own} == {900.0}
    assert str(own[0].at).endswith("/ipConfigurations/0")
    pool = [e for e in result.nat if e.kind is NatKind.POOL]
    assert len(pool) == 2  # the load balancer's NAT pool still works
    addresses = [e.frontend.address for e in (*pool, *own)]
    assert addresses == ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.3"]


def test_a_global_tier_load_balancer_is_left_out_with_a_warning() -> None:
    doc = behind_lb(scale_set("vmss", 1, ip_configuration(backend_pools=["pool"])))
    doc["resources"][2]["sku"]["tier"] = "Global"
    doc["resources"][2]["properties"]["loadBalancingRules"] = [lb_rule("http", 80, 80)]
    result = plan_of(doc)
    assert result.balancing == ()
    (warning,) = result.warnings
    assert warning.code == "GlobalLoadBalancerNotEmulated"
    assert str(warning.at) == "/resources/2/properties/loadBalancingRules/0"


def test_a_frontend_chained_to_a_gateway_load_balancer_warns_and_still_serves() -> None:
    frontend = public_frontend()
    frontend["properties"]["gatewayLoadBalancer"] = {
        "id": resource_id(f"{LB}/frontendIPConfigurations", "gwlb", "fe")
    }
    doc = behind_lb(
        scale_set("vmss", 1, ip_configuration(backend_pools=["pool"])),
        frontends=[frontend],
        rules=[lb_rule("http", 80, 80)],
    )
    result = plan_of(doc)
    assert [w.code for w in result.warnings] == ["GatewayLoadBalancerNotEmulated"]
    assert [e.rule_name for e in result.balancing] == ["http"]


def test_a_frontend_name_that_names_nothing_is_said_so() -> None:
    result = _two_frontends_on_443()
    with pytest.raises(LbsimError) as caught:
        find_entry(result, TCP, 443, "lb/nope")
    assert caught.value.code == "UnknownFrontend"
    assert "lb/a, lb/b" in caught.value.message


def _outbound(name: str, *frontends: str, protocol: str = "All") -> Json:
    refs = [lb_ref("lb", "frontendIPConfigurations", f) for f in frontends]
    return {
        "name": name,
        "properties": {
            "frontendIPConfigurations": refs,
            "backendAddressPool": lb_ref("lb", "backendAddressPools", "pool"),
            "protocol": protocol,
        },
    }


def _with_outbound(*outbound: Json, snat_off: bool = False) -> Json:
    rule = lb_rule("http", 80, 80)
    rule["properties"]["disableOutboundSnat"] = snat_off
    doc = behind_lb(scale_set("vmss", 1, ip_configuration(backend_pools=["pool"])), rules=[rule])
    doc["resources"][2]["properties"]["outboundRules"] = list(outbound)
    return doc


def test_outbound_rules_are_checked_as_azure_checks_them() -> None:
    assert len(plan_of(_with_outbound(_outbound("out", "fe"), snat_off=True)).balancing) == 1
    must_disable = (
        "LoadBalancingRuleMustDisableSNATSinceSameFrontendIPConfigurationIsReferencedByOutboundRule"
    )
    assert where(plan_problems(_with_outbound(_outbound("out", "fe")))) == {
        must_disable: ["/resources/2/properties/loadBalancingRules/0"]
    }
    missing = _with_outbound(_outbound("out", "nosuch"), snat_off=True)
    assert where(plan_problems(missing)) == {
        "InvalidResourceReference": [
            "/resources/2/properties/outboundRules/0/properties/frontendIPConfigurations/0"
        ]
    }
    twice = _with_outbound(
        _outbound("tcp", "fe", protocol="Tcp"), _outbound("all", "fe"), snat_off=True
    )
    assert where(plan_problems(twice)) == {
        "MoreThanOneOutboundRuleUsingSameFrontendIPConfigurationAndProtocolIsNotSupported": [
            "/resources/2/properties/outboundRules/1"
        ]
    }
    apart = _with_outbound(
        _outbound("tcp", "fe", protocol="Tcp"),
        _outbound("udp", "fe", protocol="Udp"),
        snat_off=True,
    )
    assert len(plan_of(apart).balancing) == 1


def _with_https_probe(sku: str) -> Json:
    https = {"name": "tls", "properties": {"protocol": "Https", "port": 443, "requestPath": "/"}}
    rule = lb_rule("web", 443, 443, probe="tls")
    doc = behind_lb(
        scale_set("vmss", 1, ip_configuration(backend_pools=["pool"])),
        rules=[rule],
        probes=[https],
    )
    doc["resources"][2]["sku"] = {"name": sku}
    return doc


def test_an_https_probe_needs_a_standard_load_balancer() -> None:
    (entry,) = plan_of(_with_https_probe("Standard")).balancing
    assert entry.probe is not None
    assert entry.probe.protocol is ProbeProtocol.HTTPS
    problems = plan_problems(_with_https_probe("Basic"))
    assert where(problems) == {
        "HttpsProbeRequiresStandardSku": ["/resources/2/properties/probes/0/properties/protocol"]
    }
    assert "'tls' of 'lb' uses HTTPS" in problems[0].message
