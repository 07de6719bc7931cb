"""The handle's reachability assertions: a ``down`` fault's silent hold is not reachable,
and a failure that can no longer be explained (the port row is gone) is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

import lbsim
from lbsim.errors import LbsimError

TOPOLOGY = Path(__file__).with_name("topology.json")
CONFIG = {"port_map": "ephemeral", "sources": {"127.0.0.1": "203.0.113.7"}}


def test_an_instance_held_down_by_a_fault_is_not_reachable() -> None:
    with lbsim.run_in_thread(TOPOLOGY, config=CONFIG) as lb:
        lb.assert_reachable("web", 1, 22)
        with lb.fault("down", name="crash", instance="web/1"):
            lb.assert_denied("web", 1, 22)
            lb.assert_reachable("web", 0, 22)  # the other instance answers as before
            with pytest.raises(AssertionError) as caught:
                lb.assert_reachable("web", 1, 22)
        message = str(caught.value)
        assert "Tcp port 22 of web/1: expected reachable; from 127.0.0.1 to" in message
        assert "held silently by the down fault 'crash'" in message
        assert "NAT entry: ssh.1 127.0.0.1:50001 -> web/1 (10.0.0.5):22 Tcp" in message
        lb.assert_reachable("web", 1, 22)  # the fault is gone with its block


def test_a_down_fault_on_another_rule_holds_nothing_here() -> None:
    with (
        lbsim.run_in_thread(TOPOLOGY, config=CONFIG) as lb,
        lb.fault("down", instance="web/1", rule="http"),
    ):
        lb.assert_reachable("web", 1, 22)


def test_a_port_row_gone_before_the_explanation_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with lbsim.run_in_thread(TOPOLOGY, config=CONFIG) as lb:
        host, port = lb.endpoint("web", 0, 22)
        monkeypatch.setattr(lb, "ports", list)  # as if the entry went while connecting
        with pytest.raises(LbsimError) as caught:
            lb.assert_reachable("web", 0, 22, source="198.51.100.20")
    assert caught.value.code == "ResourceNotFound"
    message = str(caught.value)
    assert "Tcp port 22 of web/0: expected reachable; from 127.250.0." in message
    assert f"to {host}:{port}: reset; and no Tcp NAT entry listens at {host}:{port} now" in message
