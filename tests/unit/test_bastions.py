"""Bastion hosts: loaded from Microsoft.Network/bastionHosts, only in AzureBastionSubnet, with a
private address of that subnet that they keep across plans."""

from __future__ import annotations

import attrs
from jumpboxes import bastion_host, jumpbox, network, public_ip, with_bastion
from templates import VNET, load, plan_of, plan_problems, resource_id, template

from lbsim.control.plan import plan

SUBNET = resource_id(f"{VNET}/subnets", "vnet", "AzureBastionSubnet")


def test_a_bastion_host_is_loaded_with_its_subnet_and_public_ip() -> None:
    deployment = load(with_bastion(jumpbox(sku="Basic")))
    (host,) = deployment.bastion_hosts
    (config,) = host.ip_configurations
    assert (host.name, host.sku, config.name) == ("bastion", "Standard", "ipconfig")
    assert config.subnet is not None
    assert config.subnet.id == SUBNET
    assert config.public_ip_address is not None
    assert config.public_ip_address.id.endswith("/publicIPAddresses/bastion-pip")
    assert "Microsoft.Network/bastionHosts" not in {r.type for r in deployment.not_emulated}


def test_the_plan_gives_it_the_first_free_address_of_azure_bastion_subnet() -> None:
    (bastion,) = plan_of(with_bastion(jumpbox(sku="Basic"))).bastions
    assert (bastion.name, bastion.subnet_id) == ("bastion", SUBNET)
    assert bastion.private_ip_address == "10.0.2.4"
    assert bastion.virtual_network_prefixes == ("10.0.0.0/16",)
    assert str(bastion.at) == "/resources/5"


def test_a_bastion_host_in_another_subnet_is_refused_at_its_subnet_reference() -> None:
    doc = with_bastion(jumpbox(sku="Basic"), bastion_host(subnet_name="jump"))
    (problem,) = plan_problems(doc)
    assert problem.code == "SubnetNameMustBeAzureBastionSubnet"
    assert "/subnets/jump is invalid for Azure Bastion" in problem.message
    assert "'AzureBastionSubnet'" in problem.message
    assert str(problem.at) == "/resources/5/properties/ipConfigurations/0/properties/subnet"


def test_a_bastion_host_without_a_subnet_is_refused() -> None:
    host = bastion_host()
    del host["properties"]["ipConfigurations"][0]["properties"]["subnet"]
    (problem,) = plan_problems(with_bastion(jumpbox(sku="Basic"), host))
    assert problem.code == "InvalidRequestFormat"
    assert str(problem.at) == "/resources/5"


def test_a_bastion_host_keeps_its_address_across_plans_while_it_is_free() -> None:
    deployment = load(with_bastion(jumpbox(sku="Basic")))
    first = plan(deployment)
    moved = attrs.evolve(first.bastions[0], private_ip_address="10.0.2.9")
    again = plan(deployment, previous=attrs.evolve(first, bastions=(moved,)))
    assert [b.private_ip_address for b in again.bastions] == ["10.0.2.9"]
    outside = attrs.evolve(moved, private_ip_address="10.0.1.4")  # not of its subnet
    fresh = plan(deployment, previous=attrs.evolve(first, bastions=(outside,)))
    assert [b.private_ip_address for b in fresh.bastions] == ["10.0.2.4"]


def test_two_bastion_hosts_take_two_addresses() -> None:
    doc = template(network(), public_ip("bastion-pip"), bastion_host("a"), bastion_host("b"))
    assert [b.private_ip_address for b in plan_of(doc).bastions] == ["10.0.2.4", "10.0.2.5"]
