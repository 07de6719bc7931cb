"""The references by which a NIC's or a scale set's ipConfiguration joins a load balancer:
``loadBalancerBackendAddressPools``, ``loadBalancerInboundNatPools`` and
``loadBalancerInboundNatRules``.

Azure refuses a deployment whose reference names a pool or rule that the load balancer lacks,
with ``InvalidResourceReference`` ("Resource ... referenced by resource ... was not found",
https://learn.microsoft.com/en-us/azure/azure-resource-manager/troubleshooting/error-not-found).
Without this check such a template would look valid and simply get no NAT entries. A reference
into a load balancer the template does not deploy cannot be emulated: a warning says so.
"""

from __future__ import annotations

from collections.abc import Iterator

from lbsim.control.index import Index, top_level_id
from lbsim.errors import Problem, Severity
from lbsim.model import (
    BackendAddressPool,
    Deployment,
    InboundNatPool,
    InboundNatRule,
    IPConfiguration,
    LoadBalancer,
    SubResource,
)

_Kind = type[BackendAddressPool] | type[InboundNatPool] | type[InboundNatRule]

_WHAT: dict[_Kind, tuple[str, str]] = {  # kind -> (what it is, the load balancer's property)
    BackendAddressPool: ("backend address pool", "backend_address_pools"),
    InboundNatPool: ("inbound NAT pool", "inbound_nat_pools"),
    InboundNatRule: ("inbound NAT rule", "inbound_nat_rules"),
}


def check_load_balancer_references(deployment: Deployment, index: Index) -> list[Problem]:
    """Every pool or rule reference of every ipConfiguration that names nothing: errors for
    load balancers in the template, warnings for those outside it."""
    problems: list[Problem] = []
    for referrer, ipc in _ip_configurations(deployment):
        for kind, refs in (
            (BackendAddressPool, ipc.load_balancer_backend_address_pools),
            (InboundNatPool, ipc.load_balancer_inbound_nat_pools),
            (InboundNatRule, ipc.load_balancer_inbound_nat_rules),
        ):
            for ref in refs:
                problem = _check(ref, kind, referrer, index)
                if problem is not None:
                    problems.append(problem)
    return problems


def _ip_configurations(deployment: Deployment) -> Iterator[tuple[str, IPConfiguration]]:
    for nic in deployment.network_interfaces:
        for ipc in nic.ip_configurations:
            yield f"the ipConfiguration '{ipc.name}' of network interface '{nic.name}'", ipc
    for vmss in deployment.virtual_machine_scale_sets:
        for config in vmss.network_interface_configurations:
            for ipc in config.ip_configurations:
                yield f"the ipConfiguration '{ipc.name}' of scale set '{vmss.name}'", ipc


def _check(ref: SubResource, kind: _Kind, referrer: str, index: Index) -> Problem | None:
    what, _ = _WHAT[kind]
    found = index.by_id.get(ref.key)
    if isinstance(found, kind):
        return None
    if found is not None:
        return Problem(
            "InvalidJsonReferenceWrongType",
            f"Reference Id {ref.id} (from {referrer}) names a resource of the wrong type: "
            f"{'an' if what[0] in 'aeiou' else 'a'} {what} is expected.",
            ref.at,
        )
    if ref.id and not index.deploys_parent_of(ref.id):
        return Problem(
            "LoadBalancerOutsideTemplate",
            f"{referrer.capitalize()} joins the {what} '{ref.name}' of {top_level_id(ref.id)}, "
            "which the template does not deploy: lbsim cannot emulate what that load balancer "
            "forwards to it.",
            ref.at,
            severity=Severity.WARNING,
        )
    return Problem(
        "InvalidResourceReference",
        f"Resource {ref.id or '(empty id)'} referenced by {referrer} was not found"
        f"{_known(ref, kind, index)}.",
        ref.at,
    )


def _known(ref: SubResource, kind: _Kind, index: Index) -> str:
    """What the load balancer has instead, to spot a misspelt name."""
    lb = index.by_id.get(top_level_id(ref.id)) if ref.id else None
    if not isinstance(lb, LoadBalancer):
        return ""
    what, attribute = _WHAT[kind]
    names = [item.name for item in getattr(lb, attribute)]
    have = ", ".join(f"'{n}'" for n in names) if names else "none"
    return f": load balancer '{lb.name}' has no {what} '{ref.name}' (its {what}s: {have})"
