"""NSG semantics: default rules, evaluation order, matching, the fast path, validation."""

from __future__ import annotations

from ipaddress import IPv4Address, ip_address

import attrs
import pytest
import strategies as s
from hypothesis import given, settings
from hypothesis import strategies as st

from lbsim.control.nsg import (
    NETWORK_INTERFACE,
    SUBNET,
    Flow,
    NetworkContext,
    Verdict,
    compile_network_security_group,
    decide,
    effective_rules,
    evaluate,
    evaluate_rule,
    ordered_rules,
    validate_network_security_group,
)
from lbsim.control.nsg.compiled import compiled
from lbsim.control.nsg.syntax import PrefixKind, parse_port_range, parse_prefix
from lbsim.errors import LbsimError, Severity
from lbsim.model import (
    NetworkSecurityGroup,
    SecurityRule,
    SecurityRuleAccess,
    SecurityRuleDirection,
    SecurityRuleProtocol,
    SubResource,
)
from lbsim.model.nsg_defaults import default_security_rules
from lbsim.pointer import Pointer

IN = SecurityRuleDirection.INBOUND
OUT = SecurityRuleDirection.OUTBOUND
ALLOW = SecurityRuleAccess.ALLOW
DENY = SecurityRuleAccess.DENY
TCP = SecurityRuleProtocol.TCP
UDP = SecurityRuleProtocol.UDP
ICMP = SecurityRuleProtocol.ICMP
ANY = SecurityRuleProtocol.ANY

CTX = NetworkContext(virtual_network_prefixes=["10.0.0.0/16", "fd00:10::/64"])
WEB_ASG = s.ASG_IDS[0]


def rule(
    name: str,
    priority: int,
    *,
    access: SecurityRuleAccess = ALLOW,
    direction: SecurityRuleDirection = IN,
    protocol: SecurityRuleProtocol = ANY,
    source: str | None = "*",
    destination: str | None = "*",
    source_port: str | None = "*",
    destination_port: str | None = "*",
    **extra: object,
) -> SecurityRule:
    return SecurityRule(
        name=name,
        protocol=protocol,
        access=access,
        priority=priority,
        direction=direction,
        source_address_prefix=source,
        destination_address_prefix=destination,
        source_port_range=source_port,
        destination_port_range=destination_port,
        **extra,  # type: ignore[arg-type]
    )


def nsg(name: str, *rules: SecurityRule) -> NetworkSecurityGroup:
    return NetworkSecurityGroup(
        id=f"/nsgs/{name}",
        name=name,
        security_rules=rules,
        default_security_rules=default_security_rules(),
    )


def flow(
    source: str,
    destination: str,
    port: int = 80,
    *,
    protocol: SecurityRuleProtocol = TCP,
    direction: SecurityRuleDirection = IN,
    source_port: int = 50000,
) -> Flow:
    return Flow(protocol, direction, source, source_port, destination, port)


def both(
    f: Flow,
    subnet: NetworkSecurityGroup | None,
    nic: NetworkSecurityGroup | None,
    ctx: NetworkContext = CTX,
) -> Verdict:
    """The explaining verdict, after checking that the fast path decides the same."""
    verdict = evaluate(f, subnet, nic, ctx)
    assert decide(f, subnet, nic, ctx) == verdict.decision
    return verdict


def decided_by(verdict: Verdict) -> tuple[SecurityRuleAccess, str | None, str | None]:
    return (verdict.access, verdict.rule.name if verdict.rule else None, verdict.level)


# --- default rules -----------------------------------------------------------------------------
def test_default_rules_are_azures_six() -> None:
    table = [
        (r.name, r.priority, r.direction, r.access, r.source_address_prefix,
         r.destination_address_prefix)
        for r in default_security_rules()
    ]  # fmt: skip
    assert table == [
        ("AllowVnetInBound", 65000, IN, ALLOW, "VirtualNetwork", "VirtualNetwork"),
        ("AllowAzureLoadBalancerInBound", 65001, IN, ALLOW, "AzureLoadBalancer", "*"),
        ("DenyAllInBound", 65500, IN, DENY, "*", "*"),
        ("AllowVnetOutBound", 65000, OUT, ALLOW, "VirtualNetwork", "VirtualNetwork"),
        ("AllowInternetOutBound", 65001, OUT, ALLOW, "*", "Internet"),
        ("DenyAllOutBound", 65500, OUT, DENY, "*", "*"),
    ]
    for r in default_security_rules():
        assert r.is_default
        assert r.protocol is ANY
        assert (r.source_port_range, r.destination_port_range) == ("*", "*")
        assert r.flow_log_name == f"DefaultRule_{r.name}"


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (flow("203.0.113.5", "10.0.0.4"), (DENY, "DenyAllInBound")),
        (flow("10.0.1.9", "10.0.0.4"), (ALLOW, "AllowVnetInBound")),
        (flow("168.63.129.16", "10.0.0.4"), (ALLOW, "AllowVnetInBound")),
        (flow("10.0.0.4", "8.8.8.8", direction=OUT), (ALLOW, "AllowInternetOutBound")),
        (flow("10.0.0.4", "10.0.2.2", direction=OUT), (ALLOW, "AllowVnetOutBound")),
        (flow("2001:db8::1", "fd00:10::4"), (DENY, "DenyAllInBound")),
        (flow("fd00:10::9", "fd00:10::4"), (ALLOW, "AllowVnetInBound")),
        (flow("fd00:10::4", "2001:db8::1", direction=OUT), (ALLOW, "AllowInternetOutBound")),
    ],
)
def test_default_rules_decide_when_no_user_rule_matches(
    f: Flow, expected: tuple[SecurityRuleAccess, str]
) -> None:
    verdict = both(f, None, nsg("nic"))
    assert (verdict.access, verdict.rule.name if verdict.rule else None) == expected
    assert verdict.network_security_group == "/nsgs/nic"
    assert verdict.level == NETWORK_INTERFACE


def test_the_probe_address_counts_as_virtual_network() -> None:
    probe = flow("168.63.129.16", "10.0.0.4")
    deny_vnet = rule("DenyVnet", 100, access=DENY, source="VirtualNetwork", destination="*")
    assert decided_by(both(probe, nsg("sub"), None)) == (ALLOW, "AllowVnetInBound", SUBNET)
    assert decided_by(both(probe, nsg("sub", deny_vnet), None)) == (DENY, "DenyVnet", SUBNET)
    # Outside any VNet prefix, the destination is not VirtualNetwork: the probe rule decides.
    no_vnet = NetworkContext()
    assert decided_by(both(probe, nsg("sub"), None, no_vnet)) == (
        ALLOW,
        "AllowAzureLoadBalancerInBound",
        SUBNET,
    )


def test_nsg_without_listed_default_rules_gets_azures() -> None:
    bare = NetworkSecurityGroup(id="/nsgs/bare", name="bare")
    assert ordered_rules(bare, IN) == default_security_rules()[:3]
    assert decided_by(both(flow("203.0.113.5", "10.0.0.4"), bare, None)) == (
        DENY,
        "DenyAllInBound",
        SUBNET,
    )


# --- priority and first match ------------------------------------------------------------------
def test_lowest_priority_number_decides_whatever_the_listing_order() -> None:
    allow = rule("AllowWeb", 200, destination_port="80")
    deny = rule("DenyAll", 100, access=DENY)
    f = flow("203.0.113.5", "10.0.0.4", 80)
    assert decided_by(both(f, nsg("a", allow, deny), None)) == (DENY, "DenyAll", SUBNET)
    assert decided_by(both(f, nsg("b", deny, allow), None)) == (DENY, "DenyAll", SUBNET)


def test_first_match_stops_evaluation_and_defaults_follow_user_rules() -> None:
    late_user_rule = rule("Late", 4096, destination_port="443")
    group = nsg("sub", rule("Web", 300, destination_port="80"), late_user_rule)
    verdict = both(flow("203.0.113.5", "10.0.0.4", 443), group, None)
    assert [e.rule.name for e in verdict.evaluated] == ["Web", "Late"]
    assert [e.matched for e in verdict.evaluated] == [False, True]
    verdict = both(flow("203.0.113.5", "10.0.0.4", 8080), group, None)
    assert [e.rule.name for e in verdict.evaluated] == [
        "Web",
        "Late",
        "AllowVnetInBound",
        "AllowAzureLoadBalancerInBound",
        "DenyAllInBound",
    ]


def test_rules_of_the_other_direction_are_not_evaluated() -> None:
    group = nsg("sub", rule("DenyOut", 100, access=DENY, direction=OUT))
    verdict = both(flow("10.0.1.1", "10.0.0.4"), group, None)
    assert decided_by(verdict) == (ALLOW, "AllowVnetInBound", SUBNET)
    assert "DenyOut" not in [e.rule.name for e in verdict.evaluated]


def test_rule_evaluation_reports_each_part() -> None:
    r = rule("Web", 100, protocol=TCP, source="Internet", destination="10.0.0.0/24",
             destination_port="443")  # fmt: skip
    verdict = both(flow("203.0.113.5", "10.0.0.4", 80), nsg("sub", r), None)
    first = verdict.evaluated[0]
    parts = (first.protocol, first.source, first.source_port, first.destination)
    assert parts == (True, True, True, True)
    assert first.destination_port is False
    assert not first.matched
    assert (first.network_security_group, first.network_security_group_name) == ("/nsgs/sub", "sub")
    assert first.level == SUBNET


# --- levels ------------------------------------------------------------------------------------
def test_inbound_needs_both_levels_and_a_subnet_deny_skips_the_nic() -> None:
    allow_web = rule("AllowWeb", 100, destination_port="80")
    deny_web = rule("DenyWeb", 100, access=DENY, destination_port="80")
    f = flow("203.0.113.5", "10.0.0.4", 80)
    verdict = both(f, nsg("sub", allow_web), nsg("nic", allow_web))
    assert decided_by(verdict) == (ALLOW, "AllowWeb", NETWORK_INTERFACE)
    assert [e.level for e in verdict.evaluated] == [SUBNET, NETWORK_INTERFACE]
    verdict = both(f, nsg("sub", allow_web), nsg("nic", deny_web))
    assert decided_by(verdict) == (DENY, "DenyWeb", NETWORK_INTERFACE)
    verdict = both(f, nsg("sub", deny_web), nsg("nic", allow_web))
    assert decided_by(verdict) == (DENY, "DenyWeb", SUBNET)
    assert {e.level for e in verdict.evaluated} == {SUBNET}
    assert verdict.network_security_group == "/nsgs/sub"


def test_outbound_meets_the_nic_first() -> None:
    deny = rule("DenyOut", 100, access=DENY, direction=OUT)
    f = flow("10.0.0.4", "8.8.8.8", 443, direction=OUT)
    verdict = both(f, nsg("sub", deny), nsg("nic"))
    assert decided_by(verdict) == (DENY, "DenyOut", SUBNET)
    assert [e.level for e in verdict.evaluated] == [NETWORK_INTERFACE, NETWORK_INTERFACE, SUBNET]
    verdict = both(f, nsg("sub"), nsg("nic", deny))
    assert decided_by(verdict) == (DENY, "DenyOut", NETWORK_INTERFACE)
    assert {e.level for e in verdict.evaluated} == {NETWORK_INTERFACE}


def test_a_missing_nsg_allows_at_its_level() -> None:
    f = flow("203.0.113.5", "10.0.0.4", 80)
    verdict = both(f, None, None)
    assert verdict == Verdict(ALLOW, None, None, None, ())
    allow = rule("AllowWeb", 100, destination_port="80")
    assert decided_by(both(f, None, nsg("nic", allow))) == (ALLOW, "AllowWeb", NETWORK_INTERFACE)
    assert decided_by(both(f, nsg("sub", allow), None)) == (ALLOW, "AllowWeb", SUBNET)
    assert decided_by(both(f, nsg("sub"), None)) == (DENY, "DenyAllInBound", SUBNET)


def test_the_same_nsg_on_both_levels_reports_the_deciding_level() -> None:
    group = nsg("shared", rule("AllowWeb", 100, destination_port="80"))
    verdict = both(flow("203.0.113.5", "10.0.0.4", 80), group, group)
    assert decided_by(verdict) == (ALLOW, "AllowWeb", NETWORK_INTERFACE)
    verdict = both(flow("203.0.113.5", "10.0.0.4", 81), group, group)
    assert decided_by(verdict) == (DENY, "DenyAllInBound", SUBNET)


def test_effective_rules_lists_levels_in_evaluation_order() -> None:
    sub = nsg("sub", rule("B", 200), rule("A", 100), rule("Out", 100, direction=OUT))
    nic = nsg("nic", rule("N", 150))
    listed = [(e.level, e.network_security_group_name, e.rule.name)
              for e in effective_rules(sub, nic, IN)]  # fmt: skip
    defaults = ["AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound"]
    assert listed == [
        *[(SUBNET, "sub", name) for name in ["A", "B", *defaults]],
        *[(NETWORK_INTERFACE, "nic", name) for name in ["N", *defaults]],
    ]
    outbound = [(e.level, e.rule.name) for e in effective_rules(sub, None, OUT)]
    assert outbound[0] == (SUBNET, "Out")
    assert effective_rules(None, None, IN) == ()


# --- address prefixes, tags and application security groups -----------------------------------
@pytest.mark.parametrize(
    ("prefix", "source", "matches"),
    [
        ("203.0.113.0/24", "203.0.113.77", True),
        ("203.0.113.0/24", "203.0.114.1", False),
        ("203.0.113.7", "203.0.113.7", True),
        ("203.0.113.7", "203.0.113.8", False),
        ("203.0.113.5/24", "203.0.113.77", True),  # host bits: read as the network
        ("*", "2001:db8::1", True),
        ("0.0.0.0/0", "2001:db8::1", False),
        ("::/0", "203.0.113.1", False),
        ("2001:db8::/32", "2001:db8:0:1::5", True),
        ("Internet", "203.0.113.1", True),
        ("Internet", "10.0.3.3", False),
        ("Internet", "2001:db8::1", True),
        ("Internet", "fd00:10::1", False),
        ("INTERNET", "8.8.8.8", True),
        ("internet", "8.8.8.8", True),
        ("VirtualNetwork", "10.0.200.1", True),
        ("VIRTUAL_NETWORK", "10.0.200.1", True),
        ("virtualNETWORK", "10.1.0.1", False),
        ("VirtualNetwork", "fd00:10::77", True),
        ("AzureLoadBalancer", "168.63.129.16", True),
        ("AZURE_LOADBALANCER", "168.63.129.16", True),
        ("AzureLoadBalancer", "10.0.0.1", False),
        ("Storage", "10.0.0.1", False),  # not emulated: matches nothing
        ("AzureCloud", "8.8.8.8", False),
        ("10.0.0.0/33", "10.0.0.1", False),  # malformed: matches nothing
    ],
)
def test_source_prefixes(prefix: str, source: str, matches: bool) -> None:
    version = ip_address(source).version
    destination = "10.0.0.4" if version == 4 else "fd00:10::4"
    allow = rule("Probe", 100, source=prefix, destination="*")
    deny_rest = rule("DenyRest", 200, access=DENY)
    verdict = both(flow(source, destination, 9), nsg("sub", allow, deny_rest), None)
    assert (verdict.rule.name if verdict.rule else None) == ("Probe" if matches else "DenyRest")


def test_singular_and_plural_prefixes_are_a_union() -> None:
    r = rule("Some", 100, source="203.0.113.1", source_address_prefixes=("198.51.100.0/24",),
             destination=None, destination_address_prefixes=("10.0.0.4", "10.0.0.5"))  # fmt: skip
    group = nsg("sub", r)
    for source, destination, name in [
        ("203.0.113.1", "10.0.0.4", "Some"),
        ("198.51.100.9", "10.0.0.5", "Some"),
        ("198.51.100.9", "10.0.0.6", "DenyAllInBound"),
        ("203.0.113.2", "10.0.0.4", "DenyAllInBound"),
    ]:
        verdict = both(flow(source, destination), group, None)
        assert verdict.rule is not None
        assert verdict.rule.name == name


def test_application_security_groups_match_their_members() -> None:
    ctx = NetworkContext(
        virtual_network_prefixes=["10.0.0.0/16"],
        asg_members={WEB_ASG.upper(): ["10.0.0.4", "10.0.0.5"]},
    )
    to_web = rule("ToWeb", 100, access=DENY, destination=None,
                  destination_application_security_groups=(SubResource(WEB_ASG),))  # fmt: skip
    from_web = rule("FromWeb", 100, access=DENY, direction=OUT, source=None,
                    source_application_security_groups=(SubResource(WEB_ASG.upper()),))  # fmt: skip
    group = nsg("sub", to_web, from_web)
    assert decided_by(both(flow("10.0.9.9", "10.0.0.5"), group, None, ctx))[1] == "ToWeb"
    assert decided_by(both(flow("10.0.9.9", "10.0.0.6"), group, None, ctx))[1] == (
        "AllowVnetInBound"
    )
    out = flow("10.0.0.4", "8.8.8.8", direction=OUT)
    assert decided_by(both(out, group, None, ctx))[1] == "FromWeb"
    # A group lbsim knows no members of matches nothing.
    assert decided_by(both(out, group, None, CTX))[1] == "AllowInternetOutBound"


def test_network_context_normalises_its_inputs() -> None:
    ctx = NetworkContext(virtual_network_prefixes=["10.0.0.5/16"], asg_members={"/A/B": ["::1"]})
    assert [str(p) for p in ctx.virtual_network_prefixes] == ["10.0.0.0/16"]
    assert ctx.members("/a/b") == frozenset({ip_address("::1")})
    assert ctx.members("/a/c") == frozenset()
    assert [str(p) for p in ctx.virtual_network_tag] == ["10.0.0.0/16", "168.63.129.16/32"]
    assert hash(ctx) == hash(NetworkContext(virtual_network_prefixes=["10.0.0.0/16"]))


# --- ports and protocols -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ranges", "port", "matches"),
    [
        ("*", 0, True),
        ("*", 65535, True),
        ("80", 80, True),
        ("80", 81, False),
        ("1000-2000", 1000, True),
        ("1000-2000", 2000, True),
        ("1000-2000", 2001, False),
        ("80, 443, 8000-8010", 8005, True),
        ("80,443", 443, True),
        ("80, 443", 444, False),
        ("2000-1000", 1500, False),  # malformed: matches nothing
        ("http", 80, False),
        ("70000", 80, False),
    ],
)
def test_destination_port_ranges(ranges: str, port: int, matches: bool) -> None:
    group = nsg("sub", rule("Ports", 100, destination_port=ranges))
    verdict = both(flow("203.0.113.5", "10.0.0.4", port), group, None)
    assert (verdict.rule is not None and verdict.rule.name == "Ports") is matches


def test_plural_and_source_port_ranges() -> None:
    r = rule("Ports", 100, destination_port="22", destination_port_ranges=("3389", "5985-5986"),
             source_port=None, source_port_ranges=("1024-65535",))  # fmt: skip
    group = nsg("sub", r)
    for port, source_port, name in [
        (22, 50000, "Ports"),
        (5986, 50000, "Ports"),
        (3389, 1024, "Ports"),
        (3389, 1023, "DenyAllInBound"),
        (5987, 50000, "DenyAllInBound"),
    ]:
        verdict = both(flow("203.0.113.5", "10.0.0.4", port, source_port=source_port), group, None)
        assert verdict.rule is not None
        assert verdict.rule.name == name


@pytest.mark.parametrize(
    ("rule_protocol", "flow_protocol", "matches"),
    [
        (TCP, TCP, True),
        (TCP, UDP, False),
        (UDP, UDP, True),
        (ICMP, ICMP, True),
        (ICMP, TCP, False),
        (ANY, ICMP, True),
        (ANY, SecurityRuleProtocol.ESP, True),
        (SecurityRuleProtocol.AH, SecurityRuleProtocol.AH, True),
        (SecurityRuleProtocol.ESP, SecurityRuleProtocol.AH, False),
    ],
)
def test_protocols(
    rule_protocol: SecurityRuleProtocol, flow_protocol: SecurityRuleProtocol, matches: bool
) -> None:
    group = nsg("sub", rule("Proto", 100, protocol=rule_protocol, destination_port="80"))
    verdict = both(flow("203.0.113.5", "10.0.0.4", 80, protocol=flow_protocol), group, None)
    assert (verdict.rule is not None and verdict.rule.name == "Proto") is matches


def test_ports_do_not_apply_to_icmp_esp_and_ah() -> None:
    group = nsg("sub", rule("OnlyPort80", 100, destination_port="80", source_port="1"))
    for protocol in (ICMP, SecurityRuleProtocol.ESP, SecurityRuleProtocol.AH):
        verdict = both(flow("203.0.113.5", "10.0.0.4", 0, protocol=protocol), group, None)
        assert decided_by(verdict) == (ALLOW, "OnlyPort80", SUBNET)
        assert verdict.evaluated[0].destination_port is True


def test_a_rule_with_no_prefix_or_port_matches_nothing() -> None:
    group = nsg("sub", rule("Empty", 100, source=None), rule("NoPort", 110, destination_port=None))
    verdict = both(flow("10.0.1.1", "10.0.0.4"), group, None)
    assert decided_by(verdict) == (ALLOW, "AllowVnetInBound", SUBNET)
    assert verdict.evaluated[0].source is False
    assert verdict.evaluated[1].destination_port is False


# --- flows -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: Flow(ANY, IN, "10.0.0.1", 1, "10.0.0.2", 2),
        lambda: Flow(TCP, IN, "10.0.0.1", 70000, "10.0.0.2", 2),
        lambda: Flow(TCP, IN, "10.0.0.1", 1, "10.0.0.2", -1),
        lambda: Flow(TCP, IN, "10.0.0.1", 1, "fd00::2", 2),
        lambda: Flow(TCP, IN, "not-an-address", 1, "10.0.0.2", 2),
    ],
)
def test_invalid_flows_are_refused(make: object) -> None:
    with pytest.raises(LbsimError) as caught:
        make()  # type: ignore[operator]
    assert caught.value.code == "LbsimInvalidFlow"


def test_ipv4_mapped_addresses_are_read_as_ipv4() -> None:
    f = Flow(TCP, IN, "::ffff:203.0.113.5", 1, "::ffff:10.0.0.4", 80)
    assert f.source_address == IPv4Address("203.0.113.5")
    assert decided_by(both(f, nsg("sub", rule("V4", 100, source="203.0.113.0/24")), None))[1] == (
        "V4"
    )


# --- parsing -----------------------------------------------------------------------------------
@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_range_text_reads_back(a: int, b: int) -> None:
    low, high = min(a, b), max(a, b)
    assert parse_port_range(str(a)) == ((a, a),)
    assert parse_port_range(f"{low}-{high}") == ((low, high),)
    assert parse_port_range(f"{a}, {low}-{high}") == ((a, a), (low, high))


@pytest.mark.parametrize("text", ["", "-", "1-", "-5", "65536", "5-4", "1,,2", "0x50", "80 443"])
def test_malformed_port_ranges(text: str) -> None:
    assert parse_port_range(text) is None


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("*", PrefixKind.ANY),
        ("10.0.0.0/8", PrefixKind.NETWORK),
        ("fd00::1", PrefixKind.NETWORK),
        ("Internet", PrefixKind.TAG),
        ("Sql.WestEurope", PrefixKind.OTHER_TAG),
        ("10.0.0.0/33", PrefixKind.INVALID),
        ("10.0.0/0/16", PrefixKind.INVALID),
        ("10.0.0.1-10.0.0.9", PrefixKind.INVALID),
    ],
)
def test_prefix_kinds(text: str, kind: PrefixKind) -> None:
    assert parse_prefix(text).kind is kind


# --- the compiled fast path --------------------------------------------------------------------
def test_compiled_nsgs_are_reused_per_nsg_and_context() -> None:
    group = nsg("sub", rule("A", 100))
    assert compiled(group, CTX) is compiled(group, CTX)
    other = NetworkContext(virtual_network_prefixes=["10.0.0.0/16", "fd00:10::/64"])
    assert compiled(group, other) is not compiled(group, CTX)
    assert compiled(group, other) == compile_network_security_group(group, CTX)


def test_internet_is_compiled_as_the_complement_of_the_vnet_tag() -> None:
    group = nsg("sub", rule("FromInternet", 100, source="Internet"))
    for source, from_internet in [
        ("0.0.0.0", True),
        ("9.255.255.255", True),
        ("10.0.0.0", False),
        ("10.0.255.255", False),
        ("10.1.0.0", True),
        ("168.63.129.15", True),
        ("168.63.129.16", False),
        ("168.63.129.17", True),
        ("255.255.255.255", True),
        ("::", True),
        ("fd00:10::", False),
        ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", True),
    ]:
        destination = "10.0.0.4" if "." in source else "fd00:10::4"
        verdict = both(flow(source, destination), group, None)
        assert (verdict.rule is not None and verdict.rule.name == "FromInternet") is from_internet


# --- laws --------------------------------------------------------------------------------------
# A level has no NSG a third of the time; NSGs with rules are drawn more than empty ones.
LEVELS = st.one_of(
    st.none(),
    s.network_security_groups(min_rules=1),
    s.network_security_groups(name="other"),
)


# Drawing NSGs dominates these tests' time; the agreement law gets the most examples.
LAW = settings(max_examples=50)


@settings(max_examples=150)
@given(LEVELS, LEVELS, s.network_contexts(), st.data())
def test_decide_agrees_with_evaluate(
    subnet: NetworkSecurityGroup | None,
    nic: NetworkSecurityGroup | None,
    ctx: NetworkContext,
    data: st.DataObject,
) -> None:
    f = data.draw(s.flows_near([subnet, nic]), label="flow")
    assert decide(f, subnet, nic, ctx) == evaluate(f, subnet, nic, ctx).decision


@settings(max_examples=300)
@given(s.security_rules(), s.network_contexts(), st.data())
def test_decide_matches_a_rule_exactly_when_evaluate_does(
    r: SecurityRule, ctx: NetworkContext, data: st.DataObject
) -> None:
    group = nsg("one", r)
    f = data.draw(s.flows_near([group]), label="flow")
    matched = evaluate_rule(f, r, group, SUBNET, ctx).matched
    assert (decide(f, group, None, ctx).rule is r) is matched


@LAW
@given(s.flows(), s.network_security_groups(min_rules=2), s.network_contexts(), st.randoms())
def test_verdict_depends_on_priority_not_listing_order(
    f: Flow, group: NetworkSecurityGroup, ctx: NetworkContext, random: object
) -> None:
    rules = list(group.security_rules)
    random.shuffle(rules)  # type: ignore[attr-defined]
    shuffled = attrs.evolve(group, security_rules=tuple(rules))
    assert evaluate(f, shuffled, None, ctx) == evaluate(f, group, None, ctx)
    assert decide(f, None, shuffled, ctx) == decide(f, None, group, ctx)


@LAW
@given(s.flows(), LEVELS, LEVELS, s.network_contexts())
def test_verdict_explains_itself(
    f: Flow,
    subnet: NetworkSecurityGroup | None,
    nic: NetworkSecurityGroup | None,
    ctx: NetworkContext,
) -> None:
    verdict = evaluate(f, subnet, nic, ctx)
    levels = [level for level, group in _levels(f, subnet, nic) if group is not None]
    reached = levels[: levels.index(verdict.level) + 1] if verdict.level else []
    assert [e.level for e in verdict.evaluated] == sorted(
        (e.level for e in verdict.evaluated), key=reached.index
    )
    for level in reached:
        at_level = [e for e in verdict.evaluated if e.level == level]
        assert [e.matched for e in at_level] == [False] * (len(at_level) - 1) + [True]
        assert all(e.rule.direction is f.direction for e in at_level)
    assert verdict.evaluated[-1].rule is verdict.rule if reached else verdict.rule is None
    if verdict.access is DENY:
        assert verdict.level == reached[-1]


@LAW
@given(s.flows(direction=IN), LEVELS, s.network_contexts())
def test_allow_all_first_on_the_nic_leaves_inbound_to_the_subnet(
    f: Flow, subnet: NetworkSecurityGroup | None, ctx: NetworkContext
) -> None:
    allow_all = rule("AllowAll", 99)  # below every priority Azure lets a user rule have
    nic = nsg("nic", allow_all)
    subnet_alone = evaluate(f, subnet, None, ctx)
    verdict = evaluate(f, subnet, nic, ctx)
    if subnet_alone.access is DENY:
        assert verdict == subnet_alone
    else:
        assert decided_by(verdict) == (ALLOW, "AllowAll", NETWORK_INTERFACE)


@LAW
@given(s.flows(direction=IN), LEVELS, s.network_contexts())
def test_deny_all_first_on_the_subnet_denies_every_inbound_flow(
    f: Flow, nic: NetworkSecurityGroup | None, ctx: NetworkContext
) -> None:
    verdict = evaluate(f, nsg("sub", rule("DenyAll", 99, access=DENY)), nic, ctx)
    assert decided_by(verdict) == (DENY, "DenyAll", SUBNET)
    assert len(verdict.evaluated) == 1


@LAW
@given(s.flows(direction=OUT), LEVELS, s.network_contexts())
def test_allow_all_first_on_the_subnet_leaves_outbound_to_the_nic(
    f: Flow, nic: NetworkSecurityGroup | None, ctx: NetworkContext
) -> None:
    subnet = nsg("sub", rule("AllowAllOut", 99, direction=OUT))
    nic_alone = evaluate(f, None, nic, ctx)
    verdict = evaluate(f, subnet, nic, ctx)
    if nic_alone.access is DENY:
        assert verdict == nic_alone
    else:
        assert decided_by(verdict) == (ALLOW, "AllowAllOut", SUBNET)


@LAW
@given(s.flows(), s.network_security_groups(), s.network_contexts())
def test_one_missing_level_is_the_other_level_alone(
    f: Flow, group: NetworkSecurityGroup, ctx: NetworkContext
) -> None:
    as_subnet = evaluate(f, group, None, ctx)
    as_nic = evaluate(f, None, group, ctx)
    assert (as_subnet.access, as_subnet.rule) == (as_nic.access, as_nic.rule)
    assert (as_subnet.level, as_nic.level) == (SUBNET, NETWORK_INTERFACE)
    assert as_subnet.rule is not None  # the default rules always decide


def _levels(
    f: Flow, subnet: NetworkSecurityGroup | None, nic: NetworkSecurityGroup | None
) -> list[tuple[str, NetworkSecurityGroup | None]]:
    pairs = [(SUBNET, subnet), (NETWORK_INTERFACE, nic)]
    return pairs if f.direction is IN else pairs[::-1]


# --- validation --------------------------------------------------------------------------------
def _at(index: int, prop: str) -> Pointer:
    return Pointer.parse(f"/resources/0/properties/securityRules/{index}/properties/{prop}")


def located(*rules: SecurityRule) -> NetworkSecurityGroup:
    """An NSG whose rules say where they came from, as the loader does."""
    return nsg(
        "sub",
        *(
            attrs.evolve(r, at=Pointer.parse(f"/resources/0/properties/securityRules/{i}"))
            for i, r in enumerate(rules)
        ),
    )


def codes(group: NetworkSecurityGroup) -> list[tuple[str, Pointer | None, Severity]]:
    return [(p.code, p.at, p.severity) for p in validate_network_security_group(group)]


ERROR = Severity.ERROR
WARNING = Severity.WARNING


def test_a_valid_nsg_has_no_problems() -> None:
    group = located(
        rule("Web", 100, protocol=TCP, source="Internet", destination_port="80"),
        rule("Rdp", 110, source_address_prefixes=("203.0.113.0/24", "198.51.100.7"),
             source=None, destination_port_ranges=("3389", "5985-5986"), destination_port=None),
        rule("SamePriorityOtherDirection", 100, direction=OUT),
        rule("Highest", 4096, source="AzureLoadBalancer"),
    )  # fmt: skip
    assert validate_network_security_group(group) == []


def test_same_priority_and_direction_conflict_names_both_rules() -> None:
    group = located(rule("First", 200), rule("Second", 300), rule("Third", 200))
    problems = validate_network_security_group(group)
    assert [(p.code, p.at) for p in problems] == [("SecurityRuleConflict", _at(2, "priority"))]
    assert "Third" in problems[0].message
    assert "First" in problems[0].message


@pytest.mark.parametrize("priority", [99, 4097, 65000, 0])
def test_priority_outside_the_user_range(priority: int) -> None:
    assert codes(located(rule("P", priority))) == [
        ("SecurityRuleInvalidPriority", _at(0, "priority"), ERROR)
    ]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"source": "10.0.0.0/33"}, ("SecurityRuleInvalidAddressPrefix", "sourceAddressPrefix")),
        ({"destination": "any"}, ("LbsimServiceTagNotEmulated", "destinationAddressPrefix")),
        ({"source": None}, ("SecurityRuleInvalidAddressPrefix", "sourceAddressPrefix")),
        (
            {"destination_address_prefixes": ("10.0.0.0/24", "not/a/prefix")},
            ("SecurityRuleInvalidAddressPrefix", "destinationAddressPrefixes"),
        ),
        ({"destination_port": "1-70000"}, ("SecurityRuleInvalidPortRange", "destinationPortRange")),
        (
            {"source_port": None, "source_port_ranges": ("80", "x")},
            ("SecurityRuleInvalidPortRange", "sourcePortRanges"),
        ),
        ({"destination_port": None}, ("SecurityRuleInvalidPortRange", "destinationPortRange")),
        (
            {"source": None, "source_address_prefixes": ("10.0.0.0/8", "10.1.0.0/16")},
            ("OverlappingSubnetsNotPermittedInSecurityRule", "sourceAddressPrefixes"),
        ),
        (
            {"source": "10.0.0.7", "source_address_prefixes": ("10.0.0.0/29",)},
            ("OverlappingSubnetsNotPermittedInSecurityRule", "sourceAddressPrefix"),
        ),
        (
            {"destination_address_prefixes": ("Internet", "VirtualNetwork")},
            ("SecurityRuleParameterContainsUnsupportedValue", "destinationAddressPrefixes"),
        ),
        (
            {"source": "10.0.0.0/8", "destination": "fd00::/64"},
            (
                "ResourceCannotContainAddressPrefixesFromDifferentAddressFamilies",
                "destinationAddressPrefix",
            ),
        ),
    ],
)
def test_rule_errors_point_at_the_property(
    changes: dict[str, object], expected: tuple[str, str]
) -> None:
    fields = {"destination": None if "destination_address_prefixes" in changes else "*"}
    r = rule("R", 100, **{**fields, **changes})  # type: ignore[arg-type]
    code, prop = expected
    severity = WARNING if code.startswith("Lbsim") else ERROR
    assert codes(located(r)) == [(code, _at(0, prop), severity)]


def test_warnings_for_what_lbsim_reads_leniently() -> None:
    group = located(
        rule("Tag", 100, source="Storage.WestEurope"),
        rule("HostBits", 110, source="10.0.0.5/24"),
        rule("Commas", 120, destination_port="80, 443"),
    )
    assert codes(group) == [
        ("LbsimServiceTagNotEmulated", _at(0, "sourceAddressPrefix"), WARNING),
        ("LbsimAddressPrefixHostBitsSet", _at(1, "sourceAddressPrefix"), WARNING),
        ("LbsimCommaSeparatedPortRanges", _at(2, "destinationPortRange"), WARNING),
    ]


def test_problems_of_rules_without_a_location_have_no_pointer() -> None:
    problems = validate_network_security_group(nsg("sub", rule("P", 10)))
    assert [(p.code, p.at) for p in problems] == [("SecurityRuleInvalidPriority", None)]


def test_default_rules_are_not_validated() -> None:
    assert validate_network_security_group(nsg("sub")) == []


@LAW
@given(s.network_security_groups(max_rules=10))
def test_generated_nsgs_never_conflict(group: NetworkSecurityGroup) -> None:
    found = {p.code for p in validate_network_security_group(group)}
    assert "SecurityRuleConflict" not in found
    assert "SecurityRuleInvalidPriority" not in found
