"""Resource functions: the resourceId family, reference, list*, providers and pickZones."""

from __future__ import annotations

import functools
from typing import Any

from lbsim.arm.functions.base import (
    ArgumentError,
    Env,
    Function,
    Kind,
    Registry,
    expect_int,
    expect_str,
    type_name,
)

register = Registry()

ZONES = ("1", "2", "3")


def _strings(args: tuple[Any, ...]) -> list[str]:
    for position, arg in enumerate(args, start=1):
        if not isinstance(arg, str):
            raise ArgumentError(
                f"all function arguments must be strings; argument {position} is of type "
                f"'{type_name(arg)}'."
            )
    return list(args)


def _type_position(args: list[str], before: int, what: str) -> int:
    """Where the resource type (the only argument with a '/') is; at most ``before`` scope
    arguments may precede it."""
    multi = [i for i, arg in enumerate(args) if "/" in arg]
    if len(multi) != 1:
        raise ArgumentError(
            "function requires exactly one multi-segmented argument which must be resource "
            f"type including resource provider namespace. Current function arguments "
            f"'{','.join(args)}'."
        )
    position = multi[0]
    if position > before:
        raise ArgumentError(f"at most {before} {what} argument(s) may precede the resource type.")
    return position


@functools.lru_cache(maxsize=1024)
def _segments(resource_type: str) -> tuple[str, ...]:
    return tuple(resource_type.rstrip("/").split("/"))


def resource_path(resource_type: str, names: list[str]) -> str:
    """``Ns/type/child`` + names -> ``Ns/type/name/child/childName``."""
    segments = _segments(resource_type)
    types = segments[1:]
    if len(names) != len(types) or not names:
        raise ArgumentError(
            f"the type '{resource_type}' requires '{len(types)}' resource name argument(s)."
        )
    return segments[0] + "".join(f"/{t}/{n}" for t, n in zip(types, names, strict=True))


@register("resourceId", kind=Kind.ENV, min_args=2)
def _resource_id(env: Env, *args: Any) -> str:
    values = _strings(args)
    position = _type_position(values, 2, "scope")
    context = env.ctx.deployment
    scope = values[:position]
    subscription = scope[0] if position == 2 else context.subscription_id
    group = scope[-1] if scope else context.resource_group
    path = resource_path(values[position], values[position + 1 :])
    return f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{path}"


@register("subscriptionResourceId", kind=Kind.ENV, min_args=2)
def _subscription_resource_id(env: Env, *args: Any) -> str:
    values = _strings(args)
    position = _type_position(values, 1, "subscription id")
    subscription = values[0] if position else env.ctx.deployment.subscription_id
    path = resource_path(values[position], values[position + 1 :])
    return f"/subscriptions/{subscription}/providers/{path}"


@register("tenantResourceId", min_args=2)
def _tenant_resource_id(*args: Any) -> str:
    values = _strings(args)
    _type_position(values, 0, "scope")
    return f"/providers/{resource_path(values[0], values[1:])}"


@register("managementGroupResourceId", min_args=2)
def _management_group_resource_id(*args: Any) -> str:
    values = _strings(args)
    position = _type_position(values, 1, "management group")
    if position == 0:
        raise ArgumentError(
            "the management group name is required outside a management group deployment."
        )
    path = resource_path(values[1], values[2:])
    return f"/providers/Microsoft.Management/managementGroups/{values[0]}/providers/{path}"


@register("extensionResourceId", min_args=3)
def _extension_resource_id(base: Any, *args: Any) -> str:
    scope, values = expect_str(base, 1), _strings(args)
    multi = [v for v in values if "/" in v]
    if not scope.startswith("/") or len(multi) != 1 or "/" not in values[0]:
        raise ArgumentError(
            "function requires exactly two multi-segmented arguments. The first must be the "
            "parent resource id while the second must be resource type including resource "
            f"provider namespace. Current function arguments '{','.join([scope, *values])}'."
        )
    return f"{scope.rstrip('/')}/providers/{resource_path(values[0], values[1:])}"


@register("reference", kind=Kind.ENV)
def _reference(env: Env, name_or_id: Any, api_version: Any = None, full: Any = None) -> Any:
    target = expect_str(name_or_id, 1)
    version = None if api_version is None else expect_str(api_version, 2)
    if full is not None and expect_str(full, 3).lower() not in ("full", "properties"):
        raise ArgumentError("argument 3 must be 'Full' (or 'Properties').")
    return env.ctx.reference(target, version, isinstance(full, str) and full.lower() == "full")


def _list(env: Env, resource_id: Any, api_version: Any, function_values: Any = None) -> Any:
    """Every ``list*`` function (listKeys, listSecrets, ...): resolved by the context."""
    return env.ctx.list_keys(expect_str(resource_id, 1), expect_str(api_version, 2))


LIST_FUNCTION = Function("list", _list, 2, 3, Kind.ENV)


# What providers() reports as a namespace's API version (lbsim does not depend on it; a
# template that picks apiVersions[0] gets a real one).
_API_VERSIONS = {
    "microsoft.network": "2024-05-01",
    "microsoft.compute": "2024-07-01",
    "microsoft.storage": "2023-05-01",
    "microsoft.resources": "2022-09-01",
    "microsoft.keyvault": "2023-07-01",
}
_DEFAULT_API_VERSION = "2022-09-01"


@register("providers", kind=Kind.ENV)
def _providers(env: Env, namespace: Any, resource_type: Any = None) -> dict[str, Any]:
    space = expect_str(namespace, 1)
    version = _API_VERSIONS.get(space.lower(), _DEFAULT_API_VERSION)
    env.ctx.warn(
        "DeprecatedFunction",
        f"providers('{space}') is deprecated; lbsim answers with one API version ({version}) "
        "and the deployment's location.",
    )
    location = env.ctx.deployment.location
    entry = {"locations": [location], "apiVersions": [version]}
    if resource_type is None:
        return {"namespace": space, "resourceTypes": [], "registrationState": "Registered"}
    return {"resourceType": expect_str(resource_type, 2), **entry}


# Regions with availability zones (programmatic names), from Azure's published regions list.
ZONAL_REGIONS = frozenset(
    {
        "australiaeast", "austriaeast", "belgiumcentral", "brazilsouth", "canadacentral",
        "centralindia", "centralus", "chilecentral", "chinanorth3", "eastasia", "eastus",
        "eastus2", "francecentral", "germanywestcentral", "indonesiacentral", "israelcentral",
        "italynorth", "japaneast", "japanwest", "koreacentral", "malaysiawest", "mexicocentral",
        "newzealandnorth", "northeurope", "norwayeast", "polandcentral", "qatarcentral",
        "southafricanorth", "southcentralus", "southeastasia", "spaincentral", "swedencentral",
        "switzerlandnorth", "uaenorth", "uksouth", "usgovvirginia", "westeurope", "westus2",
        "westus3",
    }
)  # fmt: skip


@register("pickZones")
def _pick_zones(
    namespace: Any, resource_type: Any, location: Any, count: Any = 1, offset: Any = 0
) -> list[str]:
    """Zones 1, 2 and 3 in a region with availability zones (every resource type is taken
    as zonal), none elsewhere: Azure returns an empty array there."""
    for position, value in enumerate((namespace, resource_type, location), start=1):
        expect_str(value, position)
    wanted, start = expect_int(count, 4), expect_int(offset, 5)
    if location.replace(" ", "").lower() not in ZONAL_REGIONS:
        return []
    if wanted < 0 or start < 0 or start + wanted > len(ZONES):
        raise ArgumentError(
            f"the offset ({start}) plus the number of zones ({wanted}) must not exceed "
            f"the {len(ZONES)} supported zones."
        )
    return list(ZONES[start : start + wanted])


FUNCTIONS = register.table
