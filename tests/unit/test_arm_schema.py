"""lbsim.arm.schema and the JSON Schemas in schemas/: codes, paths, messages, leniency, corpus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus import require_corpus
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from lbsim.arm.jsontext import load_json_text
from lbsim.arm.schema import (
    SchemaViolation,
    schema_resource_types,
    validate_parameters_file,
    validate_resource,
    validate_template,
)
from lbsim.pointer import Pointer

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXPRESSION = re.compile(r"^\[(?!\[).*\]$", re.DOTALL)

RG = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network"
LB_ID = f"{RG}/loadBalancers/lb"
FE = {"id": f"{LB_ID}/frontendIPConfigurations/fe"}
POOL = {"id": f"{LB_ID}/backendAddressPools/pool"}
PROBE = {"id": f"{LB_ID}/probes/http"}
NAT_POOL = {"id": f"{LB_ID}/inboundNatPools/natpool"}
SUBNET = {"id": f"{RG}/virtualNetworks/vnet/subnets/default"}
NSG = {"id": f"{RG}/networkSecurityGroups/nsg"}
ASG = {"id": f"{RG}/applicationSecurityGroups/asg"}
PIP = {"id": f"{RG}/publicIPAddresses/pip"}

NAT_RULE_V1 = {
    "frontendIPConfiguration": FE,
    "protocol": "Tcp",
    "frontendPort": 3389,
    "backendPort": 3389,
    "idleTimeoutInMinutes": 4,
}
NAT_RULE_V2 = {
    "frontendIPConfiguration": FE,
    "protocol": "Udp",
    "frontendPortRangeStart": 60000,
    "frontendPortRangeEnd": 60100,
    "backendPort": 53,
    "backendAddressPool": POOL,
}
BACKEND_POOL = {
    "loadBalancerBackendAddresses": [
        {"name": "a", "properties": {"ipAddress": "10.0.0.4", "adminState": "Up"}}
    ]
}
LOAD_BALANCER: dict[str, Any] = {
    "type": "Microsoft.Network/loadBalancers",
    "name": "lb",
    "apiVersion": "2020-06-01",
    "location": "westeurope",
    "sku": {"name": "Standard", "tier": "Regional"},
    "properties": {
        "frontendIPConfigurations": [
            {
                "name": "fe",
                "properties": {"publicIPAddress": PIP, "privateIPAddressVersion": "IPv4"},
            }
        ],
        "backendAddressPools": [{"name": "pool", "properties": BACKEND_POOL}],
        "inboundNatPools": [
            {
                "name": "natpool",
                "properties": {
                    "frontendIPConfiguration": FE,
                    "protocol": "Tcp",
                    "frontendPortRangeStart": 50000,
                    "frontendPortRangeEnd": 50119,
                    "backendPort": 22,
                    "idleTimeoutInMinutes": 4,
                    "enableFloatingIP": False,
                    "enableTcpReset": True,
                },
            }
        ],
        "inboundNatRules": [
            {"name": "rdp", "properties": NAT_RULE_V1},
            {"name": "v2", "properties": NAT_RULE_V2},
        ],
        "loadBalancingRules": [
            {
                "name": "http",
                "properties": {
                    "frontendIPConfiguration": FE,
                    "backendAddressPool": POOL,
                    "probe": PROBE,
                    "protocol": "Tcp",
                    "frontendPort": 80,
                    "backendPort": 8080,
                    "idleTimeoutInMinutes": 30,
                    "loadDistribution": "SourceIP",
                    "enableFloatingIP": False,
                    "disableOutboundSnat": True,
                },
            }
        ],
        "probes": [
            {
                "name": "http",
                "properties": {
                    "protocol": "Http",
                    "port": 8080,
                    "requestPath": "/health",
                    "intervalInSeconds": 5,
                    "numberOfProbes": 2,
                    "probeThreshold": 1,
                },
            },
            {"name": "tcp", "properties": {"protocol": "Tcp", "port": 22}},
        ],
        "outboundRules": [{"name": "out", "properties": {"anything": ["goes"]}}],
    },
}
SECURITY_RULE = {
    "protocol": "Tcp",
    "access": "Allow",
    "priority": 100,
    "direction": "Inbound",
    "sourcePortRange": "*",
    "destinationPortRange": "22",
    "sourceAddressPrefix": "Internet",
    "destinationAddressPrefix": "*",
}
NETWORK_SECURITY_GROUP: dict[str, Any] = {
    "type": "Microsoft.Network/networkSecurityGroups",
    "name": "nsg",
    "properties": {
        "flushConnection": False,
        "securityRules": [
            {"name": "ssh", "properties": SECURITY_RULE},
            {
                "name": "many",
                "properties": {
                    "protocol": "*",
                    "access": "Deny",
                    "priority": 4096,
                    "direction": "Outbound",
                    "sourcePortRanges": ["1000-2000", "3000"],
                    "destinationPortRanges": ["80", 443],
                    "sourceAddressPrefixes": ["10.0.0.0/8"],
                    "destinationApplicationSecurityGroups": [ASG],
                },
            },
        ],
    },
}
IP_CONFIGURATION = {
    "subnet": SUBNET,
    "loadBalancerBackendAddressPools": [POOL],
    "loadBalancerInboundNatPools": [NAT_POOL],
    "applicationSecurityGroups": [ASG],
    "publicIPAddressConfiguration": {"name": "pub", "properties": {"idleTimeoutInMinutes": 15}},
}
SCALE_SET: dict[str, Any] = {
    "type": "Microsoft.Compute/virtualMachineScaleSets",
    "name": "vmss",
    "sku": {"name": "Standard_DS1_v2", "tier": "Standard", "capacity": 3},
    "properties": {
        "overprovision": True,
        "upgradePolicy": {"mode": "Manual"},
        "virtualMachineProfile": {
            "networkProfile": {
                "networkInterfaceConfigurations": [
                    {
                        "name": "nic",
                        "properties": {
                            "primary": True,
                            "networkSecurityGroup": NSG,
                            "ipConfigurations": [{"name": "ip", "properties": IP_CONFIGURATION}],
                        },
                    }
                ]
            }
        },
    },
}
VIRTUAL_MACHINE = {
    "type": "Microsoft.Compute/virtualMachines",
    "name": "vm",
    "properties": {
        "networkProfile": {
            "networkInterfaces": [
                {"id": f"{RG}/networkInterfaces/nic", "properties": {"primary": True}}
            ]
        }
    },
}
VIRTUAL_NETWORK = {
    "type": "Microsoft.Network/virtualNetworks",
    "name": "vnet",
    "properties": {
        "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
        "subnets": [
            {
                "name": "default",
                "properties": {"addressPrefix": "10.0.0.0/24", "networkSecurityGroup": NSG},
            }
        ],
    },
}
NETWORK_INTERFACE = {
    "type": "Microsoft.Network/networkInterfaces",
    "name": "nic",
    "properties": {
        "networkSecurityGroup": NSG,
        "ipConfigurations": [
            {
                "name": "ipconfig1",
                "properties": {
                    "subnet": SUBNET,
                    "privateIPAllocationMethod": "Dynamic",
                    "publicIPAddress": PIP,
                    "loadBalancerBackendAddressPools": [POOL],
                    "loadBalancerInboundNatRules": [{"id": f"{LB_ID}/inboundNatRules/rdp"}],
                    "primary": True,
                },
            }
        ],
    },
}
PUBLIC_IP = {
    "type": "Microsoft.Network/publicIPAddresses",
    "name": "pip",
    "sku": {"name": "Basic"},
    "properties": {
        "publicIPAllocationMethod": "Static",
        "publicIPAddressVersion": "IPv4",
        "idleTimeoutInMinutes": 4,
        "dnsSettings": {"domainNameLabel": "lbsim"},
    },
}
RESOURCES: dict[str, dict[str, Any]] = {
    "lb": LOAD_BALANCER,
    "natrule": {
        "type": "Microsoft.Network/loadBalancers/inboundNatRules",
        "name": "lb/rdp",
        "properties": NAT_RULE_V1,
    },
    "pool": {
        "type": "Microsoft.Network/loadBalancers/backendAddressPools",
        "name": "lb/pool",
        "properties": BACKEND_POOL,
    },
    "nsg": NETWORK_SECURITY_GROUP,
    "rule": {
        "type": "Microsoft.Network/networkSecurityGroups/securityRules",
        "name": "nsg/ssh",
        "properties": SECURITY_RULE,
    },
    "vmss": SCALE_SET,
    "vm": VIRTUAL_MACHINE,
    "vnet": VIRTUAL_NETWORK,
    "subnet": {
        "type": "Microsoft.Network/virtualNetworks/subnets",
        "name": "vnet/default",
        "properties": {"addressPrefix": "10.0.1.0/24"},
    },
    "nic": NETWORK_INTERFACE,
    "pip": PUBLIC_IP,
    "asg": {"type": "Microsoft.Network/applicationSecurityGroups", "name": "asg"},
}

NAT_POOL_PROPS = ("properties", "inboundNatPools", 0, "properties")
NAT_RULE_PROPS = ("properties", "inboundNatRules", 0, "properties")
NAT_V2_PROPS = ("properties", "inboundNatRules", 1, "properties")
RULE_PROPS = ("properties", "loadBalancingRules", 0, "properties")
HTTP_PROBE = ("properties", "probes", 0, "properties")
TCP_PROBE = ("properties", "probes", 1, "properties")
SSH_RULE = ("properties", "securityRules", 0, "properties")
MANY_RULE = ("properties", "securityRules", 1, "properties")
NIC_CONFIG: tuple[str | int, ...] = ("properties", "virtualMachineProfile", "networkProfile")
NIC_CONFIG += ("networkInterfaceConfigurations", 0)
VMSS_IP = (*NIC_CONFIG, "properties", "ipConfigurations", 0, "properties")
NIC_IP = ("properties", "ipConfigurations", 0, "properties")

PORT = "InvalidLoadBalancerPort"
IDLE = "InvalidIdleTimeoutInMinutes"
FORMAT = "InvalidRequestFormat"
COMPUTE = "InvalidParameter"

FE_PROPS = ("properties", "frontendIPConfigurations", 0, "properties")
ADDRESS = ("properties", "backendAddressPools", 0, "properties", "loadBalancerBackendAddresses", 0)
SUBNET_PROPS = ("properties", "subnets", 0, "properties")
VM_NIC = ("properties", "networkProfile", "networkInterfaces", 0)
PUBLIC_IP_CONFIG = (*VMSS_IP, "publicIPAddressConfiguration", "properties")
PRIORITY = "SecurityRuleInvalidPriority"
PORT_RANGE = "SecurityRuleInvalidPortRange"
PREFIX = "SecurityRuleInvalidAddressPrefix"

# (resource, path of the value, bad value, code)
BAD_VALUES: list[tuple[str, tuple[str | int, ...], Any, str]] = [
    ("lb", ("sku", "name"), "Premium", "InvalidSku"),
    ("lb", ("sku", "tier"), "Local", "InvalidSku"),
    ("lb", (*FE_PROPS, "publicIPAddress"), "pip", FORMAT),
    ("lb", (*FE_PROPS, "privateIPAddressVersion"), "IPv5", "InvalidIPAddressVersion"),
    ("lb", (*ADDRESS, "properties", "adminState"), "Sideways", FORMAT),
    ("lb", (*NAT_POOL_PROPS, "protocol"), "Icmp", "InvalidTransportProtocol"),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeStart"), 0, PORT),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeStart"), 65535, PORT),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeEnd"), 65536, PORT),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeEnd"), "0", PORT),
    ("lb", (*NAT_POOL_PROPS, "backendPort"), 0, PORT),
    ("lb", (*NAT_POOL_PROPS, "backendPort"), "ssh", PORT),
    ("lb", (*NAT_POOL_PROPS, "idleTimeoutInMinutes"), 3, IDLE),
    ("lb", (*NAT_POOL_PROPS, "idleTimeoutInMinutes"), "31", IDLE),
    ("lb", (*NAT_POOL_PROPS, "enableFloatingIP"), "maybe", FORMAT),
    ("lb", (*NAT_POOL_PROPS, "frontendIPConfiguration"), "fe", FORMAT),
    ("lb", (*NAT_RULE_PROPS, "frontendPort"), 65535, PORT),
    ("lb", (*NAT_RULE_PROPS, "frontendPort"), 0, PORT),
    ("lb", (*NAT_RULE_PROPS, "backendPort"), 65536, PORT),
    ("lb", (*NAT_RULE_PROPS, "idleTimeoutInMinutes"), 31, IDLE),
    ("lb", (*NAT_V2_PROPS, "frontendPortRangeStart"), 0, PORT),
    ("lb", (*NAT_V2_PROPS, "frontendPortRangeEnd"), 65535, PORT),
    ("lb", (*NAT_V2_PROPS, "backendAddressPool"), [POOL], FORMAT),
    ("lb", (*RULE_PROPS, "protocol"), "Http", "InvalidTransportProtocol"),
    ("lb", (*RULE_PROPS, "frontendPort"), -1, PORT),
    ("lb", (*RULE_PROPS, "frontendPort"), 65535, PORT),
    ("lb", (*RULE_PROPS, "backendPort"), 65536, PORT),
    ("lb", (*RULE_PROPS, "backendPort"), 80.5, PORT),
    ("lb", (*RULE_PROPS, "idleTimeoutInMinutes"), 0, IDLE),
    ("lb", (*RULE_PROPS, "loadDistribution"), "RoundRobin", "InvalidLoadDistribution"),
    ("lb", (*RULE_PROPS, "backendAddressPools"), POOL, FORMAT),
    ("lb", (*HTTP_PROBE, "protocol"), "Udp", "InvalidProbeProtocol"),
    ("lb", (*HTTP_PROBE, "port"), 0, PORT),
    ("lb", (*HTTP_PROBE, "port"), "65536", PORT),
    ("lb", (*HTTP_PROBE, "intervalInSeconds"), 4, "InvalidProbeIntervalInSeconds"),
    ("lb", (*HTTP_PROBE, "numberOfProbes"), 0, "InvalidProbeThreshold"),
    ("lb", (*HTTP_PROBE, "probeThreshold"), "0", "InvalidProbeThreshold"),
    ("lb", (*HTTP_PROBE, "requestPath"), 42, "InvalidProbeRequestPath"),
    ("lb", (*HTTP_PROBE, "noHealthyBackendsBehavior"), "Panic", "InvalidNoHealthyBackendsBehavior"),
    ("lb", (*TCP_PROBE, "requestPath"), "/health", "InvalidProbeRequestPath"),
    ("lb", ("properties", "outboundRules", 0), "out", FORMAT),
    ("natrule", ("properties", "frontendPort"), 0, PORT),
    ("pool", ("properties", *ADDRESS[4:], "properties", "ipAddress"), 10, FORMAT),
    ("nsg", (*SSH_RULE, "priority"), 99, PRIORITY),
    ("nsg", (*SSH_RULE, "priority"), 4097, PRIORITY),
    ("nsg", (*SSH_RULE, "priority"), "4097", PRIORITY),
    ("nsg", (*SSH_RULE, "priority"), "high", PRIORITY),
    ("nsg", (*SSH_RULE, "protocol"), "Tcpp", "SecurityRuleInvalidProtocol"),
    ("nsg", (*SSH_RULE, "access"), "Permit", "SecurityRuleInvalidAccess"),
    ("nsg", (*SSH_RULE, "direction"), "Both", "SecurityRuleInvalidDirection"),
    ("nsg", (*SSH_RULE, "destinationPortRange"), "65536", PORT_RANGE),
    ("nsg", (*SSH_RULE, "destinationPortRange"), "1-2-3", PORT_RANGE),
    ("nsg", (*SSH_RULE, "destinationPortRange"), "22,80", PORT_RANGE),
    ("nsg", (*SSH_RULE, "sourcePortRange"), "any", PORT_RANGE),
    ("nsg", (*SSH_RULE, "sourceAddressPrefix"), 10, PREFIX),
    ("nsg", (*MANY_RULE, "sourcePortRanges", 1), "x", PORT_RANGE),
    ("nsg", (*MANY_RULE, "destinationPortRanges"), "80", PORT_RANGE),
    ("nsg", (*MANY_RULE, "sourceAddressPrefixes", 0), ["10.0.0.0/8"], PREFIX),
    ("nsg", (*MANY_RULE, "destinationApplicationSecurityGroups", 0), "asg", FORMAT),
    ("nsg", ("properties", "flushConnection"), "often", FORMAT),
    ("rule", ("properties", "priority"), 50, PRIORITY),
    ("vmss", ("sku", "capacity"), -1, COMPUTE),
    ("vmss", ("sku", "capacity"), "many", COMPUTE),
    ("vmss", ("sku", "capacity"), 2.5, COMPUTE),
    ("vmss", ("properties", "overprovision"), "sometimes", COMPUTE),
    ("vmss", ("properties", "upgradePolicy", "mode"), "Eventually", COMPUTE),
    ("vmss", (*NIC_CONFIG, "properties", "networkSecurityGroup"), [NSG], COMPUTE),
    ("vmss", (*NIC_CONFIG, "properties", "ipConfigurations"), {"name": "ip"}, COMPUTE),
    ("vmss", (*VMSS_IP, "subnet"), "default", COMPUTE),
    ("vmss", (*VMSS_IP, "loadBalancerInboundNatPools"), NAT_POOL, COMPUTE),
    ("vmss", (*VMSS_IP, "applicationSecurityGroups", 0, "id"), 7, COMPUTE),
    ("vmss", (*PUBLIC_IP_CONFIG, "idleTimeoutInMinutes"), 100, IDLE),
    ("vm", (*VM_NIC, "properties", "primary"), "y", COMPUTE),
    ("vnet", (*SUBNET_PROPS, "addressPrefix"), 10, FORMAT),
    ("vnet", (*SUBNET_PROPS, "networkSecurityGroup"), "nsg", FORMAT),
    ("vnet", (*SUBNET_PROPS, "networkSecurityGroup", "id"), 1, FORMAT),
    ("vnet", ("properties", "addressSpace", "addressPrefixes"), "10.0.0.0/16", FORMAT),
    ("vnet", ("properties", "addressSpace", "addressPrefixes", 0), 7, FORMAT),
    ("subnet", ("properties", "addressPrefix"), ["10.0.1.0/24"], FORMAT),
    ("nic", (*NIC_IP, "privateIPAllocationMethod"), "DHCP", "InvalidIPAllocationMethod"),
    ("nic", (*NIC_IP, "primary"), "yes", FORMAT),
    ("nic", ("properties", "enableIPForwarding"), 1, FORMAT),
    ("pip", ("properties", "idleTimeoutInMinutes"), 31, IDLE),
    ("pip", ("properties", "publicIPAllocationMethod"), "Sticky", "InvalidIPAllocationMethod"),
    ("pip", ("properties", "publicIPAddressVersion"), "v4", "InvalidIPAddressVersion"),
    ("pip", ("sku", "name"), "Premium", "InvalidSku"),
    ("asg", ("name",), 5, FORMAT),
    ("asg", ("properties",), "none", FORMAT),
]

# (resource, path of a required property, code)
MISSING: list[tuple[str, tuple[str | int, ...], str]] = [
    ("lb", ("name",), FORMAT),
    ("lb", (*NAT_POOL_PROPS, "protocol"), "InvalidTransportProtocol"),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeStart"), PORT),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeEnd"), PORT),
    ("lb", (*NAT_POOL_PROPS, "backendPort"), PORT),
    ("lb", (*NAT_POOL_PROPS, "frontendIPConfiguration", "id"), FORMAT),
    ("lb", (*RULE_PROPS, "protocol"), "InvalidTransportProtocol"),
    ("lb", (*RULE_PROPS, "frontendPort"), PORT),
    ("lb", (*RULE_PROPS, "probe", "id"), FORMAT),
    ("lb", (*HTTP_PROBE, "protocol"), "InvalidProbeProtocol"),
    ("lb", (*HTTP_PROBE, "port"), PORT),
    ("lb", (*HTTP_PROBE, "requestPath"), "InvalidProbeRequestPath"),
    ("nsg", (*SSH_RULE, "priority"), PRIORITY),
    ("nsg", (*SSH_RULE, "protocol"), "SecurityRuleInvalidProtocol"),
    ("nsg", (*SSH_RULE, "access"), "SecurityRuleInvalidAccess"),
    ("nsg", (*SSH_RULE, "direction"), "SecurityRuleInvalidDirection"),
    ("rule", ("properties", "priority"), PRIORITY),
    ("vmss", (*NIC_CONFIG, "name"), COMPUTE),
    ("vmss", (*NIC_CONFIG, "properties", "ipConfigurations"), COMPUTE),
    ("vmss", (*VMSS_IP, "subnet", "id"), COMPUTE),
    ("vm", (*VM_NIC, "id"), COMPUTE),
    ("asg", ("name",), FORMAT),
]

# (resource, path, accepted value): letter case, digit strings, boolean strings, 0 = any port
ACCEPTED: list[tuple[str, tuple[str | int, ...], Any]] = [
    ("lb", ("sku", "name"), "standard"),
    ("lb", (*NAT_POOL_PROPS, "protocol"), "tCP"),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeStart"), "50000"),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeEnd"), "65535"),
    ("lb", (*NAT_POOL_PROPS, "backendPort"), "22"),
    ("lb", (*NAT_POOL_PROPS, "idleTimeoutInMinutes"), "5"),
    ("lb", (*NAT_POOL_PROPS, "enableFloatingIP"), "False"),
    ("lb", (*RULE_PROPS, "protocol"), "all"),
    ("lb", (*RULE_PROPS, "frontendPort"), 0),
    ("lb", (*RULE_PROPS, "backendPort"), "0"),
    ("lb", (*RULE_PROPS, "loadDistribution"), "sourceipprotocol"),
    ("lb", (*RULE_PROPS, "enableTcpReset"), "TRUE"),
    ("lb", (*HTTP_PROBE, "protocol"), "HTTPS"),
    ("lb", (*HTTP_PROBE, "intervalInSeconds"), "5"),
    ("lb", (*HTTP_PROBE, "numberOfProbes"), "02"),
    ("lb", (*TCP_PROBE, "requestPath"), None),
    ("lb", (*TCP_PROBE, "protocol"), "tcp"),
    ("nsg", (*SSH_RULE, "protocol"), "esp"),
    ("nsg", (*SSH_RULE, "access"), "deny"),
    ("nsg", (*SSH_RULE, "direction"), "OUTBOUND"),
    ("nsg", (*SSH_RULE, "priority"), "100"),
    ("nsg", (*SSH_RULE, "destinationPortRange"), 22),
    ("nsg", (*SSH_RULE, "destinationPortRange"), "0-65535"),
    ("nsg", (*SSH_RULE, "destinationPortRange"), ""),
    ("vmss", ("sku", "capacity"), "3"),
    ("vmss", ("sku", "capacity"), 0),
    ("vmss", ("properties", "overprovision"), "true"),
    ("vmss", ("properties", "upgradePolicy", "mode"), "automatic"),
    ("pip", ("properties", "publicIPAllocationMethod"), "dynamic"),
]


def fresh(name: str) -> dict[str, Any]:
    """A copy of a sample resource that shares no object with it nor within itself."""
    copied: dict[str, Any] = json.loads(json.dumps(RESOURCES[name]))
    return copied


def changed(name: str, path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    resource = fresh(name)
    node: Any = resource
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return resource


def without(name: str, path: tuple[str | int, ...]) -> dict[str, Any]:
    resource = fresh(name)
    node: Any = resource
    for part in path[:-1]:
        node = node[part]
    if isinstance(node, dict) and path[-1] in node:
        del node[path[-1]]
    return resource


def only(violations: list[SchemaViolation]) -> SchemaViolation:
    assert len(violations) == 1, violations
    return violations[0]


# --- the schema files ---------------------------------------------------------------------------
def schema_documents() -> dict[str, Any]:
    return {path.name: json.loads(path.read_text("utf-8")) for path in SCHEMAS.glob("*.json")}


def walk(node: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key, value
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def test_every_schema_is_a_valid_draft_2020_12_schema_with_its_id() -> None:
    documents = schema_documents()
    assert len(documents) == 15
    for name, document in documents.items():
        Draft202012Validator.check_schema(document)
        assert document["$id"] == f"https://lbsim.invalid/schemas/{name}"
        assert "x-lbsim-code" in document or name == "common.json"


def test_every_ref_names_an_existing_file() -> None:
    documents = schema_documents()
    for document in documents.values():
        for key, value in walk(document):
            if key == "$ref":
                assert value.split("#")[0] in documents, value


def test_property_names_do_not_clash_in_letter_case() -> None:
    spellings: dict[str, set[str]] = {}
    for document in schema_documents().values():
        for key, value in walk(document):
            if key == "properties" and isinstance(value, dict):
                for name in value:
                    spellings.setdefault(name.lower(), set()).add(name)
    assert all(len(names) == 1 for names in spellings.values())


def test_readme_lists_every_schema_file_and_exactly_the_codes_used() -> None:
    readme = (SCHEMAS / "README.md").read_text("utf-8")
    documents = schema_documents()
    for name in documents:
        assert f"- `{name}`:" in readme
    used = {value for d in documents.values() for key, value in walk(d) if key == "x-lbsim-code"}
    listed = set(re.findall(r"^\| `(\w+)` \|", readme, re.MULTILINE))
    assert used == listed
    for row in re.findall(r"^\| `\w+` \|.*\| (\w+) \|$", readme, re.MULTILINE):
        assert row in {"Azure", "lbsim"}


def test_interpreted_types_have_schemas() -> None:
    assert schema_resource_types() == {resource["type"].lower() for resource in RESOURCES.values()}


# --- resources ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_valid_resources_pass(name: str) -> None:
    assert validate_resource(RESOURCES[name]) == []


@pytest.mark.parametrize(("name", "path", "value", "code"), BAD_VALUES)
def test_each_constrained_property_is_rejected_with_its_code_and_path(
    name: str, path: tuple[str | int, ...], value: Any, code: str
) -> None:
    violation = only(validate_resource(changed(name, path, value)))
    assert violation.path == path
    assert violation.code == code
    named = path[-1] if isinstance(path[-1], str) else f"item {path[-1]} of {path[-2]}"
    assert violation.message.startswith(f"{named} must be ")
    text = json.dumps(value)
    shown = text if len(text) <= 60 else text[:57] + "..."
    assert violation.message.endswith(f", not {shown}.")


@pytest.mark.parametrize(("name", "path", "code"), MISSING)
def test_each_required_property_is_reported_where_it_is_missing(
    name: str, path: tuple[str | int, ...], code: str
) -> None:
    violation = only(validate_resource(without(name, path)))
    assert violation.path == path
    assert violation.code == code
    assert violation.message.startswith(f"Required property '{path[-1]}' is missing")


@pytest.mark.parametrize(("name", "path", "value"), ACCEPTED)
def test_letter_case_digit_strings_and_boolean_strings_are_accepted(
    name: str, path: tuple[str | int, ...], value: Any
) -> None:
    assert validate_resource(changed(name, path, value)) == []


def test_messages_name_the_property_value_and_what_is_allowed() -> None:
    violation = only(validate_resource(changed("nsg", (*SSH_RULE, "priority"), 4097)))
    assert violation.message == "priority must be an integer from 100 to 4096, not 4097."
    protocol = (*NAT_POOL_PROPS, "protocol")
    violation = only(validate_resource(changed("lb", protocol, "Icmp")))
    assert violation.message == (
        'protocol must be one of Tcp, Udp, All, Quic (in any letter case), not "Icmp".'
    )


def test_types_without_a_schema_pass_and_types_match_in_any_case() -> None:
    assert validate_resource({"type": "Microsoft.Storage/storageAccounts", "name": 5}) == []
    assert validate_resource({"name": "no type"}) == []
    resource = changed("lb", (*RULE_PROPS, "frontendPort"), 70000)
    resource["type"] = "microsoft.network/LOADBALANCERS"
    assert only(validate_resource(resource)).code == PORT


def test_property_names_match_in_any_case_and_are_reported_as_written() -> None:
    resource = {
        "TYPE": "Microsoft.Network/networkSecurityGroups",
        "name": "nsg",
        "Properties": {
            "SecurityRules": [
                {"properties": {"Priority": 50, "protocol": "Tcp", "ACCESS": "Allow"}},
            ]
        },
    }
    violations = validate_resource(resource)
    rule = ("Properties", "SecurityRules", 0, "properties")
    assert [(v.path, v.code) for v in violations] == [
        ((*rule, "Priority"), "SecurityRuleInvalidPriority"),
        ((*rule, "direction"), "SecurityRuleInvalidDirection"),
    ]
    assert violations[0].message.startswith("Priority must be an integer from 100 to 4096")


def test_every_bad_value_is_reported_once_sorted_by_path() -> None:
    resource = changed("lb", (*RULE_PROPS, "backendPort"), {"not": "a port"})
    resource["properties"]["probes"][1]["properties"]["port"] = -1
    resource["properties"]["inboundNatPools"][0]["properties"]["frontendPortRangeEnd"] = 0
    resource["properties"]["inboundNatPools"][0]["properties"]["protocol"] = 6
    violations = validate_resource(resource)
    assert [v.path for v in violations] == [
        (*NAT_POOL_PROPS, "frontendPortRangeEnd"),
        (*NAT_POOL_PROPS, "protocol"),
        (*RULE_PROPS, "backendPort"),
        (*TCP_PROBE, "port"),
    ]
    assert violations[1].message == "protocol must be a string, not 6."


def test_a_violation_becomes_a_problem_under_the_resource_pointer() -> None:
    violation = only(validate_resource(changed("nsg", (*SSH_RULE, "priority"), 1)))
    problem = violation.problem(Pointer.parse("/resources/2"), "main.json")
    assert problem.code == "SecurityRuleInvalidPriority"
    assert str(problem.at) == "/resources/2/properties/securityRules/0/properties/priority"
    assert problem.file == "main.json"


RANGES: list[tuple[str, tuple[str | int, ...], int, int | None]] = [
    ("lb", (*RULE_PROPS, "frontendPort"), 0, 65534),
    ("lb", (*RULE_PROPS, "backendPort"), 0, 65535),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeStart"), 1, 65534),
    ("lb", (*NAT_POOL_PROPS, "frontendPortRangeEnd"), 1, 65535),
    ("lb", (*NAT_RULE_PROPS, "frontendPort"), 1, 65534),
    ("lb", (*HTTP_PROBE, "port"), 1, 65535),
    ("lb", (*HTTP_PROBE, "intervalInSeconds"), 5, None),
    ("lb", (*RULE_PROPS, "idleTimeoutInMinutes"), 4, 30),
    ("nsg", (*SSH_RULE, "priority"), 100, 4096),
    ("nsg", (*SSH_RULE, "destinationPortRange"), 0, 65535),
    ("vmss", ("sku", "capacity"), 0, None),
]


def skeleton(name: str, path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """The smallest resource of ``name``'s type with ``value`` at ``path`` (index 0 only)."""
    node: Any = value
    for part in reversed(path):
        node = [node] if isinstance(part, int) else {part: node}
    return {"type": RESOURCES[name]["type"], "name": name, **node}


@pytest.mark.parametrize(("name", "path", "low", "high"), RANGES)
@settings(max_examples=50)
@given(number=st.integers(min_value=-3, max_value=70_000) | st.sampled_from([0, 1, 4, 5, 30]))
def test_integers_and_digit_strings_obey_the_same_range(
    name: str, path: tuple[str | int, ...], low: int, high: int | None, number: int
) -> None:
    allowed = low <= number and (high is None or number <= high)
    for form in (number, str(number), f"00{number}" if number >= 0 else str(number)):
        flagged = {v.path for v in validate_resource(skeleton(name, path, form))}
        assert (path not in flagged) == allowed, form


# --- templates and parameter files --------------------------------------------------------------
TEMPLATE = {
    "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    "contentVersion": "1.0.0.0",
    "parameters": {
        "count": {"type": "Int", "defaultValue": 2, "minValue": 1, "maxValue": "10"},
        "secret": {"type": "secureString", "minLength": 8},
    },
    "functions": [
        {"namespace": "lb", "members": {"name": {"parameters": [], "output": {"value": "x"}}}}
    ],
    "resources": [
        {
            "type": "Microsoft.Network/publicIPAddresses",
            "apiVersion": "2020-06-01",
            "name": "[concat('pip', copyIndex())]",
            "copy": {"name": "pips", "count": "[parameters('count')]", "mode": "serial"},
        }
    ],
    "outputs": {"id": {"type": "string", "value": "[resourceId('x', 'y')]"}},
}
SYMBOLIC = {
    "languageVersion": "2.0",
    "contentVersion": "1.0.0.0",
    "definitions": {"port": {"type": "int"}},
    "parameters": {"port": {"$ref": "#/definitions/port"}},
    "resources": {
        "vnet": {"existing": True, "type": "Microsoft.Network/virtualNetworks", "name": "v"},
        "lb": {"type": "Microsoft.Network/loadBalancers", "apiVersion": "2020-06-01", "name": "lb"},
    },
}
R0 = ("resources", 0)
NESTED = (*R0, "properties", "template")


def one_resource(**fields: Any) -> dict[str, Any]:
    return {"resources": [{"type": "t", "apiVersion": "1", "name": "n", **fields}]}


def declaring(**parameters: Any) -> dict[str, Any]:
    return {"parameters": parameters, "resources": []}


DEPLOYMENT = {"type": "Microsoft.Resources/deployments", "apiVersion": "1", "name": "d"}
BAD_TEMPLATES: list[tuple[Any, tuple[str | int, ...], str]] = [
    ([], (), "The template must be an object, not []."),
    ({"contentVersion": "1.0.0.0"}, ("resources",), "Required property 'resources' is missing."),
    ({"resources": {"a": {}}}, ("resources",), "resources must be an array of resources"),
    ({**SYMBOLIC, "resources": []}, ("resources",), "resources must be an object of resources"),
    ({"resources": [{"type": "t", "name": "n"}]}, (*R0, "apiVersion"), "Required"),
    ({"resources": [{"apiVersion": "1", "name": "n"}]}, (*R0, "type"), "Required"),
    ({"resources": [5]}, R0, "item 0 of resources must be an object, not 5."),
    (declaring(p={"type": "strin"}), ("parameters", "p", "type"), "one of string, securestring"),
    (declaring(p={}), ("parameters", "p", "type"), "a parameter declares its type"),
    (declaring(p={"type": "int", "minValue": "one"}), ("parameters", "p", "minValue"), "integer"),
    ({"outputs": {"o": {"value": 1}}, "resources": []}, ("outputs", "o", "type"), "Required"),
    ({"functions": [{"members": {}}], "resources": []}, ("functions", 0, "namespace"), "Required"),
    (one_resource(copy={"name": "c", "count": 801}), (*R0, "copy", "count"), "from 0 to 800"),
    (
        one_resource(copy={"name": "c", "count": 2, "mode": "Sequential"}),
        (*R0, "copy", "mode"),
        "Serial",
    ),
    (one_resource(copy={"count": 2}), (*R0, "copy", "name"), "Required"),
    (one_resource(dependsOn="x"), (*R0, "dependsOn"), "an array"),
    (
        {
            "resources": [
                {
                    **DEPLOYMENT,
                    "properties": {"template": {"resources": [{"name": "x", "apiVersion": "1"}]}},
                }
            ]
        },
        (*NESTED, "resources", 0, "type"),
        "Required",
    ),
]


def test_valid_templates_pass() -> None:
    assert validate_template(TEMPLATE) == []
    assert validate_template(SYMBOLIC) == []
    assert validate_template({**TEMPLATE, "APIProfile": "2018-03-01-hybrid", "Resources": []}) == []


def test_property_names_in_templates_match_in_any_case() -> None:
    resource = {"Type": "t", "apiversion": "1", "Name": "n", "Copy": {"name": "c", "count": 900}}
    violation = only(validate_template({"Resources": [resource]}))
    assert violation.path == ("Resources", 0, "Copy", "count")


@pytest.mark.parametrize(("raw", "path", "text"), BAD_TEMPLATES)
def test_bad_templates_are_reported_as_invalid_template(
    raw: Any, path: tuple[str | int, ...], text: str
) -> None:
    violation = only(validate_template(raw))
    assert violation.path == path
    assert violation.code == "InvalidTemplate"
    assert text in violation.message


def test_parameter_files() -> None:
    reference = {"keyVault": {"id": "/subscriptions/s/vault"}, "secretName": "pw"}
    good = {"$schema": "x", "parameters": {"a": {"value": 1}, "b": {"reference": reference}}}
    assert validate_parameters_file(good) == []
    assert validate_parameters_file({"a": {"value": None}, "contentVersion": "1.0.0.0"}) == []
    bad = {"parameters": {"a": {}, "b": {"reference": {"keyVault": {}}}, "c": 3}}
    violations = validate_parameters_file(bad)
    assert [(v.path, v.code) for v in violations] == [
        (("parameters", "a", "value"), "InvalidRequestContent"),
        (("parameters", "b", "reference", "keyVault", "id"), "InvalidRequestContent"),
        (("parameters", "b", "reference", "secretName"), "InvalidRequestContent"),
        (("parameters", "c"), "InvalidRequestContent"),
    ]
    assert violations[3].message == (
        "c must be an object with a 'value' or a Key Vault 'reference', not 3."
    )
    assert only(validate_parameters_file({"parameters": []})).path == ("parameters",)


# --- the corpus ---------------------------------------------------------------------------------
def corpus_documents() -> Iterator[tuple[Path, Any]]:
    for path in sorted(require_corpus().rglob("*.json")):
        if "MALFORMED" not in str(path):
            yield path, load_json_text(path.read_bytes(), str(path))


def corpus_resources(template: Any) -> Iterator[dict[str, Any]]:
    resources = template.get("resources", [])
    for resource in resources.values() if isinstance(resources, dict) else resources:
        yield resource
        for child in resource.get("resources", []):
            yield {**child, "type": f"{resource['type']}/{child['type']}"}
        nested = resource.get("properties", {}).get("template")
        if isinstance(nested, dict):
            yield from corpus_resources(nested)


def literal_part(value: Any, path: tuple[str | int, ...], dropped: set[Any]) -> Any:
    """``value`` without its expressions; ``dropped`` collects where they were."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    else:
        return value
    kept: list[tuple[Any, Any]] = []
    for key, item in items:
        place = key if isinstance(value, dict) else len(kept)
        if isinstance(item, str) and EXPRESSION.match(item):
            dropped.add((*path, place))
        else:
            kept.append((place, literal_part(item, (*path, place), dropped)))
    return dict(kept) if isinstance(value, dict) else [item for _, item in kept]


def test_only_the_places_of_expressions_are_excused_in_a_resource_literal_part() -> None:
    """The corpus check below, on a resource of our own: taking an expression out leaves a
    complaint at its place only, and a bad literal beside it is still reported."""
    resource = changed("nsg", (*SSH_RULE, "priority"), "[parameters('priority')]")
    resource["properties"]["securityRules"][1]["properties"]["priority"] = 4097
    dropped: set[Any] = set()
    literal = literal_part(resource, (), dropped)
    assert dropped == {(*SSH_RULE, "priority")}
    violations = validate_resource(literal)
    assert [v.path for v in violations] == [(*SSH_RULE, "priority"), (*MANY_RULE, "priority")]
    assert [v.path in dropped for v in violations] == [True, False]
    assert violations[1].code == "SecurityRuleInvalidPriority"


@pytest.mark.corpus
def test_corpus_templates_and_parameter_files_pass() -> None:
    checked = 0
    for path, document in corpus_documents():
        if path.name.endswith(".parameters.json"):
            assert validate_parameters_file(document) == [], path
        else:
            assert validate_template(document) == [], path
        checked += 1
    assert checked > 80


@pytest.mark.corpus
def test_literal_parts_of_corpus_resources_pass() -> None:
    """Every resource with a schema, its expressions taken out: the only complaints allowed are
    about the places an expression was taken from."""
    checked: dict[str, int] = {}
    for path, document in corpus_documents():
        if path.name.endswith(".parameters.json"):
            continue
        for resource in corpus_resources(document):
            dropped: set[Any] = set()
            literal = literal_part(resource, (), dropped)
            if str(literal.get("type", "")).lower() not in schema_resource_types():
                continue
            literal.setdefault("name", "from-an-expression")
            for violation in validate_resource(literal):
                assert violation.path in dropped, (path, violation)
            checked[literal["type"].lower()] = checked.get(literal["type"].lower(), 0) + 1
    for kind in ("loadbalancers", "networksecuritygroups", "virtualmachinescalesets"):
        assert checked[f"microsoft.{'compute' if 'machine' in kind else 'network'}/{kind}"] > 10
