"""Steady overhead: the same stdlib HTTP server with and without sockact, measured by wrk.

"Without": ``http.server.ThreadingHTTPServer`` binding its own socket, HTTP/1.1 keep-alive,
TCP_NODELAY and the example's own ``do_GET``. "With": ``examples/http_server.py`` — sockact's listeners,
upgrader, draining server and handler. The two alternate --rounds times; the figure is the ratio of
median requests/s. Goal (issue 7): ≥ 0.99. Loopback only; each wrk run lasts --seconds.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

from bench._util import ROOT, child_env, free_port

PLAIN = r"""
import http.server, os, socket, sys
sys.path.insert(0, os.path.join(sys.argv[2], "examples"))
from http_server import Handler as Example  # only its do_GET: the same app logic on both sides
class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    do_GET = Example.do_GET
    log_message = Example.log_message
    def setup(self):
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _wait(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port}")


def _wrk(wrk: str, port: int, seconds: int, connections: int) -> float:
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
    )
    match = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    if match is None:
        raise RuntimeError(f"wrk printed no rate: {out.stdout[-500:]} {out.stderr[-500:]}")
    return float(match.group(1))


def _measure(argv: list[str], port: int, wrk: str, seconds: int, connections: int) -> float:
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(port)
        return _wrk(wrk, port, seconds, connections)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (Debian: apt install wrk)", file=sys.stderr)
        return 2
    plain, with_sockact = [], []
    for _ in range(args.rounds):  # alternate, so drift hits both alike
        port = free_port()
        plain_argv = [sys.executable, "-c", PLAIN, str(port), ROOT]
        plain.append(_measure(plain_argv, port, wrk, args.seconds, args.connections))
        port = free_port()
        example = [sys.executable, os.path.join(ROOT, "examples", "http_server.py"), "--listen", f"127.0.0.1:{port}"]
        with_sockact.append(_measure(example, port, wrk, args.seconds, args.connections))
    a, b = statistics.median(plain), statistics.median(with_sockact)
    print(f"steady throughput, wrk -t2 -c{args.connections} -d{args.seconds}s, median of {args.rounds}\n")
    print("| server | requests/s |")
    print("|---|---:|")
    print(f"| http.server, no sockact | {a:,.0f} |")
    print(f"| the same with sockact (examples/http_server.py) | {b:,.0f} |")
    print(f"| ratio (goal ≥ 0.99) | {b / a:.3f} |")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("overhead", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.set_defaults(run=run)
