"""``lbsim up --port-map``: the NAT table it prints and its ready file say where each
frontend listens, beside Azure's address and port, and a client connects there."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TOPOLOGY = Path(__file__).with_name("topology.json")
ROOT = Path(__file__).parents[2]


def test_lbsim_up_under_an_offset_says_where_it_listens(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    command = [
        sys.executable, "-m", "lbsim", "up", str(TOPOLOGY), "--port-map", "offset:11903",
        "--source", "127.0.0.1=203.0.113.7", "--ready-file", str(ready), "--api-port", "off",
    ]  # fmt: skip
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    with subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 15
            while not ready.exists():
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "lbsim up did not get ready"
                time.sleep(0.05)
            assert proc.stdout is not None
            table = [proc.stdout.readline() for _ in range(4)]
            assert table[3].split()[:4] == ["127.0.0.1:61903", "(127.0.0.1:50000)", "Tcp", "ssh.0"]
            listeners = json.loads(ready.read_text(encoding="utf-8"))["listeners"]
            assert [
                (x["frontendPort"], x["listenAddress"], x["listenPort"]) for x in listeners
            ] == [
                (50000, "127.0.0.1", 61903),
                (50001, "127.0.0.1", 61904),
                (80, "127.0.0.1", 11983),
            ]
            with socket.create_connection(("127.0.0.1", 61904), timeout=5) as ssh:
                assert ssh.recv(200).startswith(b"SSH-2.0-lbsim_web_1")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
