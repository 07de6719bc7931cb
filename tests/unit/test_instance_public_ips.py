"""Instance public IPs (a jump box's, a scale set's per-instance ones): a frontend of their own
and one TCP entry per port the instance's NSGs could let in, judged per connection."""

from __future__ import annotations

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from jumpboxes import (
    jumpbox,
    jumpbox_nic,
    network,
    per_instance,
    public_ip,
    virtual_machine,
    web_scale_set,
)
from templates import (
    Json,
    load,
    load_balancer,
    nsg,
    plan_of,
    plan_problems,
    public_frontend,
    security_rule,
    template,
    vnet,
)

from lbsim.control.check import check_direct, check_nat, find_entry
from lbsim.control.diff import diff, listen_table
from lbsim.control.fleet import delete, fresh, scale
from lbsim.control.plan import plan
from lbsim.control.types import NatEntry, NatKind, Plan
from lbsim.model import SecurityRuleAccess, TransportProtocol

TCP = TransportProtocol.TCP


def own(result: Plan) -> list[NatEntry]:
    return [e for e in result.nat if e.kind is NatKind.INSTANCE_PUBLIC_IP]


def ports(result: Plan, label: str | None = None) -> list[int]:
    return [e.frontend_port for e in own(result) if label in (None, e.frontend.label)]


def allow(name: str, priority: int, port: str, source: str = "*") -> Json:
    return security_rule(name, priority, source=source, port=port)


def deny(name: str, priority: int, port: str, source: str = "*") -> Json:
    return security_rule(name, priority, "Deny", source=source, port=port)


# --- a jump box ----------------------------------------------------------------------------------
def test_a_jump_box_listens_on_its_public_ip_where_its_nsg_allows_ssh() -> None:
    rules = nsg("jumpbox-nsg", allow("allow-ssh", 100, "22", "203.0.113.0/24"))
    result = plan_of(jumpbox(rules, nic_nsg="jumpbox-nsg"))
    (entry,) = own(result)
    assert (entry.rule_name, entry.load_balancer, entry.protocol) == (
        "jumpbox-pip.22",
        "jumpbox-pip",
        TCP,
    )
    assert (entry.frontend_port, entry.backend_port) == (22, 22)
    assert entry.backend is not None
    assert entry.backend.label == "jumpbox"
    assert entry.backend.private_ip_address == "10.0.1.4"
    frontend = entry.frontend
    assert (frontend.label, frontend.address, frontend.sku) == (
        "jumpbox-pip/jumpbox",
        "127.0.0.1",
        "Standard",
    )
    assert frontend in result.frontends
    assert not frontend.internal
    assert str(entry.at) == "/resources/3/properties/ipConfigurations/0"
    assert result.warnings == ()


def test_every_connection_through_it_is_judged_with_the_clients_address() -> None:
    rules = nsg("jumpbox-nsg", allow("allow-ssh", 100, "22", "203.0.113.0/24"))
    result = plan_of(jumpbox(rules, nic_nsg="jumpbox-nsg"))
    entry = find_entry(result, TCP, 22)
    assert isinstance(entry, NatEntry)
    allowed = check_nat(result, entry, "203.0.113.7", 50000).verdict
    denied = check_nat(result, entry, "198.51.100.1", 50000).verdict
    assert allowed.access is SecurityRuleAccess.ALLOW
    assert (denied.access, denied.rule.name if denied.rule else None) == (
        SecurityRuleAccess.DENY,
        "DenyAllInBound",
    )


def test_ports_come_from_allow_rules_singles_small_ranges_and_a_wide_ranges_first() -> None:
    rules = nsg(
        "n",
        allow("web", 100, "80"),
        allow("few", 110, "8000-8003"),
        allow("many", 120, "10000-20000"),  # wider than 64 ports: its first port only
        deny("no-9000", 130, "9000"),
        allow("too-late", 140, "9000"),  # denied above: not a port to listen on
        allow("udp", 150, "53"),
    )
    rules["properties"]["securityRules"][-1]["properties"]["protocol"] = "Udp"
    result = plan_of(jumpbox(rules, nic_nsg="n"))
    assert ports(result) == [80, 8000, 8001, 8002, 8003, 10000]


def test_a_rule_on_every_port_gives_the_remote_login_port_of_the_vms_os() -> None:
    rules = nsg("n", allow("everything", 100, "*", "203.0.113.0/24"))
    assert ports(plan_of(jumpbox(rules, nic_nsg="n"))) == [22]
    assert ports(plan_of(jumpbox(rules, nic_nsg="n", os="windows"))) == [3389]


def test_both_levels_must_allow_a_port() -> None:
    subnet_rules = nsg("subnet-nsg", allow("ssh", 100, "22"), allow("web", 110, "80"))
    nic_rules = nsg("nic-nsg", allow("ssh", 100, "22"), allow("tls", 110, "443"))
    doc = jumpbox(subnet_rules, nic_rules, subnet_nsg="subnet-nsg", nic_nsg="nic-nsg")
    assert ports(plan_of(doc)) == [22]


def test_a_port_open_only_to_the_virtual_network_is_not_a_way_in_from_outside() -> None:
    rules = nsg("n", allow("vnet-ssh", 100, "22", "VirtualNetwork"))
    result = plan_of(jumpbox(rules, nic_nsg="n"))  # the default rules allow the vnet anyway
    assert own(result) == []
    (warning,) = result.warnings
    assert warning.code == "InstancePublicIPAdmitsNothing"
    assert "jumpbox-pip/jumpbox" in warning.message


def test_standard_is_closed_and_basic_open_when_no_nsg_guards_the_instance() -> None:
    closed = plan_of(jumpbox(sku="Standard"))
    assert own(closed) == []
    assert [w.code for w in closed.warnings] == ["InstancePublicIPAdmitsNothing"]
    assert "no NSG guards it" in closed.warnings[0].message
    opened = plan_of(jumpbox(sku="Basic"))
    assert ports(opened) == [22]
    assert own(opened)[0].frontend.sku == "Basic"
    assert not own(opened)[0].frontend.closed_by_default


def test_an_instance_listens_on_at_most_64_ports_remote_login_first() -> None:
    rules = nsg(
        "n", allow("ssh", 100, "22"), *(allow(f"p{i}", 200 + i, str(1000 + i)) for i in range(70))
    )
    result = plan_of(jumpbox(rules, nic_nsg="n"))
    assert ports(result) == [22, *range(1000, 1063)]
    assert [w.code for w in result.warnings] == ["InstancePublicIPPortsCapped"]


def test_a_frontend_override_moves_an_instance_public_ip() -> None:
    rules = nsg("n", allow("ssh", 100, "22"))
    deployment = load(jumpbox(rules, nic_nsg="n"))
    (entry,) = own(plan(deployment, {"jumpbox-pip/jumpbox": "127.0.0.9"}))
    assert entry.frontend.address == "127.0.0.9"


def test_a_public_ip_that_a_load_balancer_uses_cannot_be_a_nics_too() -> None:
    doc = template(
        public_ip("shared"),
        vnet("vnet", "10.0.0.0/16"),
        load_balancer(frontends=[public_frontend("fe", "shared")]),
        jumpbox_nic("nic", pip="shared", subnet_name="default"),
        virtual_machine("vm", "nic"),
    )
    (problem,) = plan_problems(doc)
    assert problem.code == "PublicIPAddressInUse"
    assert "loadBalancers/lb/frontendIPConfigurations/fe" in problem.message
    assert (
        str(problem.at) == "/resources/3/properties/ipConfigurations/0/properties/publicIPAddress"
    )


# --- a scale set's per-instance public IPs --------------------------------------------------------
def test_each_instance_gets_a_public_ip_of_its_own() -> None:
    rules = nsg("web-nsg", allow("ssh", 100, "22"))
    result = plan_of(per_instance(3, rules, web_nsg="web-nsg"))
    assert [(e.frontend.label, e.frontend.address, e.rule_name) for e in own(result)] == [
        ("pub/web_0", "127.0.0.1", "pub.22"),
        ("pub/web_1", "127.0.0.2", "pub.22"),
        ("pub/web_2", "127.0.0.3", "pub.22"),
    ]
    assert {e.idle_timeout_s for e in own(result)} == {600.0}
    assert [e.backend.label for e in own(result) if e.backend] == ["web/0", "web/1", "web/2"]


def test_per_instance_addresses_skip_those_of_public_ip_resources() -> None:
    doc = per_instance(2, sku="Basic")
    doc["resources"].insert(0, public_ip("first"))
    doc["resources"].insert(0, public_ip("second"))
    result = plan_of(doc)
    assert [e.frontend.address for e in own(result)] == ["127.0.0.3", "127.0.0.4"]
    assert own(result)[0].frontend.sku == "Basic"


def test_instances_keep_their_addresses_and_ports_across_plans() -> None:
    deployment = load(per_instance(3, sku="Basic"))
    vmss = deployment.virtual_machine_scale_sets[0]
    first = plan(deployment)
    fleet = delete(fresh(deployment), "web", [0])
    second = plan(deployment, fleet=fleet, previous=first)
    before = {e.frontend.label: e.listen_key for e in own(first)}
    after = {e.frontend.label: e.listen_key for e in own(second)}
    assert after == {k: v for k, v in before.items() if k != "pub/web_0"}
    third = plan(deployment, fleet=scale(fleet, vmss, 3), previous=second)
    kept = {e.frontend.label: e.listen_key for e in own(third)}
    assert {k: kept[k] for k in after} == after  # web_1 and web_2 stay where they were
    assert kept["pub/web_3"] == ("127.0.0.1", TCP, 22)  # the newcomer takes the free address


def test_a_scale_out_adds_the_new_instances_listeners_only() -> None:
    deployment = load(per_instance(2, sku="Basic"))
    old = plan(deployment)
    fleet = scale(fresh(deployment), deployment.virtual_machine_scale_sets[0], 3)
    new = plan(deployment, fleet=fleet, previous=old)
    change = diff(old, new)
    assert change.listeners_added == (("127.0.0.3", TCP, 22),)
    assert change.listeners_removed == change.listeners_changed == ()
    assert change.instances_added == ("web/2",)
    entry = listen_table(new)[("127.0.0.3", TCP, 22)]
    assert isinstance(entry, NatEntry)
    assert entry.frontend.label == "pub/web_2"


def test_a_rule_for_one_instances_address_opens_that_instance_only() -> None:
    web1 = allow("web1-http", 110, "80")
    web1["properties"]["destinationAddressPrefix"] = "10.0.0.5"
    rules = nsg("web-nsg", allow("ssh", 100, "22"), web1)
    result = plan_of(per_instance(3, rules, web_nsg="web-nsg"))
    assert [ports(result, f"pub/web_{i}") for i in range(3)] == [[22], [22, 80], [22]]


def test_a_changed_nsg_changes_the_ports_listened_on() -> None:
    old = plan_of(per_instance(1, nsg("web-nsg", allow("ssh", 100, "22")), web_nsg="web-nsg"))
    new = plan_of(
        per_instance(
            1, nsg("web-nsg", allow("ssh", 100, "22"), allow("web", 110, "80")), web_nsg="web-nsg"
        )
    )
    assert diff(old, new).listeners_added == (("127.0.0.1", TCP, 80),)


def test_an_instance_keeps_a_held_address_while_no_other_frontend_has_it() -> None:
    deployment = load(per_instance(1, sku="Basic"))
    first = plan(deployment)
    (entry,) = own(first)
    moved = attrs.evolve(entry, frontend=attrs.evolve(entry.frontend, address="127.0.0.7"))
    held = attrs.evolve(first, nat=(moved,))
    assert [e.frontend.address for e in own(plan(deployment, previous=held))] == ["127.0.0.7"]
    doc = per_instance(1, sku="Basic")
    doc["resources"].insert(0, public_ip("newcomer"))  # now 127.0.0.1 stands for this one
    again = plan(load(doc), previous=first)
    assert [e.frontend.address for e in own(again)] == ["127.0.0.2"]


# --- the law -------------------------------------------------------------------------------------
_RULE = st.tuples(
    st.sampled_from(["Allow", "Deny"]),
    st.sampled_from(["22", "80", "*", "3389", "1000-1100", "443-445", "8080"]),
    st.sampled_from(["*", "203.0.113.0/24", "VirtualNetwork", "Internet", "10.0.0.0/8"]),
)
# every address outside the virtual network that the rules above can tell apart
_OUTSIDE = (
    "203.0.113.1",
    "8.8.8.8",
    "203.0.113.0",
    "203.0.113.255",
    "203.0.112.255",
    "203.0.114.0",
    "10.255.255.255",
    "9.255.255.255",
    "11.0.0.0",
    "10.1.0.0",
    "168.63.129.15",
    "168.63.129.17",
)
_CANDIDATES = {
    "22": (22,),
    "80": (80,),
    "3389": (3389,),
    "1000-1100": (1000,),
    "443-445": (443, 444, 445),
    "8080": (8080,),
}


def _some_source_gets_in(result: Plan, address: str, port: int) -> bool:
    return any(
        check_direct(result, TCP, source, 50000, address=address, port=port).verdict.access
        is SecurityRuleAccess.ALLOW
        for source in _OUTSIDE
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_RULE, max_size=6),
    st.integers(min_value=0, max_value=4),
    st.sampled_from(["Standard", "Basic"]),
)
def test_instance_entries_are_the_ports_someone_outside_can_reach_each_forwarded_to_itself(
    rules: list[tuple[str, str, str]], capacity: int, sku: str
) -> None:
    written = [
        security_rule(f"r{i}", 100 + i, access, source=source, port=port)
        for i, (access, port, source) in enumerate(rules)
    ]
    doc = template(
        nsg("web-nsg", *written),
        nsg("jumpbox-nsg", *written),
        network(web_nsg="web-nsg"),
        public_ip("jumpbox-pip", sku),
        jumpbox_nic(nsg="jumpbox-nsg"),
        virtual_machine("jumpbox", "jumpbox-nic"),
        web_scale_set(capacity, sku),
    )
    result = plan_of(doc)
    keys = [e.listen_key for e in result.nat]
    assert len(keys) == len(set(keys))
    named = (port for access, port, _ in rules if access == "Allow")  # lbsim listens on these
    candidates = {22}.union(*(_CANDIDATES.get(port, ()) for port in named))
    for backend in result.backends:
        mine = [e for e in own(result) if e.backend == backend]
        assert all((e.protocol, e.frontend_port) == (TCP, e.backend_port) for e in mine)
        assert len({e.frontend for e in mine}) <= 1
        reachable = {
            p for p in candidates if _some_source_gets_in(result, backend.private_ip_address, p)
        }
        assert {e.frontend_port for e in mine} == reachable
