"""Hand-over cost: signal → successor ready and handed over → old process gone, against a bare start
of the same app.

The bench plays systemd: it gives ``examples/http_server.py`` a NOTIFY_SOCKET and times what arrives.
Each repeat starts one server (the bare start: spawn → its READY=1, sent once it accepts), then
SIGHUPs it (the hand-over: SIGHUP → the old process's ``MAINPID=<successor>`` + READY=1, sent once
the successor's READY=1 was accepted; then → the old process's exit, after it stopped accepting and
drained — no load here, so at once). sockact's own share is hand-over minus bare start: signal
handling, RELOADING=1, the notify receiver, spawning through the trampoline, the successor's
barrier and the hand-over notification. Goal (issue 7): ≤ 10 ms median.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from typing import Any

from bench._util import ROOT, become_subreaper, child_env, free_port, reap_exited
from sockact import NotifyReceiver
from sockact._poll import readable


def _await(receiver: NotifyReceiver, key: str, deadline: float) -> tuple[float, dict[str, str]]:
    """(arrival time, fields) of the next message carrying ``key``."""
    while True:
        message = receiver.receive(timeout=max(deadline - time.monotonic(), 0))
        if message is None:
            raise TimeoutError(f"no {key}= within the deadline")
        arrived = time.monotonic()
        fields = {k: message[k] for k in ("READY", "MAINPID", "RELOADING") if k in message}
        message.close()
        if key in fields:
            return arrived, fields


def _gone(pid: int, receiver: NotifyReceiver, deadline: float) -> float:
    """When ``pid`` exited. Meanwhile messages are read (and BARRIER=1 acknowledged), as systemd does:
    the old process waits for the hand-over's barrier before it goes on."""
    fd = os.pidfd_open(pid)
    try:
        while time.monotonic() < deadline:
            if fd in readable([fd, receiver.fileno()], deadline - time.monotonic()):
                return time.monotonic()
            message = receiver.receive_nowait()
            if message is not None:
                message.close()
        raise TimeoutError(f"pid {pid} did not exit")
    finally:
        os.close(fd)


def _one(receiver: NotifyReceiver) -> tuple[float, float, float]:
    """(bare start, signal → handed over, signal → old exited), in seconds."""
    port = free_port()
    argv = [sys.executable, os.path.join(ROOT, "examples", "http_server.py"), "--listen", f"127.0.0.1:{port}"]
    env = child_env() | {"NOTIFY_SOCKET": receiver.address}
    deadline = time.monotonic() + 30
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    began = time.monotonic()
    pid = os.posix_spawn(sys.executable, argv, env, file_actions=actions)  # the cheapest way to start it
    os.close(devnull)
    successor = 0
    try:
        ready, _ = _await(receiver, "READY", deadline)
        signalled = time.monotonic()
        os.kill(pid, signal.SIGHUP)
        handed, fields = _await(receiver, "MAINPID", deadline)
        successor = int(fields["MAINPID"])
        exited = _gone(pid, receiver, deadline)
        return ready - began, handed - signalled, exited - signalled
    finally:
        for started in (successor, pid):
            if started:
                try:
                    os.kill(started, signal.SIGTERM)
                    _gone(started, receiver, time.monotonic() + 30)
                except ProcessLookupError:
                    pass
        reap_exited()


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def run(args: argparse.Namespace) -> int:
    become_subreaper()  # successors outlive the server that spawned them: reap them here
    bare, handed, exited = [], [], []
    with NotifyReceiver() as receiver:
        for _ in range(args.repeats):
            a, b, c = _one(receiver)
            bare.append(a)
            handed.append(b)
            exited.append(c)
    share = sorted(h - b for h, b in zip(handed, bare))
    print(f"hand-over cost, examples/http_server.py, median of {args.repeats} (each: a bare start, then a SIGHUP)\n")
    print("| phase | median ms | goal |")
    print("|---|---:|---|")
    print(f"| bare start: spawn → READY=1 | {_ms(bare)} | — |")
    print(f"| hand-over: SIGHUP → MAINPID=successor + READY=1 | {_ms(handed)} | — |")
    print(f"| SIGHUP → old process exited (stopped accepting, drained) | {_ms(exited)} | — |")
    print(f"| sockact's own share: hand-over − bare start (paired) | {_ms(share)} | ≤ 10 ms |")
    print(f"| the same, p90 | {share[int(0.9 * (len(share) - 1))] * 1000:.1f} | — |")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("handover", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repeats", type=int, default=15)
    parser.set_defaults(run=run)
