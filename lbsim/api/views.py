"""The JSON shapes of lbsim's values, shared by the CLI's ``-o json`` and the control API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lbsim.control.check import FlowCheck
from lbsim.control.nsg import EffectiveRule, RuleEvaluation
from lbsim.control.types import Backend, BalancingEntry, NatEntry
from lbsim.model import SecurityRule, SecurityRuleDirection


def nat_json(entry: NatEntry) -> dict[str, Any]:
    backend = entry.backend
    return {
        "loadBalancer": entry.load_balancer,
        "ruleName": entry.rule_name,
        "kind": entry.kind.value,
        "frontendIPConfiguration": entry.frontend.name,
        "frontendIPAddress": entry.frontend.address,
        "protocol": entry.protocol.value,
        "frontendPort": entry.frontend_port,
        "backendPort": entry.backend_port,
        "scaleSet": backend.scale_set if backend else None,
        "instanceId": backend.instance_id if backend else None,
        "backend": backend.label if backend else None,
        "backendIPAddress": backend.private_ip_address if backend else None,
        "idleTimeoutInMinutes": int(entry.idle_timeout_s // 60),
        "enableTcpReset": entry.enable_tcp_reset,
    }


def balancing_json(entry: BalancingEntry) -> dict[str, Any]:
    """A load-balancing rule as ``lbsim ports -o json`` lists it, after the NAT entries."""
    probe = entry.probe
    return {
        "loadBalancer": entry.load_balancer,
        "ruleName": entry.rule_name,
        "kind": "LoadBalancingRule",
        "frontendIPConfiguration": entry.frontend.name,
        "frontendIPAddress": entry.frontend.address,
        "protocol": entry.protocol.value,
        "frontendPort": entry.frontend_port,
        "backendPort": entry.backend_port,
        "backends": [
            {"backend": b.label, "backendIPAddress": b.private_ip_address} for b in entry.backends
        ],
        "probe": probe.name if probe else None,
        "loadDistribution": entry.load_distribution.value,
        "idleTimeoutInMinutes": int(entry.idle_timeout_s // 60),
        "enableTcpReset": entry.enable_tcp_reset,
    }


def rule_json(rule: SecurityRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "priority": rule.priority,
        "direction": rule.direction.value,
        "access": rule.access.value,
        "protocol": rule.protocol.value,
        "sourceAddressPrefixes": list(rule.sources()) or ["*"],
        "sourcePortRanges": list(rule.source_ports()) or ["*"],
        "destinationAddressPrefixes": list(rule.destinations()) or ["*"],
        "destinationPortRanges": list(rule.destination_ports()) or ["*"],
        "sourceApplicationSecurityGroups": [
            g.name for g in rule.source_application_security_groups
        ],
        "destinationApplicationSecurityGroups": [
            g.name for g in rule.destination_application_security_groups
        ],
        "isDefault": rule.is_default,
        "at": str(rule.at) if rule.at is not None else None,
    }


def evaluation_json(item: RuleEvaluation) -> dict[str, Any]:
    return {
        "networkSecurityGroup": item.network_security_group_name,
        "level": item.level,
        "rule": item.rule.name,
        "priority": item.rule.priority,
        "access": item.rule.access.value,
        "matched": item.matched,
        "protocol": item.protocol,
        "source": item.source,
        "sourcePort": item.source_port,
        "destination": item.destination,
        "destinationPort": item.destination_port,
    }


def check_json(result: FlowCheck) -> dict[str, Any]:
    verdict, flow = result.verdict, result.flow
    rule = verdict.rule
    nsg_name = (
        verdict.network_security_group.rsplit("/", 1)[-1]
        if verdict.network_security_group
        else None
    )
    return {
        "access": verdict.access.value,
        "ruleName": rule.name if rule else None,
        "flowLogRuleName": rule.flow_log_name if rule else None,
        "networkSecurityGroup": nsg_name,
        "level": verdict.level,
        "at": str(rule.at) if rule is not None and rule.at is not None else None,
        "natRule": result.nat.rule_name if result.nat else None,
        "natKind": result.nat.kind.value if result.nat else None,
        "loadBalancingRule": result.balancing.rule_name if result.balancing else None,
        "floatingIP": result.floating_ip,
        "backend": result.backend.label,
        "flow": {
            "protocol": flow.protocol.value,
            "sourceAddress": str(flow.source_address),
            "sourcePort": flow.source_port,
            "destinationAddress": str(flow.destination_address),
            "destinationPort": flow.destination_port,
        },
        "evaluated": [evaluation_json(e) for e in verdict.evaluated],
        "loadBalancerSku": _sku(result),
    }


def _sku(result: FlowCheck) -> str | None:
    """The SKU of the load balancer the flow goes through (None for a direct flow)."""
    entry = result.nat or result.balancing
    return entry.frontend.sku if entry is not None else None


def rules_json(
    backend: Backend, direction: SecurityRuleDirection, rules: Sequence[EffectiveRule]
) -> dict[str, Any]:
    return {
        "instance": backend.label,
        "privateIPAddress": backend.private_ip_address,
        "direction": direction.value,
        "rules": [
            {
                "networkSecurityGroup": r.network_security_group_name,
                "level": r.level,
                **rule_json(r.rule),
            }
            for r in rules
        ],
    }
