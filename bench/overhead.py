"""Steady overhead: the same server with and without sockact, measured by wrk.

"Without": ``http.server.ThreadingHTTPServer`` binding its own socket, HTTP/1.1 keep-alive,
TCP_NODELAY and the example's own ``do_GET``. "With": ``examples/http_server.py`` — sockact's
listeners, upgrader, draining server and handler. uvicorn: its own CLI binding the port against
``examples/uvicorn_app.py`` (``sockact.integrations.uvicorn``), the same ASGI app. Each pair
alternates --rounds times, in ABBA order (each side goes first in every other round: in half of
them for an even --rounds). Each round is one pair, and the figures are medians of the pairs'
ratios with their quartiles: requests/s with ÷ without, and the server's own CPU time per request
(from /proc, excluding start-up) without ÷ with, beside how many pairs sockact cost the less CPU in.
On this kind of VM single rounds of the same server scatter by ±15 %, so a 1 % goal is read off
many pairs, not one. With two or more CPUs the server runs on the last and wrk on the others
(sched_setaffinity before exec): otherwise they compete for the same cores, and a server's CPU per
request then depends on how the scheduler interleaves them as much as on the server. Goal
(issue 7): ≥ 0.99. Loopback only; each wrk run lasts --seconds.

Wall-clock figures on a shared VM can drift by more than the goal's 1 % within a run (seen here:
quartiles of 0.92–1.39 on a busy day), so ``--instructions N`` adds the steadier view: each server
under valgrind's callgrind, which counts the instructions the server executes (user space; the
syscalls per request are the same on both sides, checked with ``strace -c``), zeroed after a
warm-up and read after N keep-alive requests over 4 connections in lock-step — the same count to
~0.3 % run after run, whatever else the machine does.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench._util import ROOT, child_env, free_port, stop
from sockact._loadgen import _read_response, get

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


def _wait(port: int, seconds: float = 30, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Until the server answers (a connect alone is not enough: sockact binds before the app is up);
    RuntimeError at once if ``proc`` (the server) exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if get("127.0.0.1", port, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited ({proc.returncode}) before it answered on {port}")
        time.sleep(0.02)
    raise TimeoutError(f"nothing answers on {port}")


def cpus() -> tuple[set[int] | None, set[int] | None]:
    """(the server's CPUs, wrk's): the last CPU this process may use and the rest, or (None, None)
    with fewer than two."""
    mine = sorted(os.sched_getaffinity(0))
    return ({mine[-1]}, set(mine[:-1])) if len(mine) > 1 else (None, None)


def _pinned(cpus: set[int] | None) -> Callable[[], None] | None:
    """A preexec_fn that binds the child to ``cpus`` before it execs (so every thread it starts
    inherits them), or None. Safe here: the bench starts no threads."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _wrk(wrk: str, port: int, seconds: int, connections: int, on: set[int] | None = None) -> tuple[float, int]:
    """(requests/s, requests) of one wrk run, on the CPUs ``on`` (None: wherever)."""
    out = subprocess.run(
        [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", f"http://127.0.0.1:{port}/"],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        preexec_fn=_pinned(on),
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out.stdout)
    count = re.search(r"(\d+) requests in", out.stdout)
    if rate is None or count is None:
        raise RuntimeError(f"wrk printed no rate: {out.stdout[-500:]} {out.stderr[-500:]}")
    return float(rate.group(1)), int(count.group(1))


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far, its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(argv: list[str], port: int, wrk: str, seconds: int, connections: int, pin: bool) -> tuple[float, float]:
    """(requests/s, server CPU µs per request) of one server under one wrk run."""
    server_cpus, wrk_cpus = cpus() if pin else (None, None)
    proc = subprocess.Popen(
        argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_pinned(server_cpus)
    )
    try:
        _wait(port)
        before = _cpu(proc.pid)
        rate, count = _wrk(wrk, port, seconds, connections, wrk_cpus)
        return rate, (_cpu(proc.pid) - before) / count * 1e6
    finally:
        stop(proc)


def _lockstep(port: int, requests: int, connections: int = 4) -> None:
    """``requests`` GETs of / over ``connections`` keep-alive connections, one round at a time: every
    connection sends, then every answer is read whole; each must be a 200 that keeps the connection."""
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(connections)]
    try:
        for sock in socks:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(max(1, requests // connections)):
            for sock in socks:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
            for sock in socks:
                status, _, close = _read_response(sock)
                if status != 200 or close:
                    raise ConnectionError(f"the server on {port} answered {status}, close={close}, on keep-alive")
    finally:
        for sock in socks:
            sock.close()


def _instructions(argv: list[str], port: int, requests: int) -> float:
    """Instructions the server executes per request, by callgrind: started under it, warmed up with
    400 requests (200 with fewer than 1,000 measured), counters zeroed, ``requests`` sent, counters
    dumped and read."""
    with tempfile.TemporaryDirectory(prefix="sockact-cg-") as tmp:
        out = os.path.join(tmp, "cg.out")
        valgrind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"]
        proc = subprocess.Popen(
            [*valgrind, *argv], env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            _wait(port, 180, proc)  # Python starts ~50 times slower under callgrind
            _lockstep(port, 400 if requests >= 1000 else 200)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True, timeout=60)
            _lockstep(port, requests)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True, timeout=60)
            dump = max(glob.glob(out + ".*"), key=os.path.getmtime)
            with open(dump) as f:
                total = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
            return total / (requests // 4 * 4)
        finally:
            stop(proc, grace=60)


def _pairs(port: int) -> dict[str, tuple[list[str], list[str]]]:
    """server → (argv without sockact, argv with sockact), both on ``port``."""
    py, examples, listen = sys.executable, os.path.join(ROOT, "examples"), f"127.0.0.1:{port}"
    uvicorn = [py, "-m", "uvicorn", "--app-dir", examples, "--log-level", "warning", "--host", "127.0.0.1"]
    return {
        "http.server": (
            [py, "-c", PLAIN, str(port), ROOT],
            [py, os.path.join(examples, "http_server.py"), "--listen", listen],
        ),
        "uvicorn": (
            [*uvicorn, "--port", str(port), "uvicorn_app:app"],
            [py, os.path.join(examples, "uvicorn_app.py"), "--listen", listen],
        ),
    }


def _quartiles(values: Sequence[float]) -> str:
    """``0.97 (0.93–1.01)``: the median and, from three values on, the quartiles."""
    if len(values) < 3:
        return f"{statistics.median(values):.3f}"
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return f"{q2:.3f} ({q1:.2f}–{q3:.2f})"


def run(args: argparse.Namespace) -> int:
    wrk = shutil.which("wrk")
    if wrk is None:
        print("wrk is not installed (Debian: apt install wrk)", file=sys.stderr)
        return 2
    servers = args.servers.split(",")
    rates: dict[tuple[str, bool], list[float]] = {(s, w): [] for s in servers for w in (False, True)}
    cpu: dict[tuple[str, bool], list[float]] = {(s, w): [] for s in servers for w in (False, True)}
    for round_ in range(args.rounds):  # alternate, so drift hits both alike, in ABBA order (each side
        for server in servers:  # goes first as often: a server that follows another finds the machine warmer)
            for with_sockact in (False, True) if round_ % 2 == 0 else (True, False):
                port = free_port()
                argv = _pairs(port)[server][with_sockact]
                rate, per_request = _measure(argv, port, wrk, args.seconds, args.connections, args.pin)
                rates[server, with_sockact].append(rate)
                cpu[server, with_sockact].append(per_request)
    server_cpus, wrk_cpus = cpus() if args.pin else (None, None)
    where = f"server on CPU {sorted(server_cpus)}, wrk on {sorted(wrk_cpus or ())}" if server_cpus else "not pinned"
    print(
        f"steady throughput, wrk -t2 -c{args.connections} -d{args.seconds}s keep-alive, {args.rounds} pairs, {where}\n"
    )
    print("| server | requests/s without → with sockact | ratio, median of pairs (quartiles) |", end="")
    print(" server CPU µs/request without → with | CPU ratio, median of pairs (quartiles) |", end="")
    print(" sockact used less CPU | goal |")
    print("|---|---:|---|---:|---|---:|---|")
    for server in servers:
        a, b = statistics.median(rates[server, False]), statistics.median(rates[server, True])
        c, d = statistics.median(cpu[server, False]), statistics.median(cpu[server, True])
        rate_ratios = [y / x for x, y in zip(rates[server, False], rates[server, True])]
        cpu_ratios = [x / y for x, y in zip(cpu[server, False], cpu[server, True])]
        cheaper = sum(r > 1 for r in cpu_ratios)
        print(
            f"| {server} | {a:,.0f} → {b:,.0f} | {_quartiles(rate_ratios)} | {c:.0f} → {d:.0f} |"
            f" {_quartiles(cpu_ratios)} | {cheaper} of {len(cpu_ratios)} | ≥ 0.99 |"
        )
    print("\n(a pair: one round of each side, back to back; ratio: with over without; CPU ratio: without over")
    print(" with, so that above 1 means sockact costs less. With no cost at all, sockact uses less CPU in about")
    print(" half of the pairs)")
    if args.instructions:
        _print_instructions(servers, args.instructions)
    return 0


def _print_instructions(servers: list[str], requests: int) -> None:
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        print("\ninstructions per request: valgrind is not installed (Debian: apt install valgrind)")
        return
    print(f"\ninstructions per request, callgrind, {requests:,} keep-alive requests over 4 connections\n")
    print("| server | without sockact | with sockact | ratio without ÷ with | goal |")
    print("|---|---:|---:|---:|---|")
    for server in servers:
        counts = []
        for with_sockact in (False, True):
            port = free_port()
            counts.append(_instructions(_pairs(port)[server][with_sockact], port, requests))
        print(f"| {server} | {counts[0]:,.0f} | {counts[1]:,.0f} | {counts[0] / counts[1]:.3f} | ≥ 0.99 |")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("overhead", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--servers", default="http.server,uvicorn")
    parser.add_argument(
        "--instructions", type=int, default=0, metavar="N", help="also count instructions per request over N requests"
    )
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="let server and wrk share every CPU")
    parser.set_defaults(run=run)
