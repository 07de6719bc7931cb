"""Deployment and scope functions: parameters, variables, copyIndex, deployment,
environment, resourceGroup, subscription, tenant, deployer."""

from __future__ import annotations

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
    properties: dict[str, Any] = {"mode": "Incremental", "provisioningState": "Accepted"}
    properties.update(env.ctx.deployment_properties)
    return {"name": env.ctx.deployment.deployment_name, "properties": properties}


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
