"""What ``reference()`` returns: a resource's properties plus the values Azure fills in at
deployment time, as the emulator will see them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lbsim.arm.context import Placeholder, RuntimeObject

if TYPE_CHECKING:
    from lbsim.arm.resources import ExpandedResource

# Types whose runtime state lbsim knows exactly: a missing property there is a template error.
EXACT = frozenset(
    {
        "microsoft.network/loadbalancers",
        "microsoft.network/networksecuritygroups",
        "microsoft.network/virtualnetworks",
        "microsoft.network/virtualnetworks/subnets",
        "microsoft.network/networkinterfaces",
        "microsoft.network/publicipaddresses",
        "microsoft.resources/deployments",
    }
)


def field(value: Any, key: str) -> Any:
    """``value[key]`` for an object, with ARM's case-insensitive property names (None if the
    object has no such key, or is no object)."""
    if not isinstance(value, dict):
        return None
    if key in value:
        return value[key]
    wanted = key.lower()
    return next((v for k, v in value.items() if isinstance(k, str) and k.lower() == wanted), None)


def runtime_properties(
    resource: ExpandedResource, public_ip: Callable[[ExpandedResource], str]
) -> dict[str, Any]:
    """The ``properties`` Azure would report for ``resource`` once deployed."""
    body = resource.evaluate_body()
    found = field(body, "properties")
    props: dict[str, Any] = copy.deepcopy(found) if isinstance(found, dict) else {}
    if resource.type_key not in EXACT:
        props = RuntimeObject(props)
    props.setdefault("provisioningState", "Succeeded")
    location = str(body.get("location") or resource.scope.deployment.location)
    filler = _FILLERS.get(resource.type_key)
    if filler is not None:
        filler(props, resource.name, location)
    if resource.type_key == "microsoft.network/publicipaddresses":
        _public_ip(props, public_ip(resource), location)
    return props


def _public_ip(props: dict[str, Any], address: str, location: str) -> None:
    props.setdefault("ipAddress", address)
    dns = field(props, "dnsSettings")
    label = field(dns, "domainNameLabel")
    if isinstance(dns, dict) and isinstance(label, str) and field(dns, "fqdn") is None:
        dns["fqdn"] = f"{label}.{location}.cloudapp.azure.com"


def _load_balancer(props: dict[str, Any], name: str, location: str) -> None:
    """Dynamic private frontend addresses are chosen by the plan, after loading: until then
    ``reference()`` shows a placeholder. A Dynamic frontend's own ``privateIPAddress`` is not
    the address it gets (the plan ignores it too), so it is replaced."""
    frontends = field(props, "frontendIPConfigurations")
    for frontend in frontends if isinstance(frontends, list) else []:
        inner = field(frontend, "properties")
        internal = isinstance(inner, dict) and field(inner, "subnet") is not None
        if internal and not _static_private(inner):
            for key in [k for k in inner if k.lower() == "privateipaddress"]:
                del inner[key]
            inner["privateIPAddress"] = Placeholder(
                f"<private IP of {name}/{field(frontend, 'name')}>"
            )


def _static_private(frontend: dict[str, Any]) -> bool:
    method = field(frontend, "privateIPAllocationMethod")
    static = isinstance(method, str) and method.lower() == "static"
    return static and bool(field(frontend, "privateIPAddress"))


def _storage(props: dict[str, Any], name: str, location: str) -> None:
    kinds = ("blob", "queue", "table", "file", "web", "dfs")
    endpoints = {k: f"https://{name}.{k}.core.windows.net/" for k in kinds}
    props.setdefault("primaryEndpoints", endpoints)
    props.setdefault("primaryLocation", location)
    props.setdefault("statusOfPrimary", "available")


def _key_vault(props: dict[str, Any], name: str, location: str) -> None:
    props.setdefault("vaultUri", f"https://{name}.vault.azure.net/")


def _sql_server(props: dict[str, Any], name: str, location: str) -> None:
    props.setdefault("fullyQualifiedDomainName", f"{name}.database.windows.net")


_FILLERS: dict[str, Callable[[dict[str, Any], str, str], None]] = {
    "microsoft.storage/storageaccounts": _storage,
    "microsoft.keyvault/vaults": _key_vault,
    "microsoft.sql/servers": _sql_server,
    "microsoft.network/loadbalancers": _load_balancer,
}


def full_object(resource: ExpandedResource, properties: dict[str, Any]) -> dict[str, Any]:
    """``reference(x, api, 'Full')``: the whole resource object."""
    body = resource.evaluate_body()
    full = {k: v for k, v in body.items() if k != "properties"}
    full["resourceId"] = resource.id
    full["properties"] = properties
    return full
