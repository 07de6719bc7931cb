"""The comparison points: the bench backend itself (direct), HAProxy, nginx (UDP) and lbsim.

Each is started by a context manager that waits until it serves, yields an :class:`Endpoint`
(which loopback ports reach the backend's echo, sink, source and UDP echo through it, and the
PID whose CPU time and memory are the relay's), and stops it by PID when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit.procs import BenchError, Proc, accepts, output, running, udp_echoes, wait_until

BENCH = Path(__file__).resolve().parents[1]
TEMPLATE = BENCH / "templates" / "bench.json"
NGINX_STREAM = Path("/usr/lib/nginx/modules/ngx_stream_module.so")


@dataclass(frozen=True)
class Ports:
    """Where everything listens on 127.0.0.1, from one base port (default 30000)."""

    base: int

    @property
    def backend(self) -> int:  # echo; +1 sink; +2 source; UDP echo on the same number
        return self.base + 1000

    @property
    def haproxy(self) -> int:
        return self.base + 500

    @property
    def nginx_udp(self) -> int:
        return self.base + 600

    @property
    def metrics(self) -> int:  # the metrics endpoint of the second lbsim
        return self.base + 700

    def lbsim(self, second: bool = False) -> tuple[int, int]:
        """Start of the TCP and of the UDP NAT pool of the (first or second) lbsim."""
        offset = 300 if second else 0
        return self.base + offset, self.base + 200 + offset

    def scale_pools(self) -> list[int]:
        """Starts of the three 1000-port pools of the scale layout."""
        return [self.base - 10000 + 1000 * i for i in range(3)]

    def all_fixed(self) -> list[int]:
        """Every port the bench binds besides the scale layout's."""
        starts = [*self.lbsim(), *self.lbsim(second=True), self.haproxy, self.nginx_udp]
        return [p + i for p in [*starts, self.backend] for i in range(3)] + [self.metrics]


@dataclass(frozen=True)
class Endpoint:
    """One comparison point: its name, its ports, and the PID of the relay (or backend)."""

    name: str
    echo: int
    sink: int
    source: int
    udp: int | None
    pid: int


@contextlib.contextmanager
def backend(tool: Path, ports: Ports, tmp: Path) -> Iterator[Endpoint]:
    """The bench backend (benchtool serve, one thread), reached directly."""
    argv = [str(tool), "serve", str(ports.backend), "1"]
    with running("backend", argv, log=tmp / "backend.log", pipe=True) as proc:
        if proc.read_line(10.0) != "ready":
            raise BenchError(f"the bench backend did not start:\n{proc.log_tail()}")
        b = ports.backend
        yield Endpoint("direct", b, b + 1, b + 2, b, proc.pid)


def have_haproxy() -> bool:
    return shutil.which("haproxy") is not None


def have_nginx_udp() -> bool:
    return shutil.which("nginx") is not None and NGINX_STREAM.exists()


def haproxy_config(listens: Sequence[tuple[int, int]], maxconn: int) -> str:
    """TCP mode, splice forced both ways; one ``listen`` per (frontend port, backend port)."""
    lines = [
        "global",
        f"    maxconn {maxconn}",
        "defaults",
        "    mode tcp",
        "    timeout connect 5s",
        "    timeout client 10m",
        "    timeout server 10m",
        "    option splice-request",
        "    option splice-response",
    ]
    for frontend, target in listens:
        lines += [f"listen p{frontend}", f"    bind 127.0.0.1:{frontend}"]
        lines.append(f"    server s 127.0.0.1:{target} maxconn {maxconn}")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def haproxy(
    ports: Ports, tmp: Path, listens: Sequence[tuple[int, int]] | None = None
) -> Iterator[tuple[Endpoint, Proc, float]]:
    """HAProxy in the foreground (``-db``) with its config in ``tmp``; also yields the
    seconds until its last listener accepted. Its maxconn keeps it under 20,000 descriptors."""
    h, b = ports.haproxy, ports.backend
    pairs = list(listens) if listens else [(h + i, b + i) for i in range(3)]
    config = tmp / "haproxy.cfg"
    config.write_text(haproxy_config(pairs, maxconn=7000 if listens is None else 4000))
    argv = ["haproxy", "-db", "-f", str(config)]
    with running("haproxy", argv, log=tmp / "haproxy.log") as proc:
        last = pairs[-1][0]
        ready = wait_until(lambda: accepts(last), proc, "listener on port " + str(last))
        yield Endpoint("haproxy", h, h + 1, h + 2, None, proc.pid), proc, ready


def nginx_config(tmp: Path, port: int, target: int) -> str:
    """nginx's stream module as a UDP proxy: one process, one worker loop."""
    return "\n".join(
        [
            f"load_module {NGINX_STREAM};",
            "daemon off;",
            "master_process off;",
            "worker_processes 1;",
            f"pid {tmp / 'nginx.pid'};",
            f"error_log {tmp / 'nginx-error.log'} warn;",
            "events { worker_connections 4096; }",
            "stream {",
            "    server {",
            f"        listen 127.0.0.1:{port} udp;",
            f"        proxy_pass 127.0.0.1:{target};",
            "        proxy_timeout 60s;",
            "    }",
            "}",
            "",
        ]
    )


@contextlib.contextmanager
def nginx_udp(ports: Ports, tmp: Path) -> Iterator[Endpoint]:
    config = tmp / "nginx.conf"
    config.write_text(nginx_config(tmp, ports.nginx_udp, ports.backend))
    argv = ["nginx", "-p", str(tmp), "-e", str(tmp / "nginx-error.log"), "-c", str(config)]
    with running("nginx", argv, log=tmp / "nginx.log") as proc:
        wait_until(lambda: udp_echoes(ports.nginx_udp), proc, "UDP echo")
        yield Endpoint("nginx", 0, 0, 0, ports.nginx_udp, proc.pid)


@dataclass(frozen=True)
class LbsimLayout:
    """What ``lbsim up`` runs: the bench template's parameters and the backend pattern."""

    pools: tuple[tuple[str, str, int, int], ...]  # name, protocol, start, backend port
    instances: int = 3
    pool_size: int = 100
    backend: str = "127.0.0.1:{31000+instance}"
    metrics_port: int | str = "off"  # no control API, no metrics: nothing but the relay
    log_flows: bool = False

    def argv(self, ready_file: Path, off: str = "off") -> list[str]:
        """``lbsim up``'s command line; ``off`` is what this lbsim's ``--metrics-port`` takes
        to serve nothing (see :class:`LbsimCode`)."""
        metrics = off if self.metrics_port == "off" else str(self.metrics_port)
        pools = [
            {"name": n, "protocol": p, "start": s, "backendPort": bp} for n, p, s, bp in self.pools
        ]
        return [
            *(sys.executable, "-m", "lbsim", "up", str(TEMPLATE)),
            *("--param", f"instanceCount={self.instances}"),
            *("--param", f"poolSize={self.pool_size}"),
            *("--param", "pools=" + json.dumps(pools)),
            *("--backend", "bench=" + self.backend),
            *("--metrics-port", metrics),
            *("--log-flows", "true" if self.log_flows else "false"),
            *("--ready-file", str(ready_file), "--drain-seconds", "1"),
        ]


def bench_layout(ports: Ports, *, second: bool = False, **extra: Any) -> LbsimLayout:
    """Three instances (echo, sink, source) behind a TCP and a UDP NAT pool."""
    tcp, udp = ports.lbsim(second)
    pattern = "127.0.0.1:{" + str(ports.backend) + "+instance}"
    pools = (("tcp", "Tcp", tcp, 22), ("udp", "Udp", udp, 53))
    return LbsimLayout(pools, backend=pattern, **extra)


@dataclass(frozen=True)
class LbsimCode:
    """Whose code ``lbsim up`` runs: this checkout's (``root`` None), or another commit's
    checkout (``run.py --baseline DIR``), run by the same interpreter with DIR first on its
    path and as its working directory (``python -m`` puts that before PYTHONPATH). ``off`` is
    what its ``--metrics-port`` takes to serve nothing: ``off`` since 0 means a free port,
    ``0`` in a checkout from before that."""

    root: Path | None = None
    off: str = "off"

    def env(self) -> dict[str, str] | None:
        if self.root is None:
            return None
        env = os.environ.copy()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), env.get("PYTHONPATH")]))
        return env


def baseline(root: Path) -> LbsimCode:
    """The lbsim checkout at ``root`` as the ``before`` point; fails clearly if it is none.
    Asks its ``lbsim up --help`` once whether ``--metrics-port`` takes ``off``."""
    root = root.resolve()
    if not (root / "lbsim" / "__init__.py").is_file():
        raise BenchError(
            f"--baseline {root}: no lbsim package there; make a checkout of the commit to"
            " compare with: git worktree add DIR REV"
        )
    code = LbsimCode(root)
    argv = [sys.executable, "-m", "lbsim", "up", "--help"]
    text = output(argv, timeout_s=60.0, env=code.env(), cwd=root)
    if "--ready-file" not in text:
        raise BenchError(f"--baseline {root}: its lbsim up has no --ready-file:\n{text[-400:]}")
    return LbsimCode(root, "off" if _takes_off(text) else "0")


def _takes_off(help_text: str) -> bool:
    """Whether ``--metrics-port`` takes ``off``: its help then describes that value ("off:
    none"), where an older help says "0: off"."""
    lines = help_text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\s+--(api|metrics)-port\b", line):  # the option, not the usage
            block = [line]
            for more in lines[i + 1 :]:
                if re.match(r"\s+-", more):
                    break
                block.append(more)
            return re.search(r"\boff\s*:", " ".join(block)) is not None
    return False


THIS = LbsimCode()


@dataclass(frozen=True)
class LbsimRun:
    endpoint: Endpoint
    proc: Proc
    ready_s: float
    listeners: int
    metrics: str | None


@contextlib.contextmanager
def lbsim(
    layout: LbsimLayout, tmp: Path, name: str = "lbsim", code: LbsimCode = THIS
) -> Iterator[LbsimRun]:
    """``lbsim up`` on the bench template, ready once its ready file is written."""
    ready_file = tmp / f"{name}.ready.json"
    ready_file.unlink(missing_ok=True)
    argv, log = layout.argv(ready_file, code.off), tmp / f"{name}.log"
    with running(name, argv, log=log, env=code.env(), cwd=code.root) as proc:
        ready_s = wait_until(ready_file.exists, proc, "ready file", timeout_s=120.0)
        data = json.loads(ready_file.read_text())
        yield LbsimRun(
            _endpoint(name, data, proc.pid), proc, ready_s, len(data["listeners"]), data["metrics"]
        )


def _endpoint(name: str, ready: dict[str, Any], pid: int) -> Endpoint:
    """Which frontend reaches which backend service, from the ready file."""
    by_target: dict[tuple[str, int], int] = {}
    for listener in ready["listeners"]:
        served = listener["backends"][0]["servedBy"].rpartition(":")[2]
        by_target.setdefault((listener["protocol"], int(served)), listener["frontendPort"])
    ports = sorted(p for proto, p in by_target if proto == "Tcp")
    base = ports[0] if ports else 0
    get = by_target.get
    return Endpoint(
        name,
        get(("Tcp", base), 0),
        get(("Tcp", base + 1), 0),
        get(("Tcp", base + 2), 0),
        get(("Udp", base)),
        pid,
    )
