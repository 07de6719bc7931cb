"""Flows inside the virtual network stay in the sender's virtual network (no peering is
emulated); the SOCKS endpoint's default address is one of the first instance's subnet; a
native client tunnel needs a Standard or Premium bastion host with tunnelling enabled."""

from __future__ import annotations

import attrs
import pytest
from jumpboxes import bastion_host, per_instance, with_bastion
from templates import VNET, nsg, plan_of, resource_id, security_rule

from lbsim.api.bastion import choose
from lbsim.control.types import Backend, BastionHost, Plan
from lbsim.control.vnet import Outcome, default_source, network_of, reach
from lbsim.errors import LbsimError


def _subnet(vnet: str) -> str:
    return resource_id(f"{VNET}/subnets", vnet, "default")


def _backend(name: str, address: str, vnet: str) -> Backend:
    return Backend(
        ip_configuration_id=f"/nic/{name}/ipconfig",
        name=name,
        private_ip_address=address,
        subnet_id=_subnet(vnet),
        virtual_network_prefixes=("10.0.0.0/16",),
        subnet_prefixes=("10.0.0.0/24",),
    )


# two virtual networks with the same address space: blue's 10.0.0.5 and green's 10.0.0.5
BLUE_A = _backend("blue-a", "10.0.0.4", "blue")
BLUE_B = _backend("blue-b", "10.0.0.5", "blue")
GREEN_A = _backend("green-a", "10.0.0.5", "green")
GREEN_C = _backend("green-c", "10.0.0.6", "green")
PLAN = Plan(backends=(BLUE_A, BLUE_B, GREEN_A, GREEN_C))


def test_an_instance_of_another_virtual_network_is_unreachable() -> None:
    judged = reach(PLAN, "10.0.0.4", "10.0.0.6", 22)  # green-c, from blue-a
    assert judged.outcome is Outcome.UNREACHABLE
    assert judged.backend is None
    assert "virtual network green, not the sender's" in judged.describe()
    assert "no peering" in judged.describe()
    assert reach(PLAN, "10.0.0.5", "10.0.0.6", 22).outcome is Outcome.UNREACHABLE


def test_a_shared_address_reaches_the_senders_own_instance() -> None:
    from_green = reach(PLAN, "10.0.0.6", "10.0.0.5", 22)
    assert from_green.outcome is Outcome.ALLOWED
    assert from_green.backend is GREEN_A
    from_blue = reach(PLAN, "10.0.0.4", "10.0.0.5", 22)
    assert from_blue.backend is BLUE_B


def test_the_network_given_outweighs_the_senders_address() -> None:
    green = _subnet("green").lower().rsplit("/subnets/", 1)[0]
    judged = reach(PLAN, "10.0.0.4", "10.0.0.5", 22, network=green)
    assert judged.backend is GREEN_A
    assert network_of(PLAN, "10.0.0.6") == green
    assert network_of(PLAN, "10.0.7.7") == network_of(PLAN, "10.0.0.4")  # first in plan order
    assert network_of(PLAN, "198.51.100.7") is None


def test_a_bastion_host_reaches_only_its_own_virtual_network() -> None:
    host = BastionHost(
        name="bastion",
        id="/bastionHosts/bastion",
        subnet_id=resource_id(f"{VNET}/subnets", "green", "AzureBastionSubnet"),
        private_ip_address="10.0.1.4",
        virtual_network_prefixes=("10.0.0.0/16",),
    )
    plan = attrs.evolve(PLAN, bastions=(host,))
    assert reach(plan, "10.0.1.4", "10.0.0.4", 22).outcome is Outcome.UNREACHABLE  # blue's
    assert reach(plan, "10.0.1.4", "10.0.0.5", 22).backend is GREEN_A


WEB_NSG = nsg(
    "web-nsg",
    security_rule("ssh-from-web-subnet", 100, source="10.0.0.0/24", port="22"),
    security_rule("no-vnet", 200, "Deny", source="VirtualNetwork"),
)


def test_the_default_source_is_in_the_first_instances_subnet_so_subnet_rules_match() -> None:
    plan = plan_of(per_instance(2, WEB_NSG, web_nsg="web-nsg"))
    source = default_source(plan)
    assert source == "10.0.0.254"  # subnet web 10.0.0.0/24's highest usable address
    judged = reach(plan, source, plan.backends[0].private_ip_address, 22)
    assert (judged.outcome, judged.rule) == (Outcome.ALLOWED, "UserRule_ssh-from-web-subnet")


def _bastion(sku: str, tunneling: bool | None) -> Plan:
    host = bastion_host()
    host["sku"] = {"name": sku}
    if tunneling is not None:
        host["properties"]["enableTunneling"] = tunneling
    return plan_of(with_bastion(per_instance(2), host))


def test_the_plan_carries_the_bastion_hosts_sku_and_tunnelling() -> None:
    (host,) = _bastion("Premium", True).bastions
    assert (host.sku, host.enable_tunneling) == ("Premium", True)
    (plain,) = _bastion("Basic", None).bastions
    assert (plain.sku, plain.enable_tunneling) == ("Basic", False)


@pytest.mark.parametrize(
    ("sku", "tunneling", "says"),
    [
        ("Basic", True, "sku.name is Basic"),
        ("Developer", True, "sku.name is Developer"),
        ("Standard", None, "properties.enableTunneling is not true"),
        ("Standard", False, "properties.enableTunneling is not true"),
    ],
)
def test_a_tunnel_needs_a_standard_bastion_with_tunnelling(
    sku: str, tunneling: bool | None, says: str
) -> None:
    with pytest.raises(LbsimError) as refused:
        choose(_bastion(sku, tunneling), "web/0", None)
    assert refused.value.code == "BastionTunnelingNotEnabled"
    assert says in refused.value.message
    assert "Set sku.name to Standard (or Premium) and properties.enableTunneling" in str(
        refused.value.message
    )


def test_a_standard_or_premium_bastion_with_tunnelling_opens_one() -> None:
    for sku in ("Standard", "Premium"):
        host, backend = choose(_bastion(sku, True), "web/1", None)
        assert (host.name, backend.label) == ("bastion", "web/1")
