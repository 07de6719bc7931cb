"""``lbsim check`` and the running data plane agree: for a load-balancing rule both name the
same backend for any client, in every distribution mode."""

from __future__ import annotations

import ipaddress

import attrs
from hypothesis import given
from hypothesis import strategies as st
from runtime_harness import example_plan

from lbsim.control.check import check_balancing
from lbsim.dataplane.listeners import Listener, Route
from lbsim.model import LoadDistribution

PLAN = example_plan("lb-rules-probe", "127.0.0.71", "web-lb/fe")
RULE = next(e for e in PLAN.balancing if e.rule_name == "http-80")
clients = st.tuples(
    st.integers(min_value=1, max_value=2**24 - 1).map(
        lambda n: str(ipaddress.IPv4Address(0xCB000000 + n))
    ),
    st.integers(min_value=1, max_value=65535),
)


@given(client=clients, mode=st.sampled_from(list(LoadDistribution)))
def test_check_names_the_backend_the_listener_picks(
    client: tuple[str, int], mode: LoadDistribution
) -> None:
    entry = attrs.evolve(RULE, load_distribution=mode)
    routes = tuple(Route(b, entry.backend_port, ("127.1.0.1", 80)) for b in entry.backends)
    listener = Listener(entry, routes, idle_timeout_s=240.0)
    picked = listener.pick(client)
    assert picked is not None
    assert check_balancing(PLAN, entry, *client).backend == picked.backend


@given(address=clients.map(lambda c: c[0]), ports=st.lists(st.integers(1, 65535), min_size=2))
def test_source_ip_affinity_ignores_the_client_port(address: str, ports: list[int]) -> None:
    entry = attrs.evolve(RULE, load_distribution=LoadDistribution.SOURCE_IP)
    chosen = {check_balancing(PLAN, entry, address, port).backend.label for port in ports}
    assert len(chosen) == 1
