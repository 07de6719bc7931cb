"""The CLI's messages: one spelling of an instance (``web/0``), ``--instance`` in lbsim's and
Azure's spelling, the destination ``check`` judged, and exit codes that survive a reader
that goes away (``lbsim check ... | head -1``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lbsim.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "arm-examples" / "vmss-linux-ssh"
TEMPLATE = [str(EXAMPLE / "azuredeploy.json"), "-p", str(EXAMPLE / "azuredeploy.parameters.json")]
DENIED = "198.51.100.66"  # the example's NSG allows SSH from 203.0.113.0/24 only


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def test_ports_json_spells_every_backend_as_scale_set_slash_instance(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "ports", *TEMPLATE, "-o", "json")
    assert code == 0
    nat = [row for row in json.loads(out) if row["kind"] != "LoadBalancingRule"]
    assert nat
    for row in nat:
        assert row["backend"] == f"{row['scaleSet']}/{row['instanceId']}"


@pytest.mark.parametrize("spelling", ["web/1", "web_1", "WEB_1"])
def test_rules_takes_an_instance_in_lbsim_s_and_azure_s_spelling(
    capsys: pytest.CaptureFixture[str], spelling: str
) -> None:
    code, out, _ = run(capsys, "rules", *TEMPLATE, "--instance", spelling, "-o", "json")
    assert code == 0
    assert json.loads(out)["instance"] == "web/1"


def test_an_unknown_instance_names_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "rules", *TEMPLATE, "--instance", "web/9")
    assert code == 2
    assert err.startswith("lbsim: UnknownInstance: --instance web/9: no such instance")
    assert "web/0, web/1, web/2" in err


def test_check_says_which_destination_it_judged(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", *TEMPLATE, "--source", DENIED, "--frontend-port", "50000")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"Deny: Tcp {DENIED}:49152 -> web/0 10.0.0.4:22")
    assert lines[2] == (
        "destination judged: 10.0.0.4:22, web/0's private address: the load balancer "
        "translated the frontend's address to it (no floating IP)"
    )
    code, out, _ = run(
        capsys, "check", *TEMPLATE, "--source", DENIED, "--frontend-port", "50000", "-o", "json"
    )
    assert json.loads(out)["floatingIP"] is False


def _floating(tmp_path: Path) -> Path:
    """The example with floating IP on its NAT pool."""
    doc: dict[str, Any] = json.loads((EXAMPLE / "azuredeploy.json").read_text(encoding="utf-8"))
    lb = next(r for r in doc["resources"] if r["type"].endswith("/loadBalancers"))
    for pool in lb["properties"]["inboundNatPools"]:
        pool["properties"]["enableFloatingIP"] = True
    path = tmp_path / "azuredeploy.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_check_with_floating_ip_judges_the_frontend_address(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    template = [str(_floating(tmp_path)), "-p", TEMPLATE[2]]
    code, out, _ = run(capsys, "check", *template, "--source", DENIED, "--frontend-port", "50000")
    assert code == 1
    lines = out.splitlines()
    assert " -> web/0 127.0.0.1:22 via NAT rule ssh.0" in lines[0]
    assert lines[2].startswith("destination judged: 127.0.0.1:22, the frontend's address: the ")
    assert "floating IP" in lines[2]


# --- a reader that goes away -------------------------------------------------------------
def _into_closed_pipe(*argv: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with its output into a pipe whose reader has already gone away (as
    ``| head -1`` is once it has its line)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "lbsim", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["check", *TEMPLATE, "--source", DENIED, "--frontend-port", "50000"], 1),
        (["check", *TEMPLATE, "--source", "203.0.113.7", "--frontend-port", "50000"], 0),
        (["ports", *TEMPLATE, "-o", "json"], 0),
        (["rules", *TEMPLATE, "--instance", "web/0"], 0),
        (["rules", *TEMPLATE, "--instance", "web/9"], 2),
    ],
)
def test_a_reader_that_goes_away_keeps_the_exit_code(argv: list[str], code: int) -> None:
    done = _into_closed_pipe(*argv)
    assert done.returncode == code
    assert b"Traceback" not in done.stderr
    assert b"Exception ignored" not in done.stderr
    assert b"BrokenPipe" not in done.stderr
