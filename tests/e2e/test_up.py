"""``lbsim up`` as a user runs it: a subprocess on the SSH example, reached over loopback,
its metrics scraped, stopped by SIGTERM; clean one-line errors; and the collector and flow
log lines on their own."""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from lbsim.arm.loader import LoadOptions, load_template
from lbsim.control.plan import plan
from lbsim.control.types import Plan, PlannedProbe
from lbsim.dataplane.events import FlowEvent, FlowNames, NsgHit
from lbsim.dataplane.listeners import Listener, Route
from lbsim.dataplane.probes import ProbeState
from lbsim.dataplane.runtime import Runtime
from lbsim.model import ProbeProtocol, TransportProtocol
from lbsim.observe.logs import json_line, text_line
from lbsim.observe.metrics import RuntimeCollector

ROOT = Path(__file__).resolve().parents[2]
SSH = ROOT / "arm-examples" / "vmss-linux-ssh"
FRONTEND = "127.0.95.1"  # away from 127.0.0.1, where a demo may be running
ALLOWED, DENIED = "127.96.0.7", "127.96.1.9"  # presented as 203.0.113.7 and 198.51.100.9
READY = re.compile(
    r"lbsim: ready listeners=3 builtin_instances=3 metrics=http://127\.0\.0\.1:(\d+)/metrics"
    r" api=http://127\.0\.0\.1:\1"
)
CONFIG = f"""
drain_seconds = 3
[frontends]
"web-lb/public" = "{FRONTEND}"
[sources]
"127.96.0.0/24" = "203.0.113.0/24"
"127.96.1.0/24" = "198.51.100.0/24"
"""
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def up_command(tmp_path: Path, config: str, *extra: str) -> list[str]:
    (tmp_path / "lbsim.toml").write_text(config, encoding="utf-8")
    return [
        sys.executable,
        "-m",
        "lbsim",
        "up",
        str(SSH / "azuredeploy.json"),
        "-p",
        str(SSH / "azuredeploy.parameters.json"),
        "--config",
        str(tmp_path / "lbsim.toml"),
        *extra,
    ]


@contextlib.contextmanager
def lbsim_up(
    tmp_path: Path, metrics_port: int, config: str = CONFIG
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``lbsim up`` on the SSH example, ready; killed on the way out if still running."""
    ready = tmp_path / "ready.json"
    command = up_command(
        tmp_path, config, "--ready-file", str(ready), "--metrics-port", str(metrics_port)
    )
    env = {"PATH": "/usr/bin:/bin", "LBSIM_LOG_FORMAT": "json"}
    with subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 15
            while not ready.exists():
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "lbsim up did not get ready"
                time.sleep(0.05)
            yield proc, ready
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def ssh_banner(port: int, source: str) -> bytes:
    with socket.create_connection((FRONTEND, port), timeout=3, source_address=(source, 0)) as s:
        banner = s.recv(256)
        s.sendall(b"SSH-2.0-lbsim_test\r\n")
        return banner


def is_reset(port: int, source: str) -> bool:
    with socket.create_connection((FRONTEND, port), timeout=3, source_address=(source, 0)) as s:
        try:
            s.recv(256)
        except ConnectionResetError:
            return True
        return False


def refused_within(port: int, seconds: float) -> bool:
    """Whether connections to ``port`` are refused before ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection((FRONTEND, port), 1, (ALLOWED, 0)).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.05)
    return False


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def test_up_serves_the_example_reports_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    metrics_port = free_port()
    with lbsim_up(tmp_path, metrics_port) as (proc, ready):
        assert proc.stdout is not None
        assert proc.stderr is not None
        line = proc.stdout.readline().rstrip("\n")
        match = READY.fullmatch(line)
        assert match, line
        assert int(match[1]) == metrics_port
        table = [proc.stdout.readline() for _ in range(5)]
        assert table[0].split() == [
            "FRONTEND", "PROTOCOL", "RULE", "INSTANCE", "BACKEND", "PORT", "BACKEND", "IP",
            "SERVED", "BY",
        ]  # fmt: skip
        assert table[2].split()[:6] == [
            f"{FRONTEND}:50000",
            "Tcp",
            "ssh.0",
            "web/0",
            "22",
            "10.0.0.4",
        ]
        described = json.loads(ready.read_text(encoding="utf-8"))
        assert described["pid"] == proc.pid
        assert described["metrics"] == f"http://127.0.0.1:{metrics_port}/metrics"
        assert [(x["frontendIPAddress"], x["frontendPort"]) for x in described["listeners"]] == [
            (FRONTEND, 50000),
            (FRONTEND, 50001),
            (FRONTEND, 50002),
        ]

        assert ssh_banner(50001, ALLOWED).startswith(b"SSH-2.0-lbsim_web_1 ")
        assert is_reset(50002, DENIED)
        url = described["metrics"]
        deadline = time.monotonic() + 5
        while True:  # the relay counts the client's bytes as it moves them
            samples = scrape(url)
            inbound = value(
                samples, "lbsim_byte_count_total", direction="Inbound", frontend_port="50001"
            )
            if inbound == len(b"SSH-2.0-lbsim_test\r\n") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert inbound == len(b"SSH-2.0-lbsim_test\r\n")
        assert value(samples, "lbsim_syn_count_total", frontend_port="50001") == 1
        assert value(samples, "lbsim_syn_count_total") == 1
        assert value(samples, "lbsim_flows_denied_total", frontend_port="50002") == 1
        allow = {"rule": "UserRule_allow-ssh", "access": "Allow", "level": "subnet"}
        deny = {"rule": "DefaultRule_DenyAllInBound", "access": "Deny"}
        assert value(samples, "lbsim_nsg_decisions_total", **allow) == 1
        assert value(samples, "lbsim_nsg_decisions_total", **deny) == 1
        assert value(samples, "lbsim_vip_availability") == 300

        with socket.create_connection((FRONTEND, 50000), 3, (ALLOWED, 0)) as held:
            assert held.recv(256).startswith(b"SSH-2.0-lbsim_web_0 ")
            proc.send_signal(signal.SIGTERM)
            assert refused_within(50001, 3)  # no new connections
            assert proc.poll() is None  # draining: the open connection may finish
            draining = scrape(url)  # metrics stay up while flows drain
            assert value(draining, "lbsim_flows_active", frontend_port="50000") == 1
            held.sendall(b"SSH-2.0-still_here\r\n")
            assert held.recv(256)  # still open: its SSH server goes on (key exchange)
            closed = time.monotonic()
        assert proc.wait(timeout=3 + 5) == 0  # within drain_seconds (3)
        assert time.monotonic() - closed < 2.5  # once the last flow closed
        err = proc.stderr.read()
    assert "Traceback" not in err
    assert "lbsim: SIGTERM: draining" in err
    events = [json.loads(x) for x in err.splitlines() if x.startswith("{")]
    assert [(e["kind"], e["frontend"], e["source"], e["access"]) for e in events[:1]] == [
        ("decision", f"{FRONTEND}:50001", "203.0.113.7", "Allow")
    ]
    assert {(e["kind"], e["source"], e["access"]) for e in events} >= {
        ("decision", "198.51.100.9", "Deny"),
        ("close", "203.0.113.7", ""),
    }


@pytest.mark.parametrize(
    ("config", "extra", "code", "message"),
    [
        (
            "metrics_prot = 1\n",
            [],
            "UnknownConfigKey",
            "unknown key 'metrics_prot'; did you mean 'metrics_port'?",
        ),
        ('deny_mode = "maybe"\n', [], "InvalidSetting", "config key deny_mode: 'maybe'"),
        ("", [], "FrontendBindFailed", f"Tcp {FRONTEND}:50001 (ssh.1): Address already in use"),
        (
            "",
            ["--frontend", "web-lb/public=127.0.95.3", "--ready-file", "/nonexistent/ready.json"],
            "ReadyFileFailed",
            "cannot write /nonexistent/ready.json: No such file or directory",
        ),
    ],
)
def test_up_with_a_bad_setup_exits_2_with_one_line(
    tmp_path: Path, config: str, extra: list[str], code: str, message: str
) -> None:
    config += f'[frontends]\n"web-lb/public" = "{FRONTEND}"\n'
    command = up_command(tmp_path, config, "--metrics-port", "0", *extra)
    with socket.socket() as squatter:
        squatter.bind((FRONTEND, 50001))
        squatter.listen()
        done = subprocess.run(
            command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=20
        )
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"lbsim: {code}: ")
    assert message in lines[0]


def test_up_with_the_metrics_port_taken_exits_2(tmp_path: Path) -> None:
    config = '[frontends]\n"web-lb/public" = "127.0.95.2"\n'
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        command = up_command(tmp_path, config, "--metrics-port", str(port))
        done = subprocess.run(
            command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=20
        )
    assert done.returncode == 2
    where = f"127.0.0.1:{port}"
    assert done.stderr.splitlines() == [
        f"lbsim: ApiBindFailed: cannot serve the control API on {where}: Address already in"
        f" use (see who holds it: ss -ltnp 'sport = :{port}')"
    ]


# --- the collector and the log lines, without a process or a network ------------------------
def _plan() -> Plan:
    template = json.loads((SSH / "azuredeploy.json").read_text(encoding="utf-8"))
    return plan(load_template(template, "t.json", LoadOptions(fill_missing=True)))


class _Shown(Runtime):
    """A runtime that shows the listeners and probes a test gives it."""

    shown: tuple[list[Listener], list[ProbeState]] = ([], [])

    @property
    def listeners(self) -> list[Listener]:
        return self.shown[0]

    @property
    def probes(self) -> list[ProbeState]:
        return self.shown[1]


def test_runtime_collector_reports_every_counter() -> None:
    the_plan = _plan()
    runtime = _Shown(the_plan)
    tcp_entry = the_plan.nat[1]
    udp_entry = attrs.evolve(tcp_entry, protocol=TransportProtocol.UDP)
    assert tcp_entry.backend is not None
    route = Route(tcp_entry.backend, 22, ("127.1.0.2", 22))
    tcp, udp = Listener(tcp_entry, (route,), 240.0), Listener(udp_entry, (route,), 240.0)
    tcp.bound = (tcp_entry.frontend.address, 50001)
    stats = tcp.stats
    stats.inbound.bytes, stats.inbound.packets = 100, 3
    stats.outbound.bytes, stats.outbound.packets = 2000, 5
    stats.flows_total, stats.flows_active, stats.denied, stats.backend_failures = 4, 1, 2, 1
    stats.closes.update({"client-closed": 2, "idle-timeout": 1})
    udp.stats.dropped, udp.stats.flows_total = 6, 7
    runtime.nsg_decisions = {
        ("web-nsg", "subnet", "UserRule_allow-ssh", "Allow"): 4,
        ("", "", "", "Allow"): 2,
    }
    probe = ProbeState(_probe(), tcp_entry.backend, ("127.1.0.2", 22), up=True)
    runtime.shown = ([tcp, udp], [probe])
    registry = CollectorRegistry()
    registry.register(RuntimeCollector(runtime))

    def get(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    rule = {
        "load_balancer": "web-lb",
        "frontend_ip": "127.0.0.1",
        "frontend_port": "50001",
        "protocol": "Tcp",
        "rule": "ssh.1",
    }
    udp_rule = {**rule, "protocol": "Udp"}
    assert get("lbsim_byte_count_total", **rule, direction="Inbound") == 100
    assert get("lbsim_byte_count_total", **rule, direction="Outbound") == 2000
    assert get("lbsim_packet_count_total", **rule, direction="Inbound") == 3
    assert get("lbsim_packet_count_total", **rule, direction="Outbound") == 5
    assert get("lbsim_syn_count_total", **rule) == 4
    assert get("lbsim_syn_count_total", **udp_rule) is None  # SYNs are TCP's
    assert get("lbsim_flows_total", **udp_rule) == 7
    assert get("lbsim_flows_active", **rule) == 1
    assert get("lbsim_flows_denied_total", **rule) == 2
    assert get("lbsim_backend_connect_failures_total", **rule) == 1
    assert get("lbsim_datagrams_dropped_total", **udp_rule) == 6
    assert get("lbsim_flow_closes_total", **rule, reason="client-closed") == 2
    assert get("lbsim_flow_closes_total", **rule, reason="idle-timeout") == 1
    decided = {"network_security_group": "web-nsg", "level": "subnet"}
    assert (
        get("lbsim_nsg_decisions_total", **decided, rule="UserRule_allow-ssh", access="Allow") == 4
    )
    none = {"network_security_group": "(none)", "level": "(none)", "rule": "(none)"}
    assert get("lbsim_nsg_decisions_total", **none, access="Allow") == 2
    vip = {"frontend_ip": "127.0.0.1", "frontend_port": "50001"}
    assert get("lbsim_vip_availability", **vip, protocol="Tcp") == 100
    assert get("lbsim_vip_availability", **vip, protocol="Udp") == 0  # not bound
    dip = {"load_balancer": "web-lb", "probe": "ssh-probe", "backend": "web/1"}
    dip.update(backend_ip="10.0.0.5", backend_port="22", protocol="Tcp")
    assert get("lbsim_dip_availability", **dip) == 100
    stats.inbound.bytes += 50  # read at scrape time, never copied
    assert get("lbsim_byte_count_total", **rule, direction="Inbound") == 150


def _probe() -> PlannedProbe:
    return PlannedProbe("web-lb", "ssh-probe", ProbeProtocol.TCP, 22, 5.0, 2)


def test_flow_log_lines() -> None:
    names = FlowNames(
        "Tcp", "127.0.0.1:50001", "ssh.1", "web/1", "127.1.0.2:22", "nic/ip", "10.0.0.5:22"
    )
    event = FlowEvent(
        "close",
        1_700_000_000.25,
        names,
        ("127.0.0.1", 40000),
        "203.0.113.7",
        bytes_in=10,
        bytes_out=57,
        packets_in=1,
        packets_out=2,
        duration_s=1.5,
        reason="client-closed",
    )
    assert text_line(event) == (
        "2023-11-14T22:13:20.250Z close Tcp 127.0.0.1:50001 ssh.1 client=127.0.0.1:40000 "
        "source=203.0.113.7 backend=web/1 in=10B out=57B duration=1.500s reason=client-closed"
    )
    decision = event._replace(kind="decision", access="Deny", nsg_rule="")
    assert text_line(decision).endswith("backend=web/1 access=Deny rule=-")
    unreachable = event._replace(kind="unreachable", reason="backend-unreachable")
    assert text_line(unreachable).endswith("target=127.1.0.2:22 reason=backend-unreachable")
    assert json.loads(json_line(event)) == {
        "kind": "close",
        "time": "2023-11-14T22:13:20.250Z",
        "protocol": "Tcp",
        "frontend": "127.0.0.1:50001",
        "rule": "ssh.1",
        "client": "127.0.0.1:40000",
        "source": "203.0.113.7",
        "backend": "web/1",
        "target": "127.1.0.2:22",
        "access": "",
        "nsg_rule": "",
        "bytes_in": 10,
        "bytes_out": 57,
        "duration_s": 1.5,
        "reason": "client-closed",
        "destination": "10.0.0.5:22",
        "interface": "nic/ip",
        "packets_in": 1,
        "packets_out": 2,
        "nsg_hits": [],
    }
    hit = NsgHit("web-nsg", "UserRule_allow-ssh", "Allow")
    explained = json.loads(json_line(decision._replace(nsg_hits=(hit,))))
    assert explained["nsg_hits"] == [
        {"network_security_group": "web-nsg", "rule": "UserRule_allow-ssh", "access": "Allow"}
    ]


def test_a_second_signal_stops_at_once_without_waiting_for_the_drain(tmp_path: Path) -> None:
    config = CONFIG.replace("drain_seconds = 3", "drain_seconds = 60")
    with lbsim_up(tmp_path, 0, config) as (proc, _ready):
        with socket.create_connection((FRONTEND, 50000), 3, (ALLOWED, 0)) as held:
            assert held.recv(256).startswith(b"SSH-2.0-lbsim_web_0 ")
            proc.send_signal(signal.SIGTERM)
            assert refused_within(50001, 3)  # draining, and would for 60 s
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=5) == 0
            held.settimeout(3)
            try:
                ended = held.recv(256) == b""
            except ConnectionResetError:
                ended = True
            assert ended  # the open flow was cut, not left hanging
        assert proc.stderr is not None
        err = proc.stderr.read()
    assert "Traceback" not in err
    assert "SIGINT: stopping now" in err


def test_traffic_goes_on_while_nobody_reads_the_log(tmp_path: Path) -> None:
    """The log is a pipe nobody reads until lbsim ends (as a harness's Popen often is): it
    fills after a few dozen JSON lines, and flows go on regardless."""
    flows = 300  # ~600 lines of ~700 bytes: several times what a pipe holds
    with lbsim_up(tmp_path, 0) as (proc, _ready):
        for n in range(flows):
            assert ssh_banner(50000 + n % 3, ALLOWED).startswith(b"SSH-2.0-lbsim_web_")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    kinds = [json.loads(line)["kind"] for line in err.splitlines() if line.startswith("{")]
    assert kinds.count("decision") == kinds.count("close") == flows  # every line, once read


def test_sigterm_ends_lbsim_while_nobody_reads_its_stderr(tmp_path: Path) -> None:
    """The pipe is full and stays unread: the drain notice must not wait for a reader,
    and the log waits for one only a bounded time, so lbsim still ends."""
    with lbsim_up(tmp_path, 0) as (proc, _ready):
        for n in range(300):  # enough JSON lines to fill a pipe several times over
            assert ssh_banner(50000 + n % 3, ALLOWED).startswith(b"SSH-2.0-lbsim_web_")
        time.sleep(0.3)  # the log writer has filled the pipe
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0  # drain (3 s), then up to 5 s for the log
