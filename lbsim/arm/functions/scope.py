"""Deployment and scope functions: parameters, variables, copyIndex, deployment,
environment, resourceGroup, subscription, tenant, deployer."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lbsim.arm.functions.base import (
    ArgumentError,
    Env,
    Kind,
    Registry,
    expect_int,
    expect_str,
    is_int,
)
from lbsim.arm.hashing import murmur_hash64

register = Registry()

ZERO_GUID = "00000000-0000-0000-0000-000000000000"


@register("parameters", kind=Kind.ENV)
def _parameters(env: Env, name: Any) -> Any:
    return env.ctx.parameter(expect_str(name, 1))


@register("variables", kind=Kind.ENV)
def _variables(env: Env, name: Any) -> Any:
    return env.ctx.variable(expect_str(name, 1))


@register("copyIndex", kind=Kind.ENV)
def _copy_index(env: Env, first: Any = None, second: Any = None) -> int:
    """``copyIndex()``, ``copyIndex(offset)``, ``copyIndex('loop')`` or
    ``copyIndex('loop', offset)``."""
    if is_int(first) and second is None:
        return env.ctx.copy_index(None) + int(first)
    if first is not None and not isinstance(first, str):
        raise ArgumentError("argument 1 must be a loop name (string) or an offset (integer).")
    offset = 0 if second is None else expect_int(second, 2)
    return env.ctx.copy_index(first) + offset


@register("deployment", kind=Kind.ENV)
def _deployment(env: Env) -> dict[str, Any]:
    """The object Azure passes for the deployment being evaluated: the root's, or a nested or
    linked deployment's own. Its ``properties`` hold the ``template``, the ``parameters`` as
    given and a ``templateHash``. A languageVersion 2.0 template sees the subset Microsoft
    documents: ``template.contentVersion`` and ``templateLink``
    (https://learn.microsoft.com/azure/azure-resource-manager/templates/template-functions-deployment).
    """
    given = env.ctx.deployment_properties
    template = given.get("template")
    name = env.ctx.deployment.deployment_name
    if isinstance(template, Mapping) and str(template.get("languageVersion", "")).startswith("2."):
        subset: dict[str, Any] = {"template": {"contentVersion": template.get("contentVersion")}}
        if "templateLink" in given:
            subset["templateLink"] = given["templateLink"]
        return {"name": name, "properties": subset}
    properties: dict[str, Any] = {"mode": "Incremental", "provisioningState": "Accepted"}
    properties.update(given)
    if isinstance(template, Mapping):
        properties["templateHash"] = template_hash(template)
    return {"name": name, "properties": properties}


def template_hash(template: Mapping[str, Any]) -> str:
    """A stable string derived from a template's content, in the shape of Azure's
    ``templateHash`` (a decimal number). It is NOT Azure's value, which Azure computes from its
    own form of the template: it is the same for the same content (key order and whitespace
    aside) and changes when the content does, which is what templates use it for."""
    key = id(template)
    cached = _HASHES.get(key)
    if cached is not None and cached[0] is template:
        return cached[1]
    text = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    value = str(murmur_hash64(text.encode("utf-8")))
    if len(_HASHES) >= 64:  # templates live as long as their load; keep a few
        _HASHES.clear()
    _HASHES[key] = (template, value)
    return value


_HASHES: dict[int, tuple[Mapping[str, Any], str]] = {}


@register("resourceGroup", kind=Kind.ENV)
def _resource_group(env: Env) -> dict[str, Any]:
    context = env.ctx.deployment
    return {
        "id": context.resource_group_id,
        "name": context.resource_group,
        "type": "Microsoft.Resources/resourceGroups",
        "location": context.location,
        "tags": {},
        "properties": {"provisioningState": "Succeeded"},
    }


@register("subscription", kind=Kind.ENV)
def _subscription(env: Env) -> dict[str, Any]:
    context = env.ctx.deployment
    return {
        "id": f"/subscriptions/{context.subscription_id}",
        "subscriptionId": context.subscription_id,
        "tenantId": context.tenant_id,
        "displayName": "lbsim",
    }


@register("tenant", kind=Kind.ENV)
def _tenant(env: Env) -> dict[str, Any]:
    tenant_id = env.ctx.deployment.tenant_id
    return {
        "countryCode": "US",
        "displayName": "lbsim",
        "id": f"/tenants/{tenant_id}",
        "tenantId": tenant_id,
    }


@register("deployer", kind=Kind.ENV)
def _deployer(env: Env) -> dict[str, Any]:
    return {
        "objectId": ZERO_GUID,
        "tenantId": env.ctx.deployment.tenant_id,
        "userPrincipalName": "lbsim@localhost",
    }


@register("managementGroup")
def _management_group() -> dict[str, Any]:
    raise ArgumentError("managementGroup() can only be used in a management group deployment.")


@register("environment")
def _environment() -> dict[str, Any]:
    """The AzureCloud environment as ARM documents it."""
    return {
        "name": "AzureCloud",
        "gallery": "https://gallery.azure.com/",
        "graph": "https://graph.windows.net/",
        "portal": "https://portal.azure.com",
        "graphAudience": "https://graph.windows.net/",
        "activeDirectoryDataLake": "https://datalake.azure.net/",
        "batch": "https://batch.core.windows.net/",
        "media": "https://rest.media.azure.net",
        "sqlManagement": "https://management.core.windows.net:8443/",
        "vmImageAliasDoc": (
            "https://raw.githubusercontent.com/Azure/azure-rest-api-specs/master/"
            "arm-compute/quickstart-templates/aliases.json"
        ),
        "resourceManager": "https://management.azure.com/",
        "authentication": {
            "loginEndpoint": "https://login.microsoftonline.com/",
            "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
            "tenant": "common",
            "identityProvider": "AAD",
        },
        "suffixes": {
            "acrLoginServer": ".azurecr.io",
            "azureDatalakeAnalyticsCatalogAndJob": "azuredatalakeanalytics.net",
            "azureDatalakeStoreFileSystem": "azuredatalakestore.net",
            "azureFrontDoorEndpointSuffix": "azurefd.net",
            "keyvaultDns": ".vault.azure.net",
            "sqlServerHostname": ".database.windows.net",
            "storage": "core.windows.net",
        },
    }


FUNCTIONS = register.table
