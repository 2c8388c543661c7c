"""Reloads under continuous load, per mode: requests, failures, and latency inside reload windows
against steady state.

Modes (each runs the same endpoints on loopback, --reloads reloads, alternating so drift hits all):

* ``inprocess`` — ``examples/http_server.py``: SIGHUP, the in-process upgrader hands over.
* ``supervisor`` — the same server under ``sockact run``: SIGHUP to sockact, a new child, SIGTERM old.
* ``uvicorn``, ``aiohttp``, … — ``examples/<server>_app.py`` through ``sockact.integrations``.
* ``naive`` — the peer with no socket passing: SIGTERM the server, wait for it to exit, start it again.

A reload window runs from the signal until a new pid answers, plus 0.5 s; every request that
started or ended in a window counts as "in reload". Goals (issue 7): 0 failed; p99 in reload windows
at most 2x steady p99.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._util import ROOT, become_subreaper, child_env, free_port, reap_exited
from sockact._loadgen import Load, LoadResult, get

SERVERS = ["uvicorn", "hypercorn", "aiohttp", "tornado", "waitress"]
TAIL = 0.5


@dataclass
class Run:
    mode: str
    result: LoadResult = field(default_factory=LoadResult)
    windows: list[tuple[float, float]] = field(default_factory=list)
    reloads: int = 0


def _argv(mode: str, port: int) -> list[str]:
    server = "http_server.py" if mode in ("inprocess", "supervisor", "naive") else f"{mode}_app.py"
    argv = [sys.executable, os.path.join(ROOT, "examples", server), "--listen", f"127.0.0.1:{port}"]
    argv += ["--drain-timeout", "10"]
    if mode == "supervisor":
        supervisor = [sys.executable, "-m", "sockact", "run", "--listen", f"http=127.0.0.1:{port}"]
        return [*supervisor, "--drain-timeout", "10", "--", *argv]
    return argv


def _answering(port: int, not_pids: set[int], deadline: float) -> int:
    while time.monotonic() < deadline:
        try:
            status, pid = get("127.0.0.1", port, timeout=2)
            if status == 200 and pid not in not_pids:
                return pid
        except OSError:
            pass
        time.sleep(0.005)
    raise TimeoutError(f"no new server on port {port}")


def _one(mode: str, reloads: int, max_seconds: float) -> Run:
    port = free_port()
    env = child_env()
    devnull = subprocess.DEVNULL
    procs = [subprocess.Popen(_argv(mode, port), env=env, stdout=devnull, stderr=devnull)]
    deadline = time.monotonic() + max_seconds
    run = Run(mode)
    try:
        pids = {_answering(port, set(), deadline)}
        main = procs[0].pid
        with Load("127.0.0.1", port, workers=4, max_seconds=max_seconds) as load:
            time.sleep(1.0)  # steady state before the first reload
            for _ in range(reloads):
                began = time.monotonic() - load.started
                if mode == "naive":
                    procs[-1].send_signal(signal.SIGTERM)
                    procs[-1].wait(30)
                    procs.append(subprocess.Popen(_argv(mode, port), env=env, stdout=devnull, stderr=devnull))
                else:
                    os.kill(main, signal.SIGHUP)
                new = _answering(port, pids, deadline)
                pids.add(new)
                if mode == "inprocess" or mode in SERVERS:
                    main = new
                run.windows.append((began, time.monotonic() - load.started + TAIL))
                run.reloads += 1
                time.sleep(TAIL + 0.5)  # steady state between reloads
            run.result = load.stop()
    finally:
        for pid in {main, *(p.pid for p in procs)}:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        reap_exited()
    return run


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def _split(run: Run) -> tuple[list[float], list[float]]:
    inside: list[float] = []
    steady: list[float] = []
    for (end, _, _), latency in zip(run.result.timeline, run.result.latencies):
        start = end - latency
        hit = any(a <= end and start <= b for a, b in run.windows)
        (inside if hit else steady).append(latency)
    return steady, inside


def run(args: argparse.Namespace) -> int:
    become_subreaper()
    modes = args.modes.split(",")
    runs = [_one(mode, args.reloads, args.max_seconds) for mode in modes]
    print(f"reloads under load: {args.reloads} per mode, 4 load workers, loopback\n")
    print(
        "| mode | reloads | requests | failed | p50 steady ms | p99 steady ms | p50 reload ms | p99 reload ms | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        steady, inside = _split(r)
        p99_steady, p99_inside = _percentile(steady, 0.99), _percentile(inside, 0.99)
        print(
            f"| {r.mode} | {r.reloads} | {r.result.requests} | {r.result.failed} | {_percentile(steady, 0.5):.1f} |"
            f" {p99_steady:.1f} | {_percentile(inside, 0.5):.1f} | {p99_inside:.1f} | {p99_inside / p99_steady:.2f} |"
        )
    print("\n(goals: failed 0 for every sockact mode; ratio = p99 in reload windows / steady p99 ≤ 2.0)")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("reload", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument("--modes", default=",".join(["inprocess", "supervisor", *SERVERS, "naive"]))
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.set_defaults(run=run)
