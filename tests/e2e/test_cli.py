"""``lbsim validate | ports | check | rules`` on the bundled examples: exit codes, output, and
errors printed as ``file#/pointer: Code: message`` lines without a traceback."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lbsim.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "arm-examples"
ALL_EXAMPLES = sorted(p.name for p in EXAMPLES.iterdir() if (p / "azuredeploy.json").is_file())
NAT_KEYS = {
    "loadBalancer",
    "ruleName",
    "frontendIPConfiguration",
    "protocol",
    "frontendPort",
    "backendPort",
    "scaleSet",
    "instanceId",
    "backendIPAddress",
}
BALANCING_KEYS = {
    "loadBalancer",
    "ruleName",
    "kind",
    "frontendIPConfiguration",
    "frontendIPAddress",
    "protocol",
    "frontendPort",
    "backendPort",
    "backends",
    "probe",
    "loadDistribution",
    "idleTimeoutInMinutes",
    "enableTcpReset",
}
# ``file#/pointer: Code: message``
PROBLEM_LINE = re.compile(r"^(?P<file>[^#\s]+)#(?P<at>\S*): (?P<code>[A-Za-z]+): (?P<message>.+)$")


def example(name: str) -> list[str]:
    """The template of an example and, if it has one, its parameters file."""
    folder = EXAMPLES / name
    args = [str(folder / "azuredeploy.json")]
    if (folder / "azuredeploy.parameters.json").is_file():
        args += ["-p", str(folder / "azuredeploy.parameters.json")]
    return args


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(capsys, *argv, "-o", "json")
    assert code in (0, 1), err
    return json.loads(out)


def problem_lines(err: str) -> list[dict[str, str]]:
    lines = err.strip().splitlines()
    matches = [PROBLEM_LINE.match(line) for line in lines]
    assert all(matches), lines
    return [m.groupdict() for m in matches if m]


# --- validate ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_validate_every_example(capsys: pytest.CaptureFixture[str], name: str) -> None:
    code, out, err = run(capsys, "validate", *example(name))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].endswith("azuredeploy.json: valid")
    assert re.match(r"  emulated: \d+ ", lines[1])  # (vmss-jumpbox has no load balancer)
    assert re.search(r"^    scale set \w+: \d+ instance\(s\), (Linux|Windows)$", out, re.M)
    assert re.search(r"^  plan: \d+ NAT entries, \d+ load-balancing entries", out, re.M)


def test_validate_summarises_what_is_emulated(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", *example("subnet-and-nic-nsg"))
    assert code == 0
    assert "2 network security groups" in out
    assert "    scale set servers: 2 instance(s), Linux" in out
    assert "  plan: 2 NAT entries, 0 load-balancing entries, 2 backends, 0 warning(s)" in out


def test_validate_lists_resources_it_does_not_emulate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    doc = json.loads((EXAMPLES / "nat-rule-v2" / "azuredeploy.json").read_text())
    doc["resources"].append(
        {"type": "Microsoft.Storage/storageAccounts", "apiVersion": "2023-01-01", "name": "logs"}
    )
    path = tmp_path / "with-storage.json"
    path.write_text(json.dumps(doc))
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0
    assert "  not emulated: Microsoft.Storage/storageAccounts (1)" in out


def test_missing_secret_is_an_error_until_filled(capsys: pytest.CaptureFixture[str]) -> None:
    template = str(EXAMPLES / "vmss-linux-ssh" / "azuredeploy.json")
    code, out, err = run(capsys, "validate", template)
    assert (code, out) == (2, "")
    (problem,) = problem_lines(err)
    assert problem == {
        "file": template,
        "at": "/parameters/adminPublicKey",
        "code": "InvalidTemplate",
        "message": problem["message"],
    }
    code, out, err = run(capsys, "validate", template, "--fill-missing")
    assert code == 0
    assert err.startswith(
        f"warning: {template}#/parameters/adminPublicKey: ParameterValuePlaceholder:"
    )
    assert "1 warning(s)" in out


def test_param_flag_sets_a_parameter(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "ports", *example("vmss-linux-ssh"), "--param", "instanceCount=5")
    assert [r["frontendPort"] for r in rows] == [50000, 50001, 50002, 50003, 50004]


def test_param_flag_without_a_value_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "validate", *example("nat-rule-v2"), "--param", "instanceCount")
    assert code == 2
    assert err.startswith("lbsim: InvalidParameterArgument:")


# --- ports ------------------------------------------------------------------------------------
def test_ports_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ports", *example("vmss-linux-ssh"))
    assert (code, err) == (0, "")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == [
        "LOAD",
        "BALANCER",
        "RULE",
        "PROTOCOL",
        "FRONTEND",
        "BACKEND",
        "PORT",
        "INSTANCE",
        "BACKEND",
        "IP",
    ]
    assert lines[2:] == [
        ["web-lb", "ssh.0", "Tcp", "127.0.0.1:50000", "22", "web/0", "10.0.0.4"],
        ["web-lb", "ssh.1", "Tcp", "127.0.0.1:50001", "22", "web/1", "10.0.0.5"],
        ["web-lb", "ssh.2", "Tcp", "127.0.0.1:50002", "22", "web/2", "10.0.0.6"],
    ]


def test_ports_table_lists_load_balancing_rules_after_the_nat_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ports", *example("lb-rules-probe"))
    assert code == 0
    nat, balancing = out.split("\n\n")
    assert "ssh.2" in nat
    assert re.search(r"http-80\s+Tcp\s+127\.0\.0\.1:80\s+80\s+3\s+probe-80 \(Http:80\)", balancing)


@pytest.mark.parametrize("name", ALL_EXAMPLES)
def test_ports_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str], name: str) -> None:
    rows = run_json(capsys, "ports", *example(name), "--fill-missing")
    assert rows
    for row in rows:
        assert set(row) >= (BALANCING_KEYS if row["kind"] == "LoadBalancingRule" else NAT_KEYS)


def test_ports_json_lists_the_load_balancing_rules_after_the_nat_entries(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rows = run_json(capsys, "ports", *example("lb-rules-probe"))
    assert [r["kind"] for r in rows] == ["InboundNatPool"] * 3 + ["LoadBalancingRule"] * 2
    web = rows[3]
    assert (web["ruleName"], web["frontendPort"], web["probe"]) == ("http-80", 80, "probe-80")
    assert [b["backend"] for b in web["backends"]] == ["web/0", "web/1", "web/2"]
    assert rows[4]["loadDistribution"] == "SourceIP"


def test_ports_json_of_a_nat_rule_v2(capsys: pytest.CaptureFixture[str]) -> None:
    rows = run_json(capsys, "ports", *example("nat-rule-v2"))
    picked = [{k: row[k] for k in sorted(NAT_KEYS)} for row in rows]
    assert picked == [
        {
            "backendIPAddress": f"10.4.0.{4 + i}",
            "backendPort": 22,
            "frontendIPConfiguration": "fe",
            "frontendPort": 60000 + i,
            "instanceId": i,
            "loadBalancer": "v2-lb",
            "protocol": "Tcp",
            "ruleName": "ssh",
            "scaleSet": "members",
        }
        for i in range(3)
    ]


# --- check -------------------------------------------------------------------------------------
NSG_EXAMPLE = "subnet-and-nic-nsg"


def test_check_allow_exits_0_and_names_the_deciding_rule(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "check",
        *example(NSG_EXAMPLE),
        "--source",
        "203.0.113.7:40000",
        "--frontend-port",
        "50001",
    )
    assert code == 0
    first, second = out.splitlines()[:2]
    assert first == "Allow: Tcp 203.0.113.7:40000 -> servers/1 10.3.0.5:22 via NAT rule ssh.1"
    assert second.startswith(
        "decided by rule allow-admins of NSG nic-nsg (networkInterface) at /resources/"
    )


@pytest.mark.parametrize(
    ("source", "rule", "nsg", "level"),
    [
        ("203.0.113.66", "deny-bad-host", "subnet-nsg", "subnet"),
        ("203.0.113.200", "deny-ssh", "nic-nsg", "networkInterface"),
        ("198.51.100.1", "DenyAllInBound", "subnet-nsg", "subnet"),
    ],
)
def test_check_deny_exits_1_with_the_deciding_rule(
    capsys: pytest.CaptureFixture[str], source: str, rule: str, nsg: str, level: str
) -> None:
    argv = ("check", *example(NSG_EXAMPLE), "--source", source, "--frontend-port", "50000")
    code, out, _ = run(capsys, *argv)
    assert code == 1
    assert out.startswith(f"Deny: Tcp {source}:49152 -> servers/0 10.3.0.4:22 via NAT rule ssh.0")
    assert f"decided by rule {rule} of NSG {nsg} ({level})" in out
    verdict = run_json(capsys, *argv)
    assert {
        k: verdict[k] for k in ("access", "ruleName", "networkSecurityGroup", "level", "natRule")
    } == {
        "access": "Deny",
        "ruleName": rule,
        "networkSecurityGroup": nsg,
        "level": level,
        "natRule": "ssh.0",
    }
    deciding = [e for e in verdict["evaluated"] if e["matched"]][-1]
    assert (deciding["rule"], deciding["access"]) == (rule, "Deny")
    assert set(deciding) >= {"protocol", "source", "sourcePort", "destination", "destinationPort"}


def test_check_straight_to_a_private_address(capsys: pytest.CaptureFixture[str]) -> None:
    verdict = run_json(
        capsys,
        "check",
        *example(NSG_EXAMPLE),
        "--source",
        "203.0.113.7",
        "--destination",
        "10.3.0.5:22",
    )
    assert (verdict["access"], verdict["natRule"], verdict["backend"]) == (
        "Allow",
        None,
        "servers/1",
    )
    assert verdict["flow"]["destinationPort"] == 22


def test_check_through_a_load_balancing_rule(capsys: pytest.CaptureFixture[str]) -> None:
    verdict = run_json(
        capsys,
        "check",
        *example("lb-rules-probe"),
        "--source",
        "198.51.100.1",
        "--frontend-port",
        "80",
    )
    assert (verdict["access"], verdict["loadBalancingRule"], verdict["natRule"]) == (
        "Allow",
        "http-80",
        None,
    )
    assert (verdict["ruleName"], verdict["networkSecurityGroup"]) == ("allow-inbound", "web-nsg")
    assert verdict["loadBalancerSku"] == "Standard"


def test_check_says_why_a_standard_load_balancer_without_nsg_denies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    template = _without_nsg(tmp_path, "nat-rule-v2")
    argv = ("check", str(template), "--source", "198.51.100.1", "--frontend-port", "60000")
    code, out, _ = run(capsys, *argv)
    assert code == 1
    assert out.splitlines()[0].startswith("Deny: Tcp 198.51.100.1:")
    assert "a Standard load balancer admits only flows that an NSG allows" in out


def _without_nsg(tmp_path: Path, name: str) -> Path:
    """An example with its NSG taken out."""
    doc = json.loads((EXAMPLES / name / "azuredeploy.json").read_text())
    doc["resources"] = [
        r for r in doc["resources"] if r["type"] != "Microsoft.Network/networkSecurityGroups"
    ]
    for item in doc["resources"]:
        item.pop("dependsOn", None)
        for sub in item["properties"].get("subnets", []):
            sub["properties"].pop("networkSecurityGroup", None)
    path = tmp_path / "azuredeploy.json"
    path.write_text(json.dumps(doc))
    return path


def test_check_on_a_port_nothing_listens_on_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("check", *example(NSG_EXAMPLE), "--source", "203.0.113.7", "--frontend-port", "50000")
    code, out, err = run(capsys, *argv, "--protocol", "udp")
    assert (code, out) == (2, "")
    assert err.startswith("lbsim: NoSuchFrontendPort:")


# --- rules -------------------------------------------------------------------------------------
def test_rules_lists_both_levels_with_the_default_rules(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "rules", *example(NSG_EXAMPLE), "--instance", "servers/1")
    assert code == 0
    assert out.splitlines()[0] == "servers/1 (10.3.0.5), Inbound:"
    names = [line.split()[3] for line in out.splitlines()[3:]]
    defaults = ["AllowVnetInBound", "AllowAzureLoadBalancerInBound", "DenyAllInBound"]
    assert names == [
        "deny-bad-host",
        "allow-ssh-partners",
        *defaults,
        "allow-admins",
        "deny-ssh",
        *defaults,
    ]


def test_rules_json_and_outbound(capsys: pytest.CaptureFixture[str]) -> None:
    listing = run_json(
        capsys, "rules", *example(NSG_EXAMPLE), "--instance", "servers/0", "--direction", "Outbound"
    )
    rules = listing["rules"]
    assert [(r["networkSecurityGroup"], r["name"]) for r in rules][:3] == [
        ("nic-nsg", "AllowVnetOutBound"),
        ("nic-nsg", "AllowInternetOutBound"),
        ("nic-nsg", "DenyAllOutBound"),
    ]
    assert all(r["isDefault"] for r in rules)


def test_rules_of_an_instance_without_nsg_and_of_an_unknown_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    template = str(_without_nsg(tmp_path, "nat-rule-v2"))
    code, out, _ = run(capsys, "rules", template, "--instance", "members/2")
    assert code == 0
    assert "no network security group applies" in out
    code, _, err = run(capsys, "rules", *example("nat-rule-v2"), "--instance", "members/9")
    assert code == 2
    assert err.startswith("lbsim: UnknownInstance:")


# --- errors ------------------------------------------------------------------------------------
def _broken(tmp_path: Path) -> Path:
    doc = json.loads((EXAMPLES / "vmss-two-pools" / "azuredeploy.json").read_text())
    doc["resources"].append(
        {
            "type": "Microsoft.Network/networkSecurityGroups",
            "apiVersion": "2023-09-01",
            "name": "bad-nsg",
            "location": "westeurope",
            "properties": {
                "securityRules": [
                    {
                        "name": "r",
                        "properties": {
                            "priority": 99,
                            "direction": "Inbound",
                            "access": "Maybe",
                            "protocol": "Tcp",
                            "sourceAddressPrefix": "*",
                            "sourcePortRange": "*",
                            "destinationAddressPrefix": "*",
                            "destinationPortRange": "22",
                        },
                    }
                ]
            },
        }
    )
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.mark.parametrize("command", ["validate", "ports", "rules"])
def test_broken_template_prints_every_problem_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str
) -> None:
    path = _broken(tmp_path)
    extra = ["--instance", "apps/0"] if command == "rules" else []
    code, out, err = run(capsys, command, str(path), *extra)
    assert (code, out) == (2, "")
    found = problem_lines(err)
    assert {p["file"] for p in found} == {str(path)}
    at = f"/resources/{len(json.loads(path.read_text())['resources']) - 1}"
    assert {(p["code"], p["at"]) for p in found} == {
        ("SecurityRuleInvalidPriority", f"{at}/properties/securityRules/0/properties/priority"),
        ("SecurityRuleInvalidAccess", f"{at}/properties/securityRules/0/properties/access"),
    }


def test_plan_errors_are_printed_with_the_template_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    pools = json.dumps(
        [
            {"name": "a", "start": 50000, "backendPort": 22},
            {"name": "b", "start": 50050, "backendPort": 23},
        ]
    )
    argv = example("vmss-two-pools")
    code, _, err = run(capsys, "ports", *argv, "--param", f"pools={pools}")
    assert code == 2
    (problem,) = problem_lines(err)
    assert (problem["file"], problem["code"]) == (
        argv[0],
        "InboundNatPoolFrontendPortRangesOverlapping",
    )
    assert problem["at"].startswith("/resources/")


def test_invalid_json_gives_line_and_column(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "resources": [\n    {"a": 1}\n    {"b": 2}\n  ]\n}\n')
    code, out, err = run(capsys, "validate", str(path))
    assert (code, out) == (2, "")
    (problem,) = problem_lines(err)
    assert (problem["file"], problem["code"]) == (str(path), "InvalidTemplate")
    assert "line 4, column 5" in problem["message"]


def test_missing_file_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    code, _, err = run(capsys, "ports", str(path))
    assert code == 2
    (problem,) = problem_lines(err)
    assert (problem["file"], problem["code"]) == (str(path), "FileNotFound")


def test_linked_template_beside_the_template_is_loaded(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "nested").mkdir()
    linked = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"priority": {"type": "int"}},
        "resources": [
            {
                "type": "Microsoft.Network/networkSecurityGroups",
                "apiVersion": "2023-09-01",
                "name": "linked-nsg",
                "location": "westeurope",
                "properties": {
                    "securityRules": [
                        {
                            "name": "r",
                            "properties": {
                                "priority": "[parameters('priority')]",
                                "direction": "Inbound",
                                "access": "Allow",
                                "protocol": "Tcp",
                                "sourceAddressPrefix": "*",
                                "sourcePortRange": "*",
                                "destinationAddressPrefix": "*",
                                "destinationPortRange": "22",
                            },
                        }
                    ]
                },
            }
        ],
    }
    (tmp_path / "nested" / "nsg.json").write_text(json.dumps(linked))
    main_doc = {
        "$schema": linked["$schema"],
        "contentVersion": "1.0.0.0",
        "parameters": {"priority": {"type": "int", "defaultValue": 200}},
        "resources": [
            {
                "type": "Microsoft.Resources/deployments",
                "apiVersion": "2022-09-01",
                "name": "security",
                "properties": {
                    "mode": "Incremental",
                    "templateLink": {
                        "uri": "[uri(deployment().properties.templateLink.uri, 'nested/nsg.json')]"
                    },
                    "parameters": {"priority": {"value": "[parameters('priority')]"}},
                },
            }
        ],
    }
    template = tmp_path / "azuredeploy.json"
    template.write_text(json.dumps(main_doc))
    code, out, _ = run(capsys, "validate", str(template))
    assert code == 0
    assert "emulated: 1 network security group" in out
    code, _, err = run(capsys, "validate", str(template), "--param", "priority=5000")
    assert code == 2
    (problem,) = problem_lines(err)
    assert (problem["file"], problem["code"], problem["at"]) == (
        str(tmp_path / "nested" / "nsg.json"),
        "SecurityRuleInvalidPriority",
        "/resources/0/properties/securityRules/0/properties/priority",
    )


@pytest.mark.parametrize(
    ("source", "access", "code"), [("203.0.113.7", "Allow", 0), ("198.51.100.66", "Deny", 1)]
)
def test_check_through_a_jump_boxs_own_public_ip(
    capsys: pytest.CaptureFixture[str], source: str, access: str, code: int
) -> None:
    argv = ("check", *example("vmss-jumpbox"), "--source", source, "--frontend-port", "22")
    status, out, _ = run(capsys, *argv)
    assert status == code
    assert out.startswith(
        f"{access}: Tcp {source}:49152 -> jumpbox 10.0.1.4:22 via its own public IP "
        "(jumpbox-pip.22)"
    )
    assert "Azure translated its public IP to it" in out
    verdict = run_json(capsys, *argv)
    assert (verdict["natKind"], verdict["natRule"]) == ("InstancePublicIP", "jumpbox-pip.22")
