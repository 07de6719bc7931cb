"""Nested and linked deployments as Azure runs them: a resource deployed twice is updated in
place in deployment order; a linked template's URL is read from a local file only when that
file is its copy (or the link map says so); errors name the linked file and the chain of
deployments they are in."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from templates import (
    DEPLOYMENTS,
    LB,
    NIC,
    Json,
    ip_configuration,
    load,
    load_balancer,
    nat_rule,
    network_interface,
    nsg,
    public_ip,
    resource,
    resource_id,
    security_rule,
    template,
    vnet,
)

from lbsim.api.config import resolve
from lbsim.api.files import Loaded
from lbsim.api.files import load as load_files
from lbsim.api.links import LinkResolver, parse_links
from lbsim.cli import main
from lbsim.control.plan import plan
from lbsim.errors import ConfigError, Problem, TemplateInvalid
from lbsim.model import Deployment

URL = "https://example.invalid/artifacts"


# --- helpers ------------------------------------------------------------------------------------
def _deployment(name: str, properties: Json, *depends_on: str) -> Json:
    doc = resource(DEPLOYMENTS, name, {"mode": "Incremental", **properties})
    doc.pop("location")
    if depends_on:
        doc["dependsOn"] = list(depends_on)
    return doc


def _inline(name: str, inner: Json, *depends_on: str) -> Json:
    scope = {"expressionEvaluationOptions": {"scope": "inner"}, "template": inner}
    return _deployment(name, scope, *depends_on)


def _linked(name: str, link: Json, /, *depends_on: str, **parameters: Any) -> Json:
    values = {k: {"value": v} for k, v in parameters.items()}
    return _deployment(name, {"templateLink": link, "parameters": values}, *depends_on)


def _write(path: Path, doc: Json) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _args(path: Path, *links: str) -> argparse.Namespace:
    """What the CLI passes ``load`` for ``lbsim ports PATH --link ...``."""
    return argparse.Namespace(
        template=str(path),
        parameters=None,
        param=[],
        fill_missing=False,
        subscription_id="00000000-0000-0000-0000-000000000000",
        tenant_id="00000000-0000-0000-0000-000000000000",
        resource_group="lbsim-rg",
        location="westeurope",
        deployment_name=None,
        links=list(links),
    )


def _load(path: Path, *links: str) -> Loaded:
    return load_files(_args(path, *links))


def _errors(path: Path, *links: str) -> tuple[Problem, ...]:
    with pytest.raises(TemplateInvalid) as caught:
        _load(path, *links)
    return caught.value.problems


def _warnings(loaded: Loaded | Deployment) -> list[tuple[str, str, str | None]]:
    return [(w.code, str(w.at), w.document) for w in loaded.warnings]


# --- the same resource deployed twice -----------------------------------------------------------
LB_TWO_RULES = load_balancer(
    nat_rules=[nat_rule("rdp", 3389, port=3389), nat_rule("ssh", 22, port=2222)]
)


def _nic(rule: str, ipconfig: str = "ipconfig", **extra: Any) -> Json:
    doc = network_interface("nic", ip_configuration(ipconfig, nat_rules=[rule], ip="10.0.0.4"))
    doc["properties"].update(extra)
    return doc


def _nat(deployment: Deployment) -> list[tuple[str, int, str | None]]:
    return [
        (e.rule_name, e.frontend_port, e.backend.private_ip_address if e.backend else None)
        for e in plan(deployment).nat
    ]


NIC_ID = resource_id(NIC, "nic")


def test_a_nested_deployment_updates_the_nic_it_redeploys_in_place() -> None:
    """The NIC of the root, redeployed by a nested deployment with DNS servers and another
    NAT rule: one NIC with the later definition's properties, and its static address is its
    own, not taken by an earlier copy of itself."""
    update = _nic("ssh", dnsSettings={"dnsServers": ["10.0.0.10"]})
    inner = template(update)
    doc = template(public_ip(), vnet(), LB_TWO_RULES, _nic("rdp"), _inline("dns", inner, NIC_ID))
    deployment = load(doc)
    (nic,) = deployment.network_interfaces
    assert (nic.name, str(nic.at)) == ("nic", "/resources/4/properties/template/resources/0")
    assert _nat(deployment) == [("rdp", 3389, None), ("ssh", 2222, "10.0.0.4")]


@pytest.mark.parametrize(
    ("order", "rule"),
    [
        ("deployment dependsOn the NIC", "ssh"),
        ("NIC dependsOn the deployment", "rdp"),
        ("independent, deployment written last", "ssh"),
        ("independent, deployment written first", "rdp"),
    ],
)
def test_deployment_order_follows_depends_on_then_template_order(order: str, rule: str) -> None:
    """The root's NIC uses 'rdp', the nested deployment's 'ssh': the definition deployed last
    is the one that stays."""
    root_nic = _nic("rdp")
    deployment_depends = [NIC_ID] if order == "deployment dependsOn the NIC" else []
    nested = _inline("update", template(_nic("ssh")), *deployment_depends)
    if order == "NIC dependsOn the deployment":
        root_nic["dependsOn"] = ["update"]
    pair = (
        [nested, root_nic] if "first" in order or "NIC dependsOn" in order else [root_nic, nested]
    )
    result = load(template(public_ip(), vnet(), LB_TWO_RULES, *pair))
    assert [(e[0], e[2]) for e in _nat(result) if e[2] is not None] == [(rule, "10.0.0.4")]
    assert len(result.network_interfaces) == 1


def test_depends_on_reaches_through_copy_loops_and_chains() -> None:
    """The NIC depends on a copy loop that depends on the deployment: the root's NIC is
    deployed last."""
    loop = nsg("[concat('g', copyIndex())]")
    loop.update(copy={"name": "groups", "count": 2}, dependsOn=["update"])
    root_nic = _nic("rdp")
    root_nic["dependsOn"] = ["groups"]
    nested = _inline("update", template(_nic("ssh")))
    result = load(template(public_ip(), vnet(), LB_TWO_RULES, root_nic, loop, nested))
    assert [e[0] for e in _nat(result) if e[2] is not None] == ["rdp"]


def test_reference_to_a_resource_deployed_twice_reads_the_definition_that_stays() -> None:
    nested = _inline("update", template(_nic("ssh", ipconfig="later")), NIC_ID)
    outputs = {
        "ipconfig": {"type": "string", "value": "[reference('nic').ipConfigurations[0].name]"}
    }
    doc = template(public_ip(), vnet(), LB_TWO_RULES, _nic("rdp"), nested, outputs=outputs)
    result = load(doc)
    assert result.outputs == (("ipconfig", "later"),)
    assert [w.code for w in result.warnings] == []


def test_the_same_vnet_template_deployed_twice_is_one_vnet(tmp_path: Path) -> None:
    """Two linked deployments of one virtual network template (relativePath), and the load
    balancer's NIC in it: end to end through the CLI's loading and plan."""
    _write(tmp_path / "modules" / "vnet.json", template(vnet()))
    link = {"relativePath": "modules/vnet.json"}
    lb = load_balancer(nat_rules=[nat_rule("rdp", 3389, port=3389)])
    doc = template(
        _linked("vnetA", link),
        _linked("vnetB", link),
        public_ip(),
        lb,
        _nic("rdp"),
    )
    loaded = _load(_write(tmp_path / "main.json", doc))
    (network,) = loaded.deployment.virtual_networks
    assert network.at is not None
    assert (network.at.document, str(network.at)) == (
        str(tmp_path / "modules" / "vnet.json"),
        "/resources/0",
    )
    assert [
        (e.rule_name, e.backend.private_ip_address if e.backend else None) for e in loaded.plan.nat
    ] == [("rdp", "10.0.0.4")]
    assert _warnings(loaded) == []


def test_a_load_balancer_updated_by_a_linked_template_keeps_one_nat_table(tmp_path: Path) -> None:
    """The root deploys the load balancer with one NAT rule; a linked template redeploys it
    with two: the plan has the two rules once each."""
    lb_two = load_balancer(
        nat_rules=[nat_rule("rdp", 3389, port=3389), nat_rule("web", 80, port=8080)]
    )
    _write(tmp_path / "nested" / "lb.json", template(lb_two))
    lb_one = load_balancer(nat_rules=[nat_rule("rdp", 3389, port=3389)])
    link = {"uri": f"{URL}/nested/lb.json"}
    doc = template(
        public_ip(), vnet(), lb_one, _nic("rdp"), _linked("lb", link, resource_id(LB, "lb"))
    )
    loaded = _load(_write(tmp_path / "main.json", doc))
    assert len(loaded.deployment.load_balancers) == 1
    assert sorted((e.rule_name, e.frontend_port) for e in loaded.plan.nat) == [
        ("rdp", 3389),
        ("web", 8080),
    ]


def test_one_template_that_defines_a_resource_twice_is_invalid() -> None:
    """Azure rejects it: only another deployment may deploy a resource again."""
    (problem,) = _root_problems(template(nsg("g"), nsg("other"), nsg("g")))
    assert (problem.code, str(problem.at), problem.document) == (
        "InvalidTemplate",
        "/resources/2",
        "t.json",
    )
    assert "'Microsoft.Network/networkSecurityGroups/g' is defined multiple times" in str(problem)


# --- which local file a linked template's URL is ------------------------------------------------
NSG_TEMPLATE = template(
    nsg("[parameters('name')]", security_rule("ssh", "[parameters('priority')]")),
    parameters={"name": {"type": "string"}, "priority": {"type": "int", "defaultValue": 500}},
)


def _linking(tmp_path: Path, uri: str) -> Path:
    return _write(tmp_path / "main.json", template(_linked("linked", {"uri": uri}, name="g")))


def test_a_file_of_the_same_name_alone_is_not_the_linked_template(tmp_path: Path) -> None:
    _write(tmp_path / "nsg.json", NSG_TEMPLATE)
    _write(tmp_path / "nested" / "nsg.json", NSG_TEMPLATE)
    loaded = _load(_linking(tmp_path, f"{URL}/other/nsg.json"))
    assert loaded.deployment.network_security_groups == ()
    main = str(tmp_path / "main.json")
    assert _warnings(loaded) == [
        ("LinkedTemplateNotFound", "/resources/0/properties/templateLink", main)
    ]
    assert "--link URL=FILE" in loaded.warnings[0].message
    (unresolved,) = loaded.deployment.not_emulated
    assert (unresolved.type, unresolved.name) == (DEPLOYMENTS, "linked")


def test_a_url_is_read_from_the_same_path_under_the_linking_template(tmp_path: Path) -> None:
    _write(tmp_path / "nested" / "nsg.json", NSG_TEMPLATE)
    url = f"{URL}/nested/nsg.json?sv=2024&sig=secret"
    loaded = _load(_linking(tmp_path, url))
    (group,) = loaded.deployment.network_security_groups
    assert group.name == "g"
    ((code, at, document),) = _warnings(loaded)
    assert (code, at, document) == (
        "LinkedTemplateMapped",
        "/resources/0/properties/templateLink",
        str(tmp_path / "main.json"),
    )
    assert url in loaded.warnings[0].message
    assert str(tmp_path / "nested" / "nsg.json") in loaded.warnings[0].message


def test_a_url_with_a_one_segment_path_is_read_beside_the_template(tmp_path: Path) -> None:
    _write(tmp_path / "nsg.json", NSG_TEMPLATE)
    loaded = _load(_linking(tmp_path, "https://example.invalid/nsg.json"))
    assert [g.name for g in loaded.deployment.network_security_groups] == ["g"]


def test_link_map_maps_an_exact_url_and_a_folder(tmp_path: Path) -> None:
    local = _write(tmp_path / "copies" / "any-name.json", NSG_TEMPLATE)
    _write(tmp_path / "mirror" / "deep" / "nsg.json", NSG_TEMPLATE)
    doc = template(
        _linked("one", {"uri": "https://a.invalid/x/nsg.json?token"}, name="one"),
        _linked("two", {"uri": "https://b.invalid/base/deep/nsg.json"}, name="two"),
    )
    path = _write(tmp_path / "main.json", doc)
    loaded = _load(
        path,
        f"https://a.invalid/x/nsg.json={local}",
        f"https://b.invalid/base/={tmp_path / 'mirror'}",
    )
    assert sorted(g.name for g in loaded.deployment.network_security_groups) == ["one", "two"]
    assert [(w.code, w.document) for w in loaded.warnings] == [
        ("LinkedTemplateMapped", str(path)),
        ("LinkedTemplateMapped", str(path)),
    ]
    assert str(local) in loaded.warnings[0].message


def test_a_link_map_entry_whose_file_is_missing_is_an_error(tmp_path: Path) -> None:
    path = _linking(tmp_path, f"{URL}/nsg.json")
    (problem,) = _errors(path, f"{URL}/nsg.json={tmp_path / 'absent.json'}")
    assert (problem.code, str(problem.at), problem.document) == (
        "LinkedTemplateFileNotFound",
        "/resources/0/properties/templateLink",
        str(path),
    )
    assert str(tmp_path / "absent.json") in problem.message


def test_links_of_a_mapped_template_resolve_under_the_url_it_came_from(tmp_path: Path) -> None:
    """``nested/a.json`` came from ``URL/nested/a.json``: its links to ``URL/other/b.json``
    and to ``c.json`` beside its own URL are read from the same folders locally, though
    neither is under ``nested/`` by two segments."""
    own = "[uri(deployment().properties.templateLink.uri, 'c.json')]"
    a = template(
        _linked("b", {"uri": f"{URL}/other/b.json"}, name="b"),
        _linked("c", {"uri": own}, name="c"),
    )
    _write(tmp_path / "nested" / "a.json", a)
    _write(tmp_path / "other" / "b.json", NSG_TEMPLATE)
    _write(tmp_path / "nested" / "c.json", NSG_TEMPLATE)
    loaded = _load(
        _write(tmp_path / "main.json", template(_linked("a", {"uri": f"{URL}/nested/a.json"})))
    )
    assert sorted(g.name for g in loaded.deployment.network_security_groups) == ["b", "c"]
    assert [w.code for w in loaded.warnings] == ["LinkedTemplateMapped"] * 3


def test_relative_path_and_file_uri_links_still_resolve(tmp_path: Path) -> None:
    nested = _write(tmp_path / "nested" / "nsg.json", NSG_TEMPLATE)
    doc = template(
        _linked("rel", {"relativePath": "nested/nsg.json"}, name="rel"),
        _linked("file", {"uri": nested.resolve().as_uri()}, name="file"),
    )
    loaded = _load(_write(tmp_path / "main.json", doc))
    assert sorted(g.name for g in loaded.deployment.network_security_groups) == ["file", "rel"]
    assert loaded.warnings == ()


def test_link_arguments_and_the_config_files_links_table(tmp_path: Path) -> None:
    assert parse_links(["https://a.invalid/x.json=x.json"]) == {
        "https://a.invalid/x.json": "x.json"
    }
    with pytest.raises(ConfigError) as caught:
        parse_links(["https://a.invalid/x.json"])
    assert caught.value.code == "InvalidSetting"
    config = tmp_path / "conf" / "lbsim.toml"
    config.parent.mkdir()
    config.write_text('[links]\n"https://a.invalid/base/" = "mirror"\n', encoding="utf-8")
    args = argparse.Namespace(config=str(config), links=["https://b.invalid/y.json=y.json"])
    links = resolve(args, {}).links
    assert links == {
        "https://a.invalid/base/": str(tmp_path / "conf" / "mirror"),
        "https://b.invalid/y.json": "y.json",
    }


def test_the_resolver_never_returns_the_linking_template_itself(tmp_path: Path) -> None:
    main = _write(tmp_path / "site" / "azuredeploy.json", template())
    resolver = LinkResolver()
    assert resolver(f"{URL}/site/azuredeploy.json", str(main)) is None


def test_a_url_of_many_segments_tries_only_tails_that_start_at_a_name_the_folder_has(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each tail of a URL's path used to be resolved on disk: 2,000 segments took seconds.
    A tail whose first segment the folder lacks is not tried; one that starts at a name
    there still is, and still resolves."""
    main = _write(tmp_path / "main.json", template())
    module = _write(tmp_path / "modules" / "nsg.json", NSG_TEMPLATE)
    tried: list[Path] = []
    read = LinkResolver._read_if_file

    def counted(self: LinkResolver, path: Path, target: str, from_file: str | None) -> Any:
        tried.append(path)
        return read(self, path, target, from_file)

    monkeypatch.setattr(LinkResolver, "_read_if_file", counted)
    many = "/".join(["a"] * 2000)
    assert LinkResolver()(f"{URL}/{many}/nsg.json", str(main)) is None
    assert tried == []
    found = LinkResolver()(f"{URL}/{many}/modules/nsg.json", str(main))
    assert found is not None
    assert found[1] == str(module)
    assert tried == [module]


# --- errors inside nested and linked deployments ------------------------------------------------
def test_an_error_in_a_linked_template_names_its_file_and_the_deployment_chain(
    tmp_path: Path,
) -> None:
    module = _write(tmp_path / "modules" / "nsg.json", NSG_TEMPLATE)
    inner = template(
        _linked("nsgDeploy", {"relativePath": "modules/nsg.json"}, name="n", priority=5000)
    )
    path = _write(tmp_path / "main.json", template(_inline("outer", inner)))
    (problem,) = _errors(path)
    assert (problem.code, str(problem.at), problem.document) == (
        "SecurityRuleInvalidPriority",
        "/resources/0/properties/securityRules/0/properties/priority",
        str(module),
    )
    assert str(problem).startswith(f"{module}#/resources/0/properties/securityRules/0/")
    assert str(problem).endswith("(in deployment 'outer' > 'nsgDeploy')")


def test_an_error_in_an_inline_template_names_the_deployment(tmp_path: Path) -> None:
    inner = template(nsg("[parameters('absent')]"))
    path = _write(tmp_path / "main.json", template(_inline("child", inner)))
    (problem,) = _errors(path)
    assert (problem.code, str(problem.at), problem.document) == (
        "InvalidTemplate",
        "/resources/0/properties/template/resources/0/name",
        str(path),
    )
    assert problem.message.endswith("(in deployment 'child')")


def test_invalid_json_in_a_linked_file_names_that_file(tmp_path: Path) -> None:
    broken = tmp_path / "nested" / "nsg.json"
    broken.parent.mkdir()
    broken.write_text('{\n  "resources": [\n', encoding="utf-8")
    (problem,) = _errors(_linking(tmp_path, f"{URL}/nested/nsg.json"))
    assert (problem.code, problem.document) == ("InvalidTemplate", str(broken))
    assert "line" in problem.message


def test_an_error_in_the_root_template_has_no_deployment_chain() -> None:
    doc = template(nsg("g", security_rule("r", 5000)), _inline("child", template()))
    problems = _root_problems(doc)
    assert [(p.code, p.message.endswith(")")) for p in problems] == [
        ("SecurityRuleInvalidPriority", False)
    ]


def _root_problems(doc: Json) -> tuple[Problem, ...]:
    with pytest.raises(TemplateInvalid) as caught:
        load(doc)
    return caught.value.problems


# --- the command line ---------------------------------------------------------------------------
def test_lbsim_ports_reads_a_mapped_link_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = _write(tmp_path / "copies" / "lb.json", template(LB_TWO_RULES))
    url = "https://a.invalid/templates/lb.json"
    doc = template(public_ip(), vnet(), _nic("ssh"), _linked("lb", {"uri": url}))
    path = _write(tmp_path / "main.json", doc)
    code = main(["ports", str(path), "--link", f"{url}={local}", "-o", "json"])
    out, err = capsys.readouterr()
    assert code == 0
    rows = [(r["ruleName"], r["frontendPort"], r.get("backendIPAddress")) for r in json.loads(out)]
    assert rows == [("rdp", 3389, None), ("ssh", 2222, "10.0.0.4")]
    assert "LinkedTemplateMapped: The linked template of deployment 'lb' is read from a " in err
    assert f"{url} -> {local}" in err


def test_lbsim_validate_lists_an_unmapped_link_as_not_emulated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "lb.json", template(LB_TWO_RULES))  # the same name, another path
    path = _linking(tmp_path, "https://a.invalid/templates/lb.json")
    assert main(["validate", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "not emulated: Microsoft.Resources/deployments (1)" in out
    assert f"{path}#/resources/0/properties/templateLink: LinkedTemplateNotFound" in err


def test_the_config_files_links_reach_the_loader_under_the_link_arguments(tmp_path: Path) -> None:
    """``lbsim up`` passes its config's links to ``load``; a ``--link`` for the same URL wins."""
    url = "https://a.invalid/templates/nsg.json"
    from_config = _write(tmp_path / "config-copy.json", NSG_TEMPLATE)
    from_flag = _write(tmp_path / "flag-copy.json", NSG_TEMPLATE)
    path = _linking(tmp_path, url)
    by_config = load_files(_args(path), links={url: str(from_config)})
    assert f"{url} -> {from_config}" in by_config.warnings[0].message
    by_flag = load_files(_args(path, f"{url}={from_flag}"), links={url: str(from_config)})
    assert f"{url} -> {from_flag}" in by_flag.warnings[0].message
