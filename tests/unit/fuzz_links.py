"""Hostile ``templateLink`` values for fuzzing how lbsim follows linked templates.

A template's links are text its author chose, and lbsim reads the files they name. The tree
made here has, under ``root/``, the template being loaded, real linked templates, a FIFO, a
5 MB file, a folder named like a template, a symlink out and a template that links itself;
``mapped/`` is a folder the link map names; ``outside/secret.json`` lies outside every root.
Whatever a link says (``..``, absolute paths, ``file:`` URIs, percent-escapes, NULs, long
paths, expressions), loading ends in a deployment or an ``LbsimError``, and nothing of the
secret file shows in either.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from lbsim.api.files import load
from lbsim.cli import build_parser
from lbsim.errors import LbsimError, TemplateInvalid

PARSER = build_parser()  # argparse builds the whole CLI in milliseconds: once

SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"
SECRET = "LBSIM-FUZZ-SECRET"  # in outside/secret.json only
MAPPED_URL = "https://links.example/m/"

RELATIVE = [
    "linked.json",
    "nested/inner.json",
    "./linked.json",
    "nested//inner.json",
    "nested/../linked.json",
    "../outside/secret.json",
    "nested/../../outside/secret.json",
    "%2e%2e/outside/secret.json",
    "..\\outside\\secret.json",
    "out-link.json",
    "fifo",
    "big.json",
    "dir.json",
    "azuredeploy.json",
    "loop.json",
    "/etc/passwd",
    "/dev/zero",
    "/proc/self/environ",
    "{outside}/secret.json",
    "",
    ".",
    "..",
    "nested/",
    "~/linked.json",
    "C:\\linked.json",
    "\\\\server\\share\\linked.json",
    "linked.json\x00.png",
    "\ud800.json",
    "x" * 300 + ".json",
    "a/" * 3000 + "linked.json",
    "[concat('..', '/outside/secret.json')]",
    "[concat('linked', '.json')]",
]
URIS = [
    "file:///etc/passwd",
    "file://{outside}/secret.json",
    "file://{root}/linked.json",
    "file:///dev/zero",
    MAPPED_URL + "m.json",
    MAPPED_URL + "m.json?sv=2024&sig=x#frag",
    MAPPED_URL + "../../outside/secret.json",
    MAPPED_URL + "%2e%2e/%2e%2e/outside/secret.json",
    MAPPED_URL + "missing.json",
    "https://evil.example/root/linked.json",
    "https://evil.example/outside/secret.json",
    "https://evil.example/" + "a/" * 200 + "linked.json",
    "http://[::1",
    "javascript:alert(1)",
    "ftp://links.example/linked.json",
    "data:application/json,{}",
    "/subscriptions/s/resourceGroups/g/providers/Microsoft.Resources/templateSpecs/t/versions/1",
    "[uri(deployment().properties.templateLink.uri, '../outside/secret.json')]",
]


def _template(resources: list[Any], outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "contentVersion": "1.0.0.0",
        "resources": resources,
        "outputs": outputs or {},
    }


def _nsg(name: str) -> dict[str, Any]:
    return {
        "type": "Microsoft.Network/networkSecurityGroups",
        "apiVersion": "2023-04-01",
        "name": name,
        "location": "westus",
        "properties": {},
    }


def _deployment(name: str, link: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2022-09-01",
        "name": name,
        "properties": {"mode": "Incremental", "templateLink": link},
    }


def make_tree(base: Path) -> Path:
    """The tree described above, under ``base``; its ``root`` folder."""
    root, outside, mapped = base / "root", base / "outside", base / "mapped"
    for folder in (root / "nested", root / "dir.json", outside, mapped):
        folder.mkdir(parents=True)
    secret = _template([_nsg(SECRET)], {"o": {"type": "string", "value": SECRET}})
    (outside / "secret.json").write_text(json.dumps(secret))
    inner = _template([_nsg("inner")])
    (root / "nested" / "inner.json").write_text(json.dumps(inner))
    linked = _template([_nsg("linked"), _deployment("in", {"relativePath": "nested/inner.json"})])
    (root / "linked.json").write_text(json.dumps(linked))
    loop = _template([_deployment("again", {"relativePath": "loop.json"})])
    (root / "loop.json").write_text(json.dumps(loop))
    (mapped / "m.json").write_text(json.dumps(_template([_nsg("mapped")])))
    os.mkfifo(root / "fifo")
    with open(root / "big.json", "wb") as big:
        big.truncate(5 * 1024 * 1024)  # sparse: costs no disk
    (root / "out-link.json").symlink_to(outside / "secret.json")
    return root


@st.composite
def linking_templates(draw: st.DrawFn) -> dict[str, Any]:
    """A root template of one to three deployments whose links are hostile."""
    deployments = []
    for index in range(draw(st.integers(1, 3))):
        link: dict[str, Any] = {}
        if draw(st.booleans()):
            link["relativePath"] = draw(st.one_of(st.sampled_from(RELATIVE), st.text(max_size=30)))
        if not link or draw(st.booleans()):
            link["uri"] = draw(st.one_of(st.sampled_from(URIS), st.text(max_size=30)))
        if draw(st.integers(0, 4)) == 0:
            link["contentVersion"] = draw(st.sampled_from(["1.0.0.0", "9.9.9.9", 7]))
        deployments.append(_deployment(f"d{index}", link))
    return _template(deployments)


def load_linking(root: Path, template: dict[str, Any]) -> str:
    """Write ``template`` as ``root/azuredeploy.json`` and load it as ``lbsim validate
    --link MAPPED_URL=mapped/`` does: "valid" or the error's code. The secret never shows."""
    text = json.dumps(template).replace("{root}", str(root))
    text = text.replace("{outside}", str(root.parent / "outside"))
    path = root / "azuredeploy.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    mapping = f"{MAPPED_URL}={root.parent / 'mapped'}"
    args = PARSER.parse_args(["validate", str(path), "--link", mapping])
    try:
        loaded = load(args)
    except TemplateInvalid as error:
        code = error.problems[0].code
        shown = " ".join(f"{p.code} {p.message} {p.at}" for p in error.problems)
    except LbsimError as error:
        code, shown = error.code, error.message
    else:
        code, shown = "valid", repr(loaded.deployment)
    assert SECRET not in shown, shown[:2000]
    return code
