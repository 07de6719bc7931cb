"""Evaluated resources to the model: the only place raw ARM property names are read.

Child resources declared on their own (``loadBalancers/inboundNatRules``,
``networkSecurityGroups/securityRules``, ``virtualNetworks/subnets``,
``loadBalancers/backendAddressPools``) are merged into their parent. Every other resource
type is kept as ``NotEmulatedResource``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from lbsim.arm.convert import compute, network
from lbsim.arm.convert.reader import Node, Sink
from lbsim.arm.sourcemap import SourceMap
from lbsim.errors import Problem, Severity
from lbsim.model import Deployment, NotEmulatedResource

if TYPE_CHECKING:
    from lbsim.arm.resources import ExpandedResource

NET = "microsoft.network/"
_CHILDREN: dict[str, tuple[str, Callable[[str, Node], Any]]] = {
    NET + "loadbalancers/inboundnatrules": ("inbound_nat_rules", network.nat_rule),
    NET + "loadbalancers/backendaddresspools": ("backend_address_pools", network.backend_pool),
    NET + "virtualnetworks/subnets": ("subnets", network.subnet),
}
_CONTAINERS = frozenset({"microsoft.resources/deployments"})


def convert(
    resources: Sequence[ExpandedResource], smap: SourceMap, public_ip: Callable[[Any], str]
) -> tuple[Deployment, list[Problem]]:
    """The Deployment made of ``resources`` (whose bodies are evaluated), and its problems."""
    builder = _Builder(smap, public_ip)
    for resource in resources:
        if resource.body is not None and not resource.existing:
            builder.add(resource)
    return builder.finish()


@attrs.define
class _Builder:
    smap: SourceMap
    public_ip: Callable[[Any], str]
    found: dict[str, list[Any]] = attrs.Factory(lambda: defaultdict(list))
    children: list[tuple[ExpandedResource, Node]] = attrs.Factory(list)
    not_emulated: list[NotEmulatedResource] = attrs.Factory(list)
    problems: list[Problem] = attrs.Factory(list)

    def node(self, resource: ExpandedResource) -> Node:
        sink = Sink(resource.file, self.problems)
        return Node(resource.body, resource.at, self.smap, sink)

    def add(self, resource: ExpandedResource) -> None:
        kind, node = resource.type_key, self.node(resource)
        args = (resource.id, resource.name, node)
        if kind in _CHILDREN or kind == NET + "networksecuritygroups/securityrules":
            self.children.append((resource, node))
        elif kind == NET + "publicipaddresses":
            self.found[kind].append(network.public_ip_address(*args, self.public_ip(resource)))
        elif kind in _MAKERS:
            self.found[kind].append(_MAKERS[kind](*args))
        elif kind not in _CONTAINERS:
            self.not_emulated.append(
                NotEmulatedResource(resource.type, resource.name, at=resource.at)
            )

    def finish(self) -> tuple[Deployment, list[Problem]]:
        for resource, node in self.children:
            self._merge_child(resource, node)
        f = self.found
        deployment = Deployment(
            load_balancers=tuple(f[NET + "loadbalancers"]),
            network_security_groups=tuple(f[NET + "networksecuritygroups"]),
            application_security_groups=tuple(f[NET + "applicationsecuritygroups"]),
            virtual_networks=tuple(f[NET + "virtualnetworks"]),
            public_ip_addresses=tuple(f[NET + "publicipaddresses"]),
            network_interfaces=tuple(f[NET + "networkinterfaces"]),
            virtual_machine_scale_sets=tuple(f["microsoft.compute/virtualmachinescalesets"]),
            virtual_machines=tuple(f["microsoft.compute/virtualmachines"]),
            bastion_hosts=tuple(f[NET + "bastionhosts"]),
            not_emulated=tuple(self.not_emulated),
        )
        return deployment, self.problems

    def _merge_child(self, resource: ExpandedResource, node: Node) -> None:
        parent_id = resource.id.rsplit("/", 2)[0].lower()
        parent_kind = resource.type_key.rsplit("/", 1)[0]
        siblings = self.found[parent_kind]
        index = next((i for i, p in enumerate(siblings) if p.id.lower() == parent_id), None)
        if index is None:
            self.problems.append(
                Problem(
                    "ParentResourceNotInTemplate",
                    f"The parent of '{resource.name}' ({resource.type}) is not deployed by the "
                    "template; lbsim does not emulate it.",
                    resource.at,
                    resource.file,
                    Severity.WARNING,
                )
            )
            self.not_emulated.append(
                NotEmulatedResource(resource.type, resource.name, at=resource.at)
            )
            return
        parent = siblings[index]
        if resource.type_key.endswith("/securityrules"):
            rules = (*parent.security_rules, network.security_rule(node))
            siblings[index] = attrs.evolve(parent, security_rules=rules)
            return
        field, make = _CHILDREN[resource.type_key]
        child = make(parent.id, node)
        existing: tuple[Any, ...] = getattr(parent, field)
        kept = tuple(c for c in existing if c.name.lower() != child.name.lower())
        siblings[index] = attrs.evolve(parent, **{field: (*kept, child)})


_MAKERS: dict[str, Callable[[str, str, Node], Any]] = {
    NET + "loadbalancers": network.load_balancer,
    NET + "networksecuritygroups": network.network_security_group,
    NET + "virtualnetworks": network.virtual_network,
    NET + "networkinterfaces": network.network_interface,
    NET + "applicationsecuritygroups": network.application_security_group,
    NET + "bastionhosts": network.bastion_host,
    "microsoft.compute/virtualmachinescalesets": compute.virtual_machine_scale_set,
    "microsoft.compute/virtualmachines": compute.virtual_machine,
}
