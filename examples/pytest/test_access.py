"""Access to the scale set, as deployed: SSH through the NAT pool from the office only, and
the web tier behind its load-balancing rule when an instance goes down; SSH through a
latency spike (a fault, as Toxiproxy names them)."""

import json
import socket
import time

import pytest


def test_ssh_reaches_every_instance_through_the_nat_pool(lbsim):
    for instance in lbsim.instances():
        lbsim.assert_reachable("app", instance["instanceId"], 22)


def test_ssh_banner_names_the_instance(lbsim):
    with socket.create_connection(lbsim.endpoint("app", 1, 22), timeout=5) as ssh:
        assert ssh.recv(200).startswith(b"SSH-2.0-lbsim_app_1")


def test_ssh_from_outside_the_office_is_denied(lbsim):
    lbsim.assert_denied("app", 0, 22, source="198.51.100.66")
    lbsim.assert_reachable("app", 0, 22, source="203.0.113.77")


def test_the_nsg_verdict_names_the_rule(lbsim):
    verdict = lbsim.check(source="198.51.100.66", frontend_port=50000)
    assert (verdict["access"], verdict["ruleName"]) == ("Deny", "DenyAllInBound")


def _who_answers(lbsim) -> str:
    """GET / through the load-balancing rule on port 80; the instance that answered."""
    rule = next(row for row in lbsim.ports() if row["ruleName"] == "http")
    address = (rule["listenAddress"], rule["listenPort"])
    with socket.create_connection(address, timeout=5) as web:
        web.sendall(b"GET / HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := web.recv(4096):
            reply += chunk
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])["backend"]


@pytest.mark.lbsim(parameters={"instanceCount": 2})  # a load balancer of its own
def test_when_an_instance_goes_down_the_others_answer(lbsim):
    lbsim.wait_probed_up("app", 0)
    lbsim.stop("app", 1)
    lbsim.assert_denied("app", 1, 22)
    # the health probe takes the stopped instance out of the rule (after its interval)
    lbsim.wait_for(lambda: not any(lbsim.probed("app", 1).values()), timeout=15)
    assert {_who_answers(lbsim) for _ in range(6)} == {"app/0"}


def test_ssh_answers_through_a_latency_spike(lbsim):
    with lbsim.fault("latency", latency=200, instance="app/0"):  # removed after the block
        started = time.monotonic()
        with socket.create_connection(lbsim.endpoint("app", 0, 22), timeout=5) as ssh:
            banner = ssh.recv(200)
        waited = time.monotonic() - started
    assert banner.startswith(b"SSH-2.0-lbsim_app_0")
    assert waited >= 0.2
    lbsim.assert_reachable("app", 0, 22)  # and at once again
