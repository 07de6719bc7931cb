"""The handle's reachability assertions: a ``down`` fault's silent hold is not reachable."""

from __future__ import annotations

from pathlib import Path

import pytest

import lbsim

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
