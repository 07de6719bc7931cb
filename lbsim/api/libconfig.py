"""The library's ``config`` (:func:`lbsim.serve`, :func:`lbsim.run_in_thread`, the pytest
plugin's ``lbsim_config``): a TOML file's path, or a mapping of the same keys as
``lbsim.toml``, made into the namespace :func:`lbsim.api.config.resolve` reads, as
``lbsim up``'s flags would be. Unlike ``lbsim up``, the library serves no control API and
logs no flows unless the config asks."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lbsim.api.config import SETTINGS
from lbsim.dataplane.faults import Fault
from lbsim.errors import ConfigError

__all__ = ["config_args"]

_PAIRS = ("frontends", "sources", "backends", "links")  # KEY=VALUE maps, as their flags
_SETTING_OF = {key: setting.key for setting in SETTINGS for key in setting.keys}
_LIBRARY_DEFAULTS = {"api_port": "off", "log_flows": "false"}


def config_args(config: str | Path | Mapping[str, Any] | None) -> argparse.Namespace:
    """The settings as the namespace :func:`lbsim.api.config.resolve` reads: every key of
    ``lbsim.toml``, an alias (``metrics_port``) as its setting, ``faults`` as the file's
    ``[[faults]]`` and ``links`` as its ``[links]`` (paths relative to the working folder)."""
    args = argparse.Namespace(config=None, faults=None, **{m: [] for m in _PAIRS})
    values: dict[str, Any] = dict(_LIBRARY_DEFAULTS)
    if isinstance(config, str | Path):
        args.config = str(config)
        values = {}  # the file says what it wants; defaults as lbsim up's
    elif config is not None:
        given: dict[str, str] = {}  # setting -> the key of config that set it
        for key, value in config.items():
            if key in _PAIRS:
                setattr(args, key, _pairs(key, value))
            elif key == "faults":
                args.faults = _fault_tables(value)
            elif key in _SETTING_OF:
                setting = _SETTING_OF[key]
                if setting in given:
                    raise ConfigError(
                        "InvalidSetting",
                        f"config: {given[setting]} and {key} set the same setting; keep one.",
                    )
                given[setting] = key
                values[setting] = value
            else:
                raise ConfigError("UnknownConfigKey", f"config: unknown key '{key}'")
    for key, value in values.items():
        setattr(args, key, str(value).lower() if isinstance(value, bool) else value)
    return args


def _pairs(key: str, value: Any) -> list[str]:
    """A map setting (``sources``, ``links``, ...) as the ``KEY=VALUE`` items its flag
    takes. A link's URL is matched without its query and fragment (a SAS token's ``=``)."""
    if not isinstance(value, Mapping):
        raise ConfigError(
            "InvalidSetting", f"config: {key} is a mapping, not {type(value).__name__}"
        )
    for name, item in value.items():
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise ConfigError(
                "InvalidSetting",
                f"config: {key}.{name} is {type(item).__name__}: a text value here (for the"
                " file's tables, such as [backends.NAME], give config as a TOML file's path)",
            )
    items = {str(k): str(v) for k, v in value.items()}
    if key == "links":
        items = {urlunsplit((*urlsplit(url)[:3], "", "")): path for url, path in items.items()}
    for name in items:
        if "=" in name:
            raise ConfigError("InvalidSetting", f"config: {key}: {name!r} holds '='")
    return [f"{k}={v}" for k, v in items.items()]


def _fault_tables(value: Any) -> Any:
    """``faults``: a list of faults, each its control API JSON or a :class:`Fault`
    (``resolve`` checks each, as it does the file's ``[[faults]]``)."""
    if not isinstance(value, list | tuple):
        return value  # refused by resolve, as a file's faults that are no array
    return [f.to_json() if isinstance(f, Fault) else f for f in value]
