"""``lbsim up`` settings: flag > LBSIM_* environment > config file > default, the maps, and
clear errors for unknown keys, bad values and bad files; BackendPattern and SourceMap."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lbsim.api.config import SETTINGS, UpConfig, check_api_binding, resolve
from lbsim.cli import build_parser
from lbsim.dataplane.portmap import PortMap, PortMapKind
from lbsim.dataplane.settings import (
    DEFAULT_TCP_ENGINE,
    BackendPattern,
    DenyMode,
    SourceMap,
    SshAuth,
    TcpEngine,
    split_address,
)
from lbsim.errors import ConfigError


def up(
    tmp_path: Path,
    *flags: str,
    env: dict[str, str] | None = None,
    toml: str | None = None,
) -> UpConfig:
    """The settings of ``lbsim up t.json FLAGS`` with ``env`` and, if given, a config file."""
    argv = ["up", "t.json", *flags]
    if toml is not None:
        path = tmp_path / "lbsim.toml"
        path.write_text(toml, encoding="utf-8")
        argv += ["--config", str(path)]
    return resolve(build_parser().parse_args(argv), env or {})


def error_of(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None, toml: str | None = None
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        up(tmp_path, *flags, env=env, toml=toml)
    assert caught.value.at is None  # settings are not in a template
    return caught.value


# --- precedence -----------------------------------------------------------------------------
def test_defaults(tmp_path: Path) -> None:
    config = up(tmp_path)
    defaults = {s.key: s.default for s in SETTINGS}
    aliases = {alias: s.default for s in SETTINGS for alias in s.aliases}
    assert dict(config.values) == defaults | aliases
    assert config.values["api_port"] == config.values["metrics_port"] == 9150
    assert config.values["api_address"] == "127.0.0.1"
    assert config.values["api_token"] is None
    assert config.frontends == {}
    runtime = config.runtime
    assert (runtime.deny_mode, runtime.deny_hold_s, runtime.drain_timeout_s) == (
        DenyMode.RESET,
        30.0,
        10.0,
    )
    assert (runtime.idle_timeout_scale, runtime.connect_timeout_s, runtime.max_udp_flows) == (
        1.0,
        5.0,
        4096,
    )
    assert runtime.backends == {}
    assert runtime.sources == SourceMap()


@pytest.mark.parametrize(
    ("layers", "expected"),
    [
        ({"flag", "env", "file"}, 1.0),
        ({"env", "file"}, 2.0),
        ({"flag", "file"}, 1.0),
        ({"file"}, 3.0),
        (set(), 10.0),
    ],
)
def test_a_scalar_comes_from_the_highest_layer_that_sets_it(
    tmp_path: Path, layers: set[str], expected: float
) -> None:
    flags = ["--drain-seconds", "1"] if "flag" in layers else []
    env = {"LBSIM_DRAIN_SECONDS": "2"} if "env" in layers else {}
    toml = "drain_seconds = 3\n" if "file" in layers else None
    config = up(tmp_path, *flags, env=env, toml=toml)
    assert config.values["drain_seconds"] == expected
    assert config.runtime.drain_timeout_s == expected


def test_every_setting_reads_its_flag_env_and_file_key(tmp_path: Path) -> None:
    keys = tmp_path / "authorized_keys"
    keys.write_text("# mine\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA me@host\n")
    chosen = {
        "api_port": ("0", 0),
        "api_address": ("::1", "::1"),
        "api_token": ("s3cret", "s3cret"),
        "deny_mode": ("DROP", "drop"),
        "deny_hold_seconds": ("1.5", 1.5),
        "idle_hold_seconds": ("2.5", 2.5),
        "idle_timeout_scale": ("0.01", 0.01),
        "drain_seconds": ("0", 0.0),
        "connect_timeout_seconds": ("2", 2.0),
        "max_udp_flows": ("7", 7),
        "tcp_engine": ("streams", "streams"),
        "log_format": ("json", "json"),
        "log_flows": ("off", False),
        "ready_file": ("/tmp/ready.json", "/tmp/ready.json"),
        "flow_log_dir": ("/tmp/flowlogs", "/tmp/flowlogs"),
        "flow_log_interval_seconds": ("5", 5.0),
        "overprovision": ("on", True),
        "overprovision_seed": ("7", 7),
        "watch": ("yes", True),
        "port_map": ("offset:7", PortMap(PortMapKind.OFFSET, 7)),
        "ssh_ports": ("22,2222", frozenset({22, 2222})),
        "ssh_auth": ("PublicKey", "publickey"),
        "ssh_password": ("hunter2", "hunter2"),
        "ssh_authorized_keys": (str(keys), str(keys)),
        "host_key_dir": ("/tmp/keys", "/tmp/keys"),
        "socks": ("127.0.0.2:1080", ("127.0.0.2", 1080)),
        "socks_source": ("10.0.0.250", "10.0.0.250"),
    }
    assert set(chosen) == {s.key for s in SETTINGS}
    for setting in SETTINGS:
        raw, parsed = chosen[setting.key]
        assert up(tmp_path, setting.flag, raw).values[setting.key] == parsed
        assert up(tmp_path, env={setting.env: raw}).values[setting.key] == parsed
        toml = f"{setting.key} = {raw!r}\n".replace("'", '"')
        assert up(tmp_path, toml=toml).values[setting.key] == parsed


@pytest.mark.parametrize(
    ("flags", "env", "toml"),
    [
        (["--metrics-port", "9151"], {}, None),
        ([], {"LBSIM_METRICS_PORT": "9151"}, None),
        ([], {}, "metrics_port = 9151\n"),
        (["--api-port", "9151"], {"LBSIM_METRICS_PORT": "1"}, None),  # flag over env
    ],
)
def test_metrics_port_is_an_alias_of_api_port(
    tmp_path: Path, flags: list[str], env: dict[str, str], toml: str | None
) -> None:
    values = up(tmp_path, *flags, env=env, toml=toml).values
    assert values["api_port"] == values["metrics_port"] == 9151


def test_metrics_address_is_an_alias_of_api_address(tmp_path: Path) -> None:
    values = up(tmp_path, "--metrics-address", "127.0.0.9").values
    assert values["api_address"] == values["metrics_address"] == "127.0.0.9"
    assert up(tmp_path, env={"LBSIM_METRICS_ADDRESS": "::1"}).values["api_address"] == "::1"


@pytest.mark.parametrize("raw", ["off", "OFF", "Off"])
def test_api_port_off_serves_nothing_and_0_picks_a_free_port(tmp_path: Path, raw: str) -> None:
    assert up(tmp_path, "--api-port", raw).values["api_port"] is None
    assert up(tmp_path, "--metrics-port", "0").values["api_port"] == 0  # no longer "off"


@pytest.mark.parametrize("address", ["127.0.0.1", "127.3.2.1", "::1", "localhost", "LOCALHOST"])
def test_loopback_api_needs_no_token(address: str) -> None:
    check_api_binding(address, None)


@pytest.mark.parametrize("address", ["0.0.0.0", "::", "192.0.2.10", "2001:db8::1", "api.example"])
def test_an_api_off_loopback_requires_a_token(tmp_path: Path, address: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_api_binding(address, None)
    assert caught.value.code == "ApiTokenRequired"
    assert address in caught.value.message
    check_api_binding(address, "s3cret")  # with a token it may listen anywhere
    error = error_of(tmp_path, "--api-address", address)
    assert error.code == "ApiTokenRequired"
    config = up(tmp_path, "--api-address", address, env={"LBSIM_API_TOKEN": "s3cret"})
    assert config.values["api_token"] == "s3cret"
    assert up(tmp_path, "--api-address", address, "--api-port", "off").values["api_port"] is None


def test_the_tcp_engine_reaches_the_runtime(tmp_path: Path) -> None:
    assert up(tmp_path).runtime.tcp_engine is DEFAULT_TCP_ENGINE
    assert up(tmp_path, "--tcp-engine", "streams").runtime.tcp_engine is TcpEngine.STREAMS
    assert up(tmp_path, env={"LBSIM_TCP_ENGINE": "reactor"}).runtime.tcp_engine is TcpEngine.REACTOR


def test_maps_merge_key_by_key_flag_over_env_over_file(tmp_path: Path) -> None:
    toml = """
[frontends]
"lb/fe" = "127.0.0.5"
"lb/other" = "127.0.0.6"
[sources]
"127.0.0.0/8" = "203.0.113.0/24"
"127.0.0.66" = "198.51.100.1"
"""
    env = {
        "LBSIM_FRONTENDS": "lb/fe=127.0.0.7, lb/third=127.0.0.8",
        "LBSIM_SOURCES": "127.0.0.66=198.51.100.2,127.0.0.67=198.51.100.3",
    }
    config = up(
        tmp_path,
        "--frontend",
        "lb/fe=127.0.0.9",
        "--source",
        "127.0.0.67=198.51.100.4",
        env=env,
        toml=toml,
    )
    assert config.frontends == {
        "lb/fe": "127.0.0.9",
        "lb/other": "127.0.0.6",
        "lb/third": "127.0.0.8",
    }
    present = config.runtime.sources.present
    assert present("127.0.0.66") == "198.51.100.2"  # env over file
    assert present("127.0.0.67") == "198.51.100.4"  # flag over env
    assert present("127.0.5.9") == "203.0.113.9"  # the file's prefix rule stays


def test_backends_merge_flag_over_env_over_file(tmp_path: Path) -> None:
    toml = """
[backends.Web]
pattern = "127.0.0.1:{2200+instance}"
[backends.Web.instances]
1 = "127.0.0.2:2222"
[backends.db]
pattern = "127.0.0.1:{3300+instance}"
[backends.cache]
instances = { 0 = "[::1]:6379" }
"""
    env = {"LBSIM_BACKENDS": "db=127.0.0.1:{4400+instance},api=127.0.0.1:{port+1000}"}
    config = up(tmp_path, "--backend", "api=127.0.0.1:{port+2000}", env=env, toml=toml)
    backends = config.runtime.backends
    assert set(backends) == {"web", "db", "cache", "api"}  # names are matched lower-cased
    assert backends["web"].address(0, 22) == ("127.0.0.1", 2200)
    assert backends["web"].address(1, 22) == ("127.0.0.2", 2222)  # explicit wins
    assert backends["db"].address(2, 5432) == ("127.0.0.1", 4402)  # env over file
    assert backends["api"].address(0, 80) == ("127.0.0.1", 2080)  # flag over env
    assert backends["cache"].address(0, 6379) == ("::1", 6379)
    assert backends["cache"].address(1, 6379) is None  # not mapped: built in


# --- errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("toml", "hint"),
    [
        ("metrics_prot = 1\n", "unknown key 'metrics_prot'; did you mean 'metrics_port'?"),
        ("api_prot = 1\n", "unknown key 'api_prot'; did you mean 'api_port'?"),
        ("[source]\n", "unknown key 'source'; did you mean 'sources'?"),
        (
            '[backends.web]\npatern = "127.0.0.1:22"\n',
            "backends.web: unknown key 'patern'; did you mean 'pattern'?",
        ),
        ("zzz = 1\n", "unknown key 'zzz'; known keys: api_port, metrics_port, api_address, "),
    ],
)
def test_unknown_keys_name_the_nearest_valid_one(tmp_path: Path, toml: str, hint: str) -> None:
    error = error_of(tmp_path, toml=toml)
    assert error.code == "UnknownConfigKey"
    assert hint in error.message


@pytest.mark.parametrize(
    ("flags", "env", "toml", "origin"),
    [
        (["--metrics-port", "70000"], {}, None, "--api-port/--metrics-port: '70000'"),
        ([], {"LBSIM_API_PORT": "of"}, None, "LBSIM_API_PORT: 'of'"),
        ([], {"LBSIM_METRICS_PORT": "-1"}, None, "LBSIM_METRICS_PORT: '-1': not a port number"),
        (["--max-udp-flows", "many"], {}, None, "--max-udp-flows: 'many'"),
        ([], {"LBSIM_DENY_MODE": "maybe"}, None, "LBSIM_DENY_MODE: 'maybe': choose one of"),
        ([], {"LBSIM_LOG_FORMAT": "xml"}, None, "LBSIM_LOG_FORMAT: 'xml'"),
        ([], {}, "drain_seconds = -1\n", "config key drain_seconds: -1: must not be negative"),
        ([], {}, "metrics_port = 9150.5\n", "config key metrics_port: 9150.5"),
        (
            [],
            {"LBSIM_API_PORT": "1", "LBSIM_METRICS_PORT": "2"},
            None,
            "LBSIM_API_PORT and LBSIM_METRICS_PORT set the same setting; keep one.",
        ),
        (
            [],
            {},
            'api_address = "::1"\nmetrics_address = "::1"\n',
            "config key api_address and config key metrics_address set the same setting",
        ),
        (["--deny-hold-seconds", "nan"], {}, None, "--deny-hold-seconds: 'nan'"),
        ([], {}, 'idle_timeout_scale = "nan"\n', "config key idle_timeout_scale: 'nan'"),
        (["--log-flows", "ture"], {}, None, "--log-flows: 'ture'"),
    ],
)
def test_bad_values_are_invalid_settings_naming_their_origin(
    tmp_path: Path, flags: list[str], env: dict[str, str], toml: str | None, origin: str
) -> None:
    error = error_of(tmp_path, *flags, env=env, toml=toml)
    assert error.code == "InvalidSetting"
    assert origin in error.message


@pytest.mark.parametrize(
    ("flags", "env", "message"),
    [
        (["--frontend", "lb/fe"], {}, "--frontend takes KEY=VALUE, got 'lb/fe'."),
        (["--source", "=203.0.113.1"], {}, "--source takes KEY=VALUE"),
        ([], {"LBSIM_BACKENDS": "web="}, "LBSIM_BACKENDS takes KEY=VALUE, got 'web='."),
    ],
)
def test_map_entries_need_a_key_and_a_value(
    tmp_path: Path, flags: list[str], env: dict[str, str], message: str
) -> None:
    error = error_of(tmp_path, *flags, env=env)
    assert error.code == "InvalidSetting"
    assert message in error.message


def test_malformed_toml_is_a_clear_error(tmp_path: Path) -> None:
    error = error_of(tmp_path, toml="metrics_port = \n")
    assert error.code == "InvalidConfigFile"
    assert error.message.startswith(str(tmp_path / "lbsim.toml") + ": ")
    assert "line 1" in error.message


def test_a_config_file_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'metrics_address = "caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        resolve(build_parser().parse_args(["up", "t.json", "--config", str(path)]), {})
    assert caught.value.code == "InvalidConfigFile"
    assert str(path) in caught.value.message


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as caught:
        resolve(build_parser().parse_args(["up", "t.json", "--config", str(missing)]), {})
    assert caught.value.code == "ConfigFileNotFound"
    assert caught.value.message == f"cannot read {missing}: No such file or directory"


@pytest.mark.parametrize(
    ("toml", "code", "message"),
    [
        ('frontends = "127.0.0.2"\n', "InvalidConfigFile", "[frontends] is a table."),
        ('backends = ["x"]\n', "InvalidConfigFile", "[backends] is a table."),
        ('[backends]\nweb = "127.0.0.1:{2200+instance}"\n', "InvalidConfigFile", "backends.web"),
        ("[backends.web]\n", "InvalidSetting", "backends.web needs a pattern or instances."),
        (
            '[backends.web]\npattern = "127.0.0.1:{2200*instance}"\n',
            "InvalidBackendPattern",
            "'{2200*instance}': a term is 'instance', 'port' or an integer, not '2200*instance'.",
        ),
        (
            '[backends.web]\ninstances = { 1 = "localhost:22" }\n',
            "InvalidAddress",
            "'localhost:22' is not IP:PORT.",
        ),
        (
            '[backends.web]\ninstances = { web_1 = "127.0.0.1:22" }\n',
            "InvalidSetting",
            "backends.web.instances: 'web_1' is not an instance id",
        ),
        ('[backends.web]\ninstances = ["127.0.0.1:22"]\n', "InvalidConfigFile", "backends.web"),
        (
            '[backends.web]\npattern = "127.0.0.1:{2200+instance}"\ninstances = { 0 = "x" }\n',
            "InvalidAddress",
            "'x' is not IP:PORT.",
        ),
        ('[sources]\n"127.0.0.1" = "somewhere"\n', "InvalidSourceMap", "sources: 127.0.0.1"),
    ],
)
def test_bad_tables_are_clear_errors(tmp_path: Path, toml: str, code: str, message: str) -> None:
    error = error_of(tmp_path, toml=toml)
    assert (error.code, message in error.message) == (code, True), error.message


# --- BackendPattern ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("pattern", "instance", "port", "expected"),
    [
        ("127.0.0.1:{2200+instance}", 3, 22, ("127.0.0.1", 2203)),
        ("127.0.0.1:{port+1000}", 0, 80, ("127.0.0.1", 1080)),
        ("127.0.0.1:{ instance + port + 1 }", 2, 8080, ("127.0.0.1", 8083)),
        ("127.0.{instance}.1:22", 7, 22, ("127.0.7.1", 22)),
        ("[::1]:{5000+instance}", 4, 22, ("::1", 5004)),
        ("127.0.0.1:2222", 9, 22, ("127.0.0.1", 2222)),
    ],
)
def test_backend_patterns(
    pattern: str, instance: int, port: int, expected: tuple[str, int]
) -> None:
    assert BackendPattern(pattern).address(instance, port) == expected


def test_explicit_instances_win_over_the_pattern() -> None:
    backend = BackendPattern("127.0.0.1:{2200+instance}", {1: "127.0.0.9:9999"})
    assert backend.address(1, 22) == ("127.0.0.9", 9999)
    assert backend.address(2, 22) == ("127.0.0.1", 2202)
    assert BackendPattern(instances={1: "127.0.0.9:9999"}).address(2, 22) is None


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("127.0.0.1:{instance*2}", "InvalidBackendPattern"),
        ("127.0.0.1:{vm+1}", "InvalidBackendPattern"),
        ("localhost:{2200+instance}", "InvalidAddress"),
        ("127.0.0.1", "InvalidAddress"),
        ("127.0.0.1:{60000+instance}", "InvalidAddress"),  # instance 6000: past 65535
        ("127.0.0.1:0", "InvalidAddress"),
    ],
)
def test_bad_backend_patterns(text: str, code: str) -> None:
    with pytest.raises(ConfigError) as caught:
        BackendPattern(text).address(6000, 22)
    assert caught.value.code == code


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:22", ("127.0.0.1", 22)), ("[::1]:65535", ("::1", 65535))],
)
def test_split_address(text: str, expected: tuple[str, int]) -> None:
    assert split_address(text) == expected


# --- SourceMap --------------------------------------------------------------------------------
def test_source_map_keeps_the_host_part_and_prefers_the_most_specific_rule() -> None:
    sources = SourceMap.parse(
        {
            "127.0.0.0/8": "203.0.113.0/24",
            "127.0.0.66": "198.51.100.66",
            "127.0.2.0/24": "198.51.100.0/24",
            "::1": "2001:db8::7",
        }
    )
    assert sources.present("127.0.0.66") == "198.51.100.66"
    assert sources.present("127.0.2.9") == "198.51.100.9"
    assert sources.present("127.0.0.5") == "203.0.113.5"
    assert sources.present("127.9.9.5") == "203.0.113.5"  # wider than presented: wraps
    assert sources.present("::1") == "2001:db8::7"
    assert sources.present("10.1.2.3") == "10.1.2.3"  # unmapped: as itself
    assert SourceMap().present("127.0.0.1") == "127.0.0.1"


@pytest.mark.parametrize(
    ("local", "presented"),
    [("not-an-ip", "203.0.113.1"), ("127.0.0.1", "203.0.113.300"), ("127.0.0.1/33", "::1")],
)
def test_bad_source_maps(local: str, presented: str) -> None:
    with pytest.raises(ConfigError) as caught:
        SourceMap.parse({local: presented})
    assert caught.value.code == "InvalidSourceMap"
    assert f"sources: {local} = {presented}: " in caught.value.message


@given(
    client=st.ip_addresses(v=4),
    local_prefix=st.integers(min_value=0, max_value=32),
    presented=st.ip_addresses(v=4),
    presented_prefix=st.integers(min_value=0, max_value=32),
)
def test_a_mapped_client_is_presented_inside_the_presented_prefix(
    client: ipaddress.IPv4Address,
    local_prefix: int,
    presented: ipaddress.IPv4Address,
    presented_prefix: int,
) -> None:
    local = ipaddress.ip_network(f"{client}/{local_prefix}", strict=False)
    target = ipaddress.ip_network(f"{presented}/{presented_prefix}", strict=False)
    shown = SourceMap.parse({str(local): str(target)}).present(str(client))
    assert ipaddress.ip_address(shown) in target
    offset = int(client) - int(local.network_address)
    assert int(ipaddress.ip_address(shown)) - int(target.network_address) == (
        offset % target.num_addresses
    )


def test_ssh_and_socks_settings_reach_the_runtime(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("\n# a comment\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA me\n\n")
    config = up(
        tmp_path,
        "--ssh-authorized-keys",
        str(keys),
        "--ssh-auth",
        "publickey",
        "--socks",
        "[::1]:1080",
        "--host-key-dir",
        str(tmp_path),
    )
    ssh = config.runtime.ssh
    assert ssh.authorized_keys == ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA me",)
    assert ssh.auth is SshAuth.PUBLICKEY
    assert not ssh.open  # only listed keys get in
    assert ssh.host_key_dir == str(tmp_path)
    assert config.runtime.socks == ("::1", 1080)
    defaults = up(tmp_path).runtime
    assert defaults.ssh.open
    assert defaults.ssh.ports == frozenset({22})
    assert defaults.socks is None


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--socks", "localhost"], "not ADDRESS:PORT"),
        (["--socks", "127.0.0.1:99999"], "not a port number"),
        (["--ssh-ports", "22,0"], "port 0 is not a backend port"),
        (["--socks-source", "vm1"], "not an IP address"),
        (["--ssh-authorized-keys", "/nonexistent/keys"], "cannot read"),
    ],
)
def test_bad_ssh_and_socks_settings_name_the_setting(
    tmp_path: Path, flags: list[str], says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        up(tmp_path, *flags)
    assert caught.value.code == "InvalidSetting"
    assert says in caught.value.message


def test_an_authorized_keys_file_without_keys_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError) as caught:
        up(tmp_path, "--ssh-authorized-keys", str(empty))
    assert "holds no key" in caught.value.message
