"""Hostile settings end in a clear error that names the setting, never a traceback: digits of
other scripts, numbers too long for int(), TOML nested past the parser's recursion, NUL
characters, host names the resolver cannot take, files that are not regular files, and values
that are accepted by type but cannot work (no UDP flow, every flow idle at once, a source map
between address families)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lbsim.api.config import UpConfig, resolve
from lbsim.api.configfile import CONFIG_FILE_LIMIT, KEY_PARTS_LIMIT
from lbsim.cli import build_parser
from lbsim.errors import ConfigError


def up(
    tmp_path: Path, *flags: str, env: dict[str, str] | None = None, toml: str | None = None
) -> UpConfig:
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
    assert caught.value.at is None  # a setting is not in a template: no pointer
    return caught.value


# --- digits of other scripts ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("flags", "env", "toml", "named"),
    [
        (["--api-port", "\u00b2"], {}, None, "--api-port"),  # superscript two: int() fails
        (["--api-port", "\u0669\u0661\u0665\u0660"], {}, None, "--api-port"),  # int() takes it
        ([], {"LBSIM_METRICS_PORT": "\u0669\u0661\u0665\u0660"}, None, "LBSIM_METRICS_PORT"),
        ([], {}, 'drain_seconds = "\u0663"', "config key drain_seconds"),
        (["--max-udp-flows", "\uff17"], {}, None, "--max-udp-flows"),  # fullwidth seven
        (["--overprovision-seed", "1" * 5000], {}, None, "--overprovision-seed"),
        (["--deny-hold-seconds", "1_0"], {}, None, "--deny-hold-seconds"),
    ],
)
def test_numbers_take_ascii_digits_only(
    tmp_path: Path, flags: list[str], env: dict[str, str], toml: str | None, named: str
) -> None:
    error = error_of(tmp_path, *flags, env=env, toml=toml)
    assert error.code == "InvalidSetting"
    assert error.message.startswith(named)
    assert "ASCII digits" in error.message
    assert len(error.message) < 200  # a 5,000-digit value is quoted cut short


def test_ascii_numbers_still_parse(tmp_path: Path) -> None:
    config = up(tmp_path, "--api-port", " 9151 ", "--drain-seconds", "2.5e0")
    assert (config.values["api_port"], config.values["drain_seconds"]) == (9151, 2.5)


@pytest.mark.parametrize(
    ("pattern", "code", "says"),
    [
        ("127.0.0.1:{\u0663+instance}", "InvalidBackendPattern", "an integer, not '\u0663'"),
        ("127.0.0.1:{\u00b2+instance}", "InvalidBackendPattern", "an integer, not '\u00b2'"),
        ("127.0.0.1:{" + "1" * 5000 + "+instance}", "InvalidBackendPattern", "over 65535"),
        ("127.0.0.1:{70000+instance}", "InvalidBackendPattern", "over 65535"),
        ("127.0.0.1:\u0662\u0662", "InvalidAddress", "has no valid port"),
        ("127.0.0.1:\u00b2\u00b2", "InvalidAddress", "has no valid port"),
    ],
)
def test_backend_patterns_take_ascii_digits_only(
    tmp_path: Path, pattern: str, code: str, says: str
) -> None:
    error = error_of(tmp_path, "--backend", f"web={pattern}")
    assert error.code == code
    assert error.message.startswith("backends.web: ")
    assert says in error.message
    assert len(error.message) < 300


def test_an_instance_id_in_other_digits_is_refused(tmp_path: Path) -> None:
    toml = '[backends.web.instances]\n"\u0663" = "127.0.0.1:22"\n'
    error = error_of(tmp_path, toml=toml)
    assert error.code == "InvalidSetting"
    assert error.message.startswith("backends.web.instances: '\u0663'")


# --- the config file ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "x = " + "[" * 100_000 + "]" * 100_000,
        "x = " + "{a = " * 100_000 + "1" + "}" * 100_000,
    ],
)
def test_toml_nested_100000_deep_is_invalid_config_file(tmp_path: Path, text: str) -> None:
    error = error_of(tmp_path, toml=text)
    assert error.code == "InvalidConfigFile"
    assert error.message.startswith(str(tmp_path / "lbsim.toml") + ": ")


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "key",
    [
        "frontends." + ".".join(["a"] * 100_000),
        "[" + ".".join(["1"] * 100_000) + "]\nx",
        "x = { " + ".".join(['"a"'] * 100_000) + " = 1 }\n#",
        "x = { b = 1, " + " . ".join(["a"] * 100_000) + " = 1 }\n#",
    ],
)
def test_a_dotted_key_of_100000_parts_is_refused_before_parsing(tmp_path: Path, key: str) -> None:
    """tomllib spends memory by the square of a dotted key's parts (a gigabyte at 16,000)."""
    error = error_of(tmp_path, toml=key + ' = "127.0.0.1"\n')
    assert error.code == "InvalidConfigFile"
    assert error.message.endswith(f": line 1: a key of over {KEY_PARTS_LIMIT} dotted parts.")


def test_dots_in_values_and_comments_are_not_key_parts(tmp_path: Path) -> None:
    many = ".".join(["1"] * 40)
    toml = f'ready_file = "{many}" # {many}\n[frontends]\nfe = "127.0.0.1" # {many}\n'
    assert up(tmp_path, toml=toml).values["ready_file"] == many


def test_a_map_entry_given_a_table_is_refused_by_name(tmp_path: Path) -> None:
    error = error_of(tmp_path, toml='[frontends.a]\nb = "127.0.0.1"\n')
    assert error.code == "InvalidSetting"
    assert "config key frontends.a is one value, not a table" in error.message


def test_a_setting_given_a_table_is_refused_by_name(tmp_path: Path) -> None:
    error = error_of(tmp_path, toml="[ready_file]\nx = 1\n")
    assert error.code == "InvalidSetting"
    assert "config key ready_file is one value, not a table" in error.message


@pytest.mark.timeout(10)
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null"])
def test_config_names_a_device_is_invalid_config_file(tmp_path: Path, device: str) -> None:
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    with pytest.raises(ConfigError) as caught:
        resolve(build_parser().parse_args(["up", "t.json", "--config", device]), {})
    assert caught.value.code == "InvalidConfigFile"
    assert caught.value.message == f"{device}: --config names a regular file."


@pytest.mark.timeout(10)
def test_config_names_a_fifo_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "settings.fifo"
    os.mkfifo(fifo)  # nobody writes: a blocking open would wait for ever
    with pytest.raises(ConfigError) as caught:
        resolve(build_parser().parse_args(["up", "t.json", "--config", str(fifo)]), {})
    assert caught.value.code == "InvalidConfigFile"
    assert caught.value.message.startswith(f"{fifo}: ")


def test_config_file_over_the_size_limit(tmp_path: Path) -> None:
    error = error_of(tmp_path, toml="#" * CONFIG_FILE_LIMIT + "\n")
    assert error.code == "InvalidConfigFile"
    assert f"over {CONFIG_FILE_LIMIT} bytes" in error.message


def test_config_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "lbsim.toml"
    path.write_bytes(b'ready_file = "\xff"\n')
    with pytest.raises(ConfigError) as caught:
        resolve(build_parser().parse_args(["up", "t.json", "--config", str(path)]), {})
    assert caught.value.code == "InvalidConfigFile"
    assert caught.value.message.startswith(f"{path}: not UTF-8")


# --- NUL, names the resolver cannot take ----------------------------------------------------
@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('ready_file = "ready\\u0000.json"', "config key ready_file"),
        ('flow_log_dir = "logs\\u0000"', "config key flow_log_dir"),
        ('[frontends]\nfe = "127.0.0.1\\u0000"', "config key frontends.fe"),
        ('[links]\n"https://x/" = "a\\u0000"', "config key links.https://x/"),
        ('[backends.web.instances]\n0 = "127.0.0.1:22\\u0000"', "config key backends.web"),
    ],
)
def test_a_nul_in_the_file_is_refused_by_name(tmp_path: Path, toml: str, named: str) -> None:
    error = error_of(tmp_path, toml=toml)
    assert error.code == "InvalidSetting"
    assert named in error.message
    assert "NUL" in error.message


def test_a_nul_in_ready_file_from_python(tmp_path: Path) -> None:
    """The library hands settings over as values, not argv (which cannot hold a NUL)."""
    args = build_parser().parse_args(["up", "t.json"])
    args.ready_file = "ready\0.json"
    with pytest.raises(ConfigError) as caught:
        resolve(args, {})
    assert caught.value.code == "InvalidSetting"
    assert caught.value.message.startswith("--ready-file: ")


@pytest.mark.parametrize(
    ("flags", "env", "named"),
    [
        (["--api-address", "a" * 64], {}, "--api-address"),
        (["--metrics-address", "x." + "b" * 64 + ".example"], {}, "--api-address"),
        ([], {"LBSIM_METRICS_ADDRESS": "\u0661\u0662\u0667.0.0.1"}, "LBSIM_METRICS_ADDRESS"),
        (["--api-address", "a" * 300], {}, "--api-address"),
        (["--api-address=-bad-"], {}, "--api-address"),
    ],
)
def test_an_address_the_resolver_cannot_take(
    tmp_path: Path, flags: list[str], env: dict[str, str], named: str
) -> None:
    error = error_of(tmp_path, *flags, env=env)
    assert error.code == "InvalidSetting"
    assert error.message.startswith(named)
    assert "not an IP address or a host name" in error.message


def test_a_frontend_address_the_resolver_cannot_take(tmp_path: Path) -> None:
    error = error_of(tmp_path, "--frontend", "public=" + "a" * 64)
    assert error.code == "InvalidSetting"
    assert error.message.startswith("frontends: public = ")


def test_host_names_and_addresses_still_pass(tmp_path: Path) -> None:
    config = up(tmp_path, "--api-address", "localhost", "--frontend", "fe=[::1]")
    assert config.values["api_address"] == "localhost"
    assert up(tmp_path, "--api-address", "::1").values["api_address"] == "::1"


# --- accepted by type, cannot work ------------------------------------------------------------
def test_max_udp_flows_0_is_refused(tmp_path: Path) -> None:
    error = error_of(tmp_path, "--max-udp-flows", "0")
    assert error.code == "InvalidSetting"
    assert error.message.startswith("--max-udp-flows: '0': must be greater than 0")
    assert up(tmp_path, "--max-udp-flows", "1").runtime.max_udp_flows == 1


@pytest.mark.parametrize("value", ["0", "0.0", "-1"])
def test_idle_timeout_scale_0_is_refused(tmp_path: Path, value: str) -> None:
    error = error_of(tmp_path, env={"LBSIM_IDLE_TIMEOUT_SCALE": value})
    assert error.code == "InvalidSetting"
    assert error.message.startswith(f"LBSIM_IDLE_TIMEOUT_SCALE: '{value}': must be greater")
    assert "idle out at once" in error.message


@pytest.mark.parametrize("value", ["inf", "1e999", "nan"])
def test_a_number_is_finite(tmp_path: Path, value: str) -> None:
    error = error_of(tmp_path, "--drain-seconds", value)
    assert error.code == "InvalidSetting"
    assert error.message.startswith("--drain-seconds: ")


@pytest.mark.parametrize(
    "pair", ["127.0.0.1=2001:db8::7", "::1=203.0.113.7", "127.0.0.0/8=2001:db8::/64"]
)
def test_a_source_map_between_families_is_refused(tmp_path: Path, pair: str) -> None:
    error = error_of(tmp_path, "--source", pair)
    assert error.code == "InvalidSourceMap"
    assert error.message.startswith("sources: ")
    assert "map IPv4 to IPv4 and IPv6 to IPv6" in error.message


# --- through the command line: one line, no traceback ----------------------------------------
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--config", "/dev/zero"], "lbsim: InvalidConfigFile: /dev/zero: --config names"),
        (["--max-udp-flows", "0"], "lbsim: InvalidSetting: --max-udp-flows: '0'"),
        (["--api-port", "\u00b2"], "lbsim: InvalidSetting: --api-port/--metrics-port: '\u00b2'"),
        (["--metrics-address", "a" * 64], "lbsim: InvalidSetting: --api-address/"),
    ],
)
def test_lbsim_up_prints_one_clear_line(tmp_path: Path, argv: list[str], says: str) -> None:
    template = tmp_path / "t.json"
    template.write_text('{"resources": []}', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "lbsim", "up", str(template), *argv],
        capture_output=True,
        text=True,
        timeout=50,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(says), done.stderr


def test_resolve_takes_a_bare_namespace(tmp_path: Path) -> None:
    """What the library builds: a namespace with only the settings it was given."""
    args = argparse.Namespace(config=None, frontends=[], sources=[], backends=[], links=[])
    args.max_udp_flows = 0
    with pytest.raises(ConfigError) as caught:
        resolve(args, {})
    assert caught.value.code == "InvalidSetting"
