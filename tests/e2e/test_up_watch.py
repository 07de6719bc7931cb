"""``lbsim up --watch true`` as a user runs it: a subprocess on a copy of a small template
(tests/data/vmss-nat.json: a scale set of two behind a NAT pool, its subnet's NSG allowing
SSH from 203.0.113.0/24). Editing the NSG rule in the file denies the next connection;
writing invalid JSON is refused with the error, and the plan before it runs on."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = Path(__file__).parents[1] / "data" / "vmss-nat.json"
FRONTEND = "127.0.98.1"
CLIENT = "127.98.0.7"  # presented as 203.0.113.7
CONFIG = f"""
api_port = "off"
log_flows = false
drain_seconds = 1
watch = true
[frontends]
"lb/fe" = "{FRONTEND}"
[sources]
"127.98.0.0/24" = "203.0.113.0/24"
"""


@contextmanager
def watching(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path, Path]]:
    """``lbsim up`` with watch on, ready; its stderr in a file; killed if still running."""
    template = tmp_path / "t.json"
    shutil.copy(TEMPLATE, template)
    (tmp_path / "lbsim.toml").write_text(CONFIG, encoding="utf-8")
    ready, log = tmp_path / "ready.json", tmp_path / "stderr.log"
    command = [sys.executable, "-m", "lbsim", "up", str(template)]
    command += ["--config", str(tmp_path / "lbsim.toml"), "--ready-file", str(ready)]
    with (
        log.open("w") as err,
        subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, text=True
        ) as proc,
    ):
        try:
            wait_for(ready.exists, proc, log, "ready")
            yield proc, template, log
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def wait_for(done: Callable[[], bool], proc: subprocess.Popen[str], log: Path, what: str) -> None:
    deadline = time.monotonic() + 15
    while not done():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {what}: {log.read_text()}"
        time.sleep(0.05)


def banner(port: int) -> bytes:
    """The SSH banner through the NAT port, or b"" when the connection is reset."""
    try:
        with socket.create_connection((FRONTEND, port), timeout=3, source_address=(CLIENT, 0)) as s:
            return s.recv(256)
    except ConnectionResetError:  # on connect or on the first read, as the RST races
        return b""


def set_access(template: Path, access: str) -> None:
    doc = json.loads(template.read_text(encoding="utf-8"))
    nsg = next(r for r in doc["resources"] if r["name"] == "web-nsg")
    nsg["properties"]["securityRules"][0]["properties"]["access"] = access
    template.write_text(json.dumps(doc, indent=2), encoding="utf-8")


def test_watch_reloads_on_a_template_change_and_refuses_invalid_json(tmp_path: Path) -> None:
    with watching(tmp_path) as (proc, template, log):
        assert banner(50000).startswith(b"SSH-2.0-lbsim_web_0")
        set_access(template, "Deny")
        reloaded = "lbsim: watch: t.json changed: reloaded: NSGs changed web-nsg"
        wait_for(lambda: reloaded in log.read_text(), proc, log, "reload")
        assert banner(50000) == b""  # a new connection is denied (reset)
        template.write_text('{"resources": [', encoding="utf-8")
        refused = "lbsim: watch: t.json changed: reload refused, the old plan runs on:"
        wait_for(lambda: refused in log.read_text(), proc, log, "refusal")
        text = log.read_text()
        assert "t.json" in text.split(refused, 1)[1]  # the error names the file
        assert banner(50001) == b""  # the plan before (Deny) runs on
        shutil.copy(TEMPLATE, template)  # valid again, and Allow
        allowed = "lbsim: watch: t.json changed: reloaded: NSGs changed web-nsg"
        wait_for(lambda: log.read_text().count(allowed) == 2, proc, log, "second reload")
        assert banner(50001).startswith(b"SSH-2.0-lbsim_web_1")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
