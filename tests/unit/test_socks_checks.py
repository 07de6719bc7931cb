"""``lbsim up`` warns when the SOCKS endpoint listens off loopback (it asks for no
credentials), as it does for the control API, and says exactly whom the built-in SSH
servers let in unchecked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from templates import vmss_behind_lb

from lbsim.api.config import resolve
from lbsim.api.session import Session
from lbsim.api.source import Source
from lbsim.cli import build_parser
from lbsim.cli.up import open_ssh
from lbsim.dataplane.events import discard
from lbsim.dataplane.settings import SshAuth, SshSettings


def _warnings(tmp_path: Path, *flags: str) -> dict[str, str]:
    template = tmp_path / "t.json"
    template.write_text(json.dumps(vmss_behind_lb(1)), encoding="utf-8")
    config = resolve(build_parser().parse_args(["up", str(template), *flags]), {})
    found = Session(Source.of(template), config, discard).warnings
    return {p.code: p.message for p in found if p.code == "SocksNotLoopback"}


def test_the_socks_endpoint_off_loopback_says_it_is_a_way_in(tmp_path: Path) -> None:
    message = _warnings(tmp_path, "--socks", "0.0.0.0:1080")["SocksNotLoopback"]
    assert message.startswith("the SOCKS endpoint on 0.0.0.0:1080 is reachable from other hosts")
    assert "an unauthenticated way into every instance" in message


@pytest.mark.parametrize("socks", ["127.0.0.1:1080", "1080", "off"])
def test_on_loopback_or_off_it_is_not(tmp_path: Path, socks: str) -> None:
    assert _warnings(tmp_path, "--socks", socks) == {}


KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7 user@host"
ANY = "built-in instances' SSH servers let any user in with "


@pytest.mark.parametrize(
    ("ssh", "said"),
    [
        (
            SshSettings(),
            ANY + "any password or any key (ssh_password and ssh_authorized_keys restrict them)",
        ),
        (SshSettings(password="pw"), ANY + "any key (ssh_authorized_keys restricts them)"),
        (SshSettings(authorized_keys=(KEY,)), ANY + "any password (ssh_password restricts them)"),
        (SshSettings(auth=SshAuth.PUBLICKEY), ANY + "any key (ssh_authorized_keys restricts them)"),
        (SshSettings(auth=SshAuth.PASSWORD), ANY + "any password (ssh_password restricts them)"),
        (SshSettings(auth=SshAuth.PASSWORD, authorized_keys=None, password="pw"), ""),
        (SshSettings(auth=SshAuth.PUBLICKEY, authorized_keys=(KEY,)), ""),
        (SshSettings(password="pw", authorized_keys=(KEY,)), ""),
    ],
)
def test_the_start_line_says_exactly_what_ssh_lets_in(ssh: SshSettings, said: str) -> None:
    assert open_ssh(ssh) == said
