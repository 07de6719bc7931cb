"""Hostile ``lbsim.toml`` text for fuzzing the settings reader ``lbsim up`` uses.

A settings file is written by hand, copied between projects and sometimes generated, so any
bytes may reach :func:`lbsim.api.config.resolve`: wrong types, huge numbers, NULs, unknown
keys, tables where values belong, deep nesting, long dotted keys, broken TOML and text that
is not UTF-8. Whatever they are, reading the file gives settings or a ``ConfigError``.
"""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

from lbsim.api.config import SETTINGS, UpConfig, resolve
from lbsim.cli import build_parser
from lbsim.errors import ConfigError

PARSER = build_parser()  # argparse builds the whole CLI in milliseconds: once

KEYS = sorted({key for setting in SETTINGS for key in setting.keys})
TABLES = [
    "sources",
    "frontends",
    "links",
    "backends.web",
    "backends.web.instances",
    "backends",
    "[faults]",
    "faults",
    "api_port",
    "sources.inner",
]
ENTRY_KEYS = [
    '"127.0.0.1"',
    '"::1"',
    "web",
    "0",
    "99999999999",
    "pattern",
    "instances",
    "type",
    "name",
    "stream",
    "toxicity",
    "target",
    "attributes",
    '"https://links.example/t/"',
    '"\\u0000"',
    '""',
]
LITERALS = [
    "9" * 5000,
    "-0",
    "0x7fffffffffffffff",
    "1e309",
    "nan",
    "-inf",
    "true",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "[]",
    "{}",
    "[1, [2, [3]]]",
    "{ a = 1, b = { c = [] } }",
    '"\\u0000"',
    '""',
    '"off"',
    '"127.0.0.1"',
    '"::1"',
    '"[::1]"',
    '"127.0.0.{i}"',
    '"10.0.0.{i}:8080"',
    '"per-worker:999999"',
    '"offset:-1"',
    '"ephemeral"',
    '"reactor"',
    '"reset"',
    '"latency"',
    '"/dev/zero"',
    '"../../../etc/passwd"',
    '"' + "x" * 300 + '"',
    "'''multi\nline'''",
]
# spliced into the text anywhere: broken syntax, and the shapes that cost parsers most
SPLICES = [
    "",
    "\x00",
    "\ufeff",
    "\r",
    "\\",
    '"""',
    "'''",
    "=",
    "[",
    "[[faults]]\n",
    "[sources]\n",
    "x = 1\nx = 2\n",
    "\nv = " + "[" * 3000 + "]" * 3000 + "\n",
    "\nv = " + "{ a = " * 2000 + "1" + " }" * 2000 + "\n",
    "\n" + ".".join(["a"] * 5000) + " = 1\n",
    "\nv = " + "9" * 5000 + "\n",
    "\nv = '" + "x" * 1_100_000 + "'\n",  # past the size cap
]

scalars = st.one_of(
    st.sampled_from(LITERALS),
    st.integers().map(str),
    st.floats().map(repr),  # TOML spells them as Python does: 1e+300, inf, nan
    st.text(max_size=20).map(lambda s: json.dumps(s, ensure_ascii=False)),
)


@st.composite
def config_texts(draw: st.DrawFn) -> bytes:
    """The bytes of one settings file: known and unknown keys with any values, the map
    tables and [[faults]] with any entries, then hostile text spliced in anywhere."""
    lines = [
        f"{key} = {draw(scalars)}"
        for key in draw(
            st.lists(st.sampled_from([*KEYS, "api_prot", "x"]), max_size=5, unique=True)
        )
    ]
    for table in draw(st.lists(st.sampled_from(TABLES), max_size=4, unique=True)):
        lines.append(f"[{table}]")
        count = draw(st.integers(0, 3))
        lines += [f"{draw(st.sampled_from(ENTRY_KEYS))} = {draw(scalars)}" for _ in range(count)]
    text = "\n".join(lines) + "\n"
    if draw(st.integers(0, 2)) == 0:
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(SPLICES)) + text[at:]
    # a lone surrogate (json.dumps writes one raw) makes bytes that are not UTF-8
    return text.encode("utf-8", "surrogatepass")


def read_config(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` and read it as ``lbsim up --config path`` does: the outcome
    is "valid" or the ``ConfigError``'s code; any other exception propagates."""
    path.write_bytes(data)
    args = PARSER.parse_args(["up", "azuredeploy.json", "--config", str(path)])
    try:
        config = resolve(args, environ={})
    except ConfigError as error:
        return error.code
    assert isinstance(config, UpConfig)
    return "valid"
