"""The Runtime on real loopback sockets: NAT ports to instances, NSG enforcement, UDP, idle
timeouts, unreachable and user-mapped backends, load-balancing rules."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest
import trio
from runtime_harness import (
    FAST,
    allow,
    connect,
    ending,
    example_plan,
    free_ports,
    http_get,
    listener_on,
    nat_pool,
    nsg_sources,
    place,
    plan_of,
    read_line,
    running,
    scale_set,
    settings,
    udp_ask,
    udp_client,
)
from waiting import eventually

from lbsim.dataplane.events import FlowEvent
from lbsim.dataplane.settings import BackendPattern, DenyMode, SourceMap, SourceRule

pytestmark = pytest.mark.every_engine  # once per engine (conftest.py)


# --- NAT ports to instances ------------------------------------------------------------------
async def test_each_instance_answers_on_its_own_nat_port_only() -> None:
    where = place()
    the_plan = example_plan("vmss-linux-ssh", where.frontend, "web-lb/public")
    everyone = SourceMap.parse({"127.0.0.0/8": "203.0.113.0/24"})  # the NSG's allowed range
    async with running(the_plan, settings(where, sources=everyone)) as runtime:
        assert {lst.label for lst in runtime.listeners} == {
            f"{where.frontend}:{port}" for port in (50000, 50001, 50002)
        }
        assert {s.identity.name for s in runtime.instances} == {"web_0", "web_1", "web_2"}
        targets = {lst.routes[0].target for lst in runtime.listeners}
        assert len(targets) == 3  # one server of its own per instance
        for instance in range(3):
            with await connect((where.frontend, 50000 + instance)) as sock:
                banner = await read_line(sock)
            assert banner.startswith(f"SSH-2.0-lbsim_web_{instance} ".encode())
            assert f"at 10.0.0.{4 + instance}".encode() in banner
        with pytest.raises(ConnectionRefusedError):
            await connect((where.frontend, 50003))  # in the pool's range, but no instance


async def test_http_instances_name_themselves_through_their_nat_port() -> None:
    where = place()
    start = free_ports(where.frontend, 3)
    the_plan = plan_of(scale_set([nat_pool("web", start, 8080, size=3)]), where.frontend)
    async with running(the_plan, settings(where)) as runtime:
        for instance in range(3):
            answer = await http_get((where.frontend, start + instance))
            assert answer["name"] == f"vmss_{instance}"
            assert answer["instanceId"] == instance
            assert answer["privateIp"] == f"10.0.0.{4 + instance}"
            assert answer["backendPort"] == 8080
        assert {lst.stats.flows_total for lst in runtime.listeners} == {1}


# --- NSG -----------------------------------------------------------------------------------
async def test_nsg_allows_a_mapped_source_and_resets_a_denied_one() -> None:
    where = place()
    the_plan = example_plan("vmss-linux-ssh", where.frontend, "web-lb/public")
    events: list[FlowEvent] = []
    async with running(the_plan, settings(where, sources=nsg_sources(where)), events) as rt:
        with await connect((where.frontend, 50001), where.client(7)) as sock:
            assert (await read_line(sock)).startswith(b"SSH-2.0-lbsim_web_1 ")
        with await connect((where.frontend, 50001), where.client(200)) as sock:
            assert await ending(sock, within=1) == "reset"
        stats = listener_on(rt, 50001).stats
        assert (stats.allowed, stats.denied, stats.flows_total) == (1, 1, 1)
        assert rt.nsg_decisions == {
            ("web-nsg", "subnet", "UserRule_allow-ssh", "Allow"): 1,
            ("web-nsg", "subnet", "DefaultRule_DenyAllInBound", "Deny"): 1,
        }
    decisions = [(e.source, e.access, e.nsg_rule) for e in events if e.kind == "decision"]
    assert decisions == [
        ("203.0.113.7", "Allow", "UserRule_allow-ssh"),
        ("198.51.100.72", "Deny", "DefaultRule_DenyAllInBound"),
    ]
    closes = [e for e in events if e.kind == "close"]  # only the allowed flow was relayed
    assert [(e.source, e.backend, e.reason) for e in closes] == [
        ("203.0.113.7", "web/1", "client-closed")
    ]
    assert closes[0].peer == events[0].peer
    assert closes[0].client == f"{where.client(7)}:{closes[0].peer[1]}"
    assert len(events) == 3


async def test_a_standard_load_balancer_without_nsg_admits_nothing() -> None:
    where = place()
    start = free_ports(where.frontend, 1)
    template = scale_set([nat_pool("ssh", start, 22, size=1)], capacity=1, sku="Standard")
    async with running(plan_of(template, where.frontend), settings(where)) as runtime:
        with await connect((where.frontend, start)) as sock:
            assert await ending(sock, within=1) == "reset"
        stats = listener_on(runtime, start).stats
        assert (stats.allowed, stats.denied, stats.flows_total) == (0, 1, 0)
        assert runtime.nsg_decisions == {("", "", "", "Deny"): 1}


async def test_deny_mode_drop_holds_silently_then_closes() -> None:
    where = place()
    the_plan = example_plan("vmss-linux-ssh", where.frontend, "web-lb/public")
    config = settings(where, sources=nsg_sources(where), deny_mode=DenyMode.DROP, deny_hold_s=0.6)
    async with running(the_plan, config) as runtime:
        with await connect((where.frontend, 50000), where.client(130)) as sock:
            started = trio.current_time()
            with trio.move_on_after(0.3) as waited:
                await sock.recv(100)
            assert waited.cancelled_caught  # no bytes, no reset, no close yet
            assert await ending(sock) == "eof"
            assert 0.5 < trio.current_time() - started < 2.5
        assert listener_on(runtime, 50000).stats.denied == 1


# --- UDP -----------------------------------------------------------------------------------
async def test_udp_clients_get_their_own_replies_and_idle_flows_expire() -> None:
    where = place()
    start = free_ports(where.frontend, 2)
    the_plan = plan_of(
        scale_set([nat_pool("dns", start, 5300, protocol="Udp", size=2)], capacity=2),
        where.frontend,
    )
    async with running(the_plan, settings(where, idle_timeout_scale=FAST)) as runtime:
        clients = [await udp_client() for _ in range(6)]

        async def talk(index: int, sock: trio.socket.SocketType) -> None:
            instance = index % 2
            for round_ in range(3):
                data = b"client %d round %d" % (index, round_)
                reply = await udp_ask(sock, (where.frontend, start + instance), data)
                assert reply == f"vmss/{instance}: ".encode() + data

        async with trio.open_nursery() as nursery:
            for index, sock in enumerate(clients):
                nursery.start_soon(talk, index, sock)
        asked = trio.current_time()
        stats = [listener_on(runtime, start + i, "Udp").stats for i in range(2)]
        assert [(s.flows_total, s.flows_active) for s in stats] == [(3, 3), (3, 3)]
        assert [s.inbound.packets for s in stats] == [9, 9]
        await eventually(lambda: stats[0].flows_active == stats[1].flows_active == 0)
        assert trio.current_time() - asked > 0.3
        assert [s.closes for s in stats] == [{"idle-timeout": 3}, {"idle-timeout": 3}]
        again = await udp_ask(clients[0], (where.frontend, start), b"back")
        assert again == b"vmss/0: back"
        assert stats[0].flows_total == 4  # a new flow after the old one expired
        for sock in clients:
            sock.close()


async def test_protocol_all_forwards_tcp_and_udp_on_one_port() -> None:
    where = place()
    start = free_ports(where.frontend, 2)
    the_plan = plan_of(
        scale_set([nat_pool("game", start, 7777, protocol="All", size=2)], capacity=2),
        where.frontend,
    )
    async with running(the_plan, settings(where)) as runtime:
        assert sorted(
            (lst.entry.frontend_port, lst.protocol.value) for lst in runtime.listeners
        ) == [
            (start, "Tcp"),
            (start, "Udp"),
            (start + 1, "Tcp"),
            (start + 1, "Udp"),
        ]
        with await connect((where.frontend, start + 1)) as sock:
            assert await read_line(sock) == b"lbsim instance vmss/1 at 10.0.0.5\n"
            await sock.send(b"ping\n")
            assert await read_line(sock) == b"ping\n"
        with await udp_client() as sock:
            assert await udp_ask(sock, (where.frontend, start + 1), b"ping") == b"vmss/1: ping"


async def test_a_denied_udp_client_gets_nothing_and_is_counted() -> None:
    where = place()
    start = free_ports(where.frontend, 1)
    template = scale_set(
        [nat_pool("dns", start, 5300, protocol="Udp", size=1)],
        capacity=1,
        nsg_rules=[allow("dns-from-partners", 200, "203.0.113.0/25", "5300", "Udp")],
    )
    config = settings(where, sources=nsg_sources(where))
    async with running(plan_of(template, where.frontend), config) as runtime:
        with (
            await udp_client(where.client(3)) as allowed,
            await udp_client(where.client(131)) as denied,
        ):
            assert await udp_ask(allowed, (where.frontend, start), b"q") == b"vmss/0: q"
            for _ in range(2):
                await denied.sendto(b"q", (where.frontend, start))
            with trio.move_on_after(0.3) as waited:
                await denied.recv(100)
            assert waited.cancelled_caught
        stats = listener_on(runtime, start, "Udp").stats
        assert (stats.allowed, stats.denied, stats.flows_total) == (1, 2, 1)
        assert runtime.nsg_decisions == {
            ("nsg", "subnet", "UserRule_dns-from-partners", "Allow"): 1,
            ("nsg", "subnet", "DefaultRule_DenyAllInBound", "Deny"): 2,
        }


# --- idle timeout --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("tcp_reset", "hold_s", "seen"), [(True, 5.0, "reset"), (False, 0.0, "eof")]
)
async def test_idle_tcp_flows_end_with_reset_or_close(
    tcp_reset: bool, hold_s: float, seen: str
) -> None:
    where = place()
    start = free_ports(where.frontend, 1)
    template = scale_set([nat_pool("ssh", start, 22, size=1, tcp_reset=tcp_reset)], capacity=1)
    events: list[FlowEvent] = []
    config = settings(where, idle_timeout_scale=FAST, idle_hold_s=hold_s)
    async with running(plan_of(template, where.frontend), config, events) as runtime:
        listener = listener_on(runtime, start)
        assert listener.idle_timeout_s == pytest.approx(0.5)
        with await connect((where.frontend, start)) as sock:
            await read_line(sock)
            quiet = trio.current_time()
            assert await ending(sock) == seen
            assert 0.4 < trio.current_time() - quiet < 2.5
        await eventually(lambda: listener.stats.flows_active == 0)
        assert listener.stats.closes == {"idle-timeout": 1}
    (close,) = [e for e in events if e.kind == "close"]
    assert close.reason == "idle-timeout"
    assert 0.4 < close.duration_s < 2.5  # on the run's clock, from the flow's start


async def test_an_idle_flow_without_tcp_reset_is_dropped_silently_then_reset() -> None:
    """Azure drops the flow and tells nobody: lbsim holds both sides, unheard, then resets."""
    where = place()
    start = free_ports(where.frontend, 1)
    template = scale_set([nat_pool("ssh", start, 22, size=1)], capacity=1)
    events: list[FlowEvent] = []
    config = settings(where, idle_timeout_scale=FAST, idle_hold_s=1.5)
    async with running(plan_of(template, where.frontend), config, events) as runtime:
        listener = listener_on(runtime, start)
        with await connect((where.frontend, start)) as sock:
            await read_line(sock)
            quiet = trio.current_time()
            await eventually(lambda: listener.stats.flows_active == 0)  # dropped at 0.5 s
            assert [e.reason for e in events if e.kind == "close"] == ["idle-timeout"]
            await sock.send(b"anyone there?\n")  # goes nowhere
            with trio.move_on_after(0.5) as waited:
                await sock.recv(100)
            assert waited.cancelled_caught  # no bytes, no FIN, no RST while held
            assert await ending(sock) == "reset"
            assert 1.6 < trio.current_time() - quiet < 4.0
        assert listener.stats.closes == {"idle-timeout": 1}
        assert listener.stats.inbound.bytes == 0  # the late bytes never reached the backend


# --- backends ------------------------------------------------------------------------------
async def test_an_unreachable_backend_resets_the_client_promptly() -> None:
    where = place()
    start = free_ports(where.frontend, 1)
    closed = free_ports("127.0.0.1", 1)  # nothing listens there
    template = scale_set([nat_pool("ssh", start, 22, size=1)], capacity=1)
    events: list[FlowEvent] = []
    config = settings(where, backends={"vmss": BackendPattern(f"127.0.0.1:{closed}")})
    async with running(plan_of(template, where.frontend), config, events) as runtime:
        assert runtime.instances == []  # the user's service stands in: no built-in server
        with await connect((where.frontend, start)) as sock:
            began = trio.current_time()
            assert await ending(sock, within=1) == "reset"
            assert trio.current_time() - began < 1.0
        stats = listener_on(runtime, start).stats
        assert (stats.backend_failures, stats.flows_total, stats.flows_active) == (1, 0, 0)
    assert [e.kind for e in events] == ["decision", "unreachable"]
    assert events[1].reason == "backend-unreachable"
    assert events[1].target == f"127.0.0.1:{closed}"
    assert events[1].backend == "vmss/0"


async def _user_service(tag: str, stream: trio.SocketStream) -> None:
    async with stream:
        await stream.send_all(f"user service {tag}\n".encode())
        while data := await stream.receive_some(65536):
            await stream.send_all(data)


async def test_user_mapped_backends_receive_the_traffic(nursery: trio.Nursery) -> None:
    where = place()
    start = free_ports(where.frontend, 3)
    base = free_ports("127.0.0.1", 3)
    explicit = free_ports("127.0.0.1", 1)
    for tag, port in (("a", base), ("c", base + 2), ("b", explicit)):
        await nursery.start(trio.serve_tcp, lambda s, t=tag: _user_service(t, s), port)
    pattern = BackendPattern(f"127.0.0.1:{{{base} + instance}}", {1: f"127.0.0.1:{explicit}"})
    template = scale_set([nat_pool("ssh", start, 22, size=3)])
    config = settings(where, backends={"vmss": pattern})
    async with running(plan_of(template, where.frontend), config) as runtime:
        assert runtime.instances == []
        for instance, tag in enumerate("abc"):
            with await connect((where.frontend, start + instance)) as sock:
                assert await read_line(sock) == f"user service {tag}\n".encode()
                await sock.send(b"hello\n")
                assert await read_line(sock) == b"hello\n"
    nursery.cancel_scope.cancel()


async def test_backends_of_other_scale_sets_stay_built_in() -> None:
    where = place()
    start = free_ports(where.frontend, 2)
    template = scale_set([nat_pool("ssh", start, 22, size=2)], capacity=2)
    only_one = BackendPattern(instances={1: "127.0.0.1:9"})  # instance 0 is not mapped
    config = settings(where, backends={"vmss": only_one})
    async with running(plan_of(template, where.frontend), config) as runtime:
        assert [s.identity.name for s in runtime.instances] == ["vmss_0"]
        assert listener_on(runtime, start + 1).routes[0].target == ("127.0.0.1", 9)


# --- load-balancing rules ------------------------------------------------------------------
async def test_load_balancing_rules_spread_flows_and_source_ip_sticks() -> None:
    where = place()
    the_plan = example_plan("lb-rules-probe", where.frontend, "web-lb/fe")
    async with running(the_plan, settings(where)) as runtime:
        spread = Counter([str((await http_get((where.frontend, 80)))["name"]) for _ in range(45)])
        assert set(spread) == {"web_0", "web_1", "web_2"}  # Default: the 5-tuple hash
        sticky: dict[str, set[str]] = {}
        for host in range(1, 13):
            source = where.client(host)
            for _ in range(3):
                answer = await http_get((where.frontend, 8080), source)
                sticky.setdefault(source, set()).add(str(answer["name"]))
        assert all(len(names) == 1 for names in sticky.values())  # SourceIP: one backend each
        assert len(set().union(*sticky.values())) > 1  # yet the addresses spread
        rule = listener_on(runtime, 8080)
        for source, names in sticky.items():
            route = rule.pick((source, 1))
            assert route is not None
            assert names == {route.backend.name}


async def test_a_source_the_nsgs_cannot_judge_is_refused_and_counted_once() -> None:
    where = place()
    start = free_ports(where.frontend, 1)
    template = scale_set([nat_pool("both", start, 5300, protocol="All", size=1)], capacity=1)
    # A source map refuses to map between families (InvalidSourceMap); the runtime must
    # still refuse a flow it cannot judge, so the rule is made here as the map holds it.
    local = ipaddress.ip_network(where.client(0) + "/24", strict=False)
    v6 = SourceMap((SourceRule(local, ipaddress.ip_network("2001:db8::/64")),))
    async with running(plan_of(template, where.frontend), settings(where, sources=v6)) as rt:
        with await connect((where.frontend, start), where.client(5)) as sock:
            assert await ending(sock, within=1) == "reset"
        with await udp_client(where.client(5)) as sock:
            for _ in range(2):
                await sock.sendto(b"q", (where.frontend, start))
            with trio.move_on_after(0.3) as waited:
                await sock.recv(100)
            assert waited.cancelled_caught
        tcp, udp = listener_on(rt, start, "Tcp").stats, listener_on(rt, start, "Udp").stats
        assert (tcp.denied, tcp.flows_total) == (1, 0)
        assert (udp.denied, udp.flows_total) == (2, 0)  # one per datagram, no more
        assert rt.nsg_decisions == {}  # no NSG rule decided
