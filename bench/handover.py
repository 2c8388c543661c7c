"""Hand-over cost: signal → successor ready and handed over → old process gone, against a bare start
of the same app.

The bench plays systemd: it gives the app a NOTIFY_SOCKET and times what arrives. Each repeat starts
one server the cheapest way (bare posix_spawn → its READY=1, sent once it accepts), SIGHUPs it (the
hand-over: SIGHUP → the old process's ``MAINPID=<successor>`` + READY=1, sent once the successor's
READY=1 was accepted; then → the old process's exit, after it stopped accepting and drained — no
load here), then times one more bare start. sockact's own share is the hand-over minus the mean of
the two bare starts: signal handling, RELOADING=1, the notify receiver, spawning through the
trampoline, the successor's barrier and the hand-over notification. Two apps: a minimal sockact app
(least noise) and ``examples/http_server.py``. Goal (issues 7, 18): ≤ 5 ms median, ≤ 10 ms p90.
"""

from __future__ import annotations

import argparse
import os
import signal
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


MINIMAL = """
import sys, sockact
listeners = sockact.get_listeners({"http": sys.argv[1]})
with listeners, sockact.Upgrader(listeners) as upgrader:
    listeners.close_unclaimed()
    sockact.ready("serving")
    upgrader.wait()
"""


def _argv(app: str, port: int) -> list[str]:
    if app == "minimal":
        return [sys.executable, "-c", MINIMAL, f"127.0.0.1:{port}"]
    return [sys.executable, os.path.join(ROOT, "examples", "http_server.py"), "--listen", f"127.0.0.1:{port}"]


def _start(receiver: NotifyReceiver, argv: list[str]) -> tuple[int, float]:
    """(pid, spawn → READY=1 in seconds) for a server started the cheapest way (bare posix_spawn)."""
    env = child_env() | {"NOTIFY_SOCKET": receiver.address}
    devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
    actions = [(os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)]
    began = time.monotonic()
    pid = os.posix_spawn(sys.executable, argv, env, file_actions=actions)
    os.close(devnull)
    try:
        ready, _ = _await(receiver, "READY", time.monotonic() + 30)
    except BaseException:
        _stop(receiver, pid)
        raise
    return pid, ready - began


def _stop(receiver: NotifyReceiver, pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
        _gone(pid, receiver, time.monotonic() + 30)
    except ProcessLookupError:
        pass


def _one(receiver: NotifyReceiver, app: str) -> tuple[float, float, float]:
    """(bare start, signal → handed over, signal → old exited), in seconds. The bare start is the
    mean of one before the hand-over and one right after it, so neither order nor drift favours it."""
    started: list[int] = []
    try:
        pid, before = _start(receiver, _argv(app, free_port()))
        started.append(pid)
        signalled = time.monotonic()
        os.kill(pid, signal.SIGHUP)
        handed, fields = _await(receiver, "MAINPID", signalled + 30)
        started.append(int(fields["MAINPID"]))
        exited = _gone(pid, receiver, signalled + 30)
        other, after = _start(receiver, _argv(app, free_port()))
        started.append(other)
        return (before + after) / 2, handed - signalled, exited - signalled
    finally:
        for pid in started:
            _stop(receiver, pid)
        reap_exited()


def _ms(values: list[float], q: float = 0.5) -> str:
    values = sorted(values)
    return f"{values[int(q * (len(values) - 1))] * 1000:.1f}"


def run(args: argparse.Namespace) -> int:
    become_subreaper()  # successors outlive the server that spawned them: reap them here
    print(f"hand-over cost, median of {args.repeats} (each: a bare start, a SIGHUP, a bare start)\n")
    print("| app | bare start: spawn → READY=1 | SIGHUP → MAINPID=successor + READY=1 | SIGHUP → old exited |", end="")
    print(" sockact's share: hand-over − bare start, median (p90) | goal |")
    print("|---|---:|---:|---:|---:|---|")
    with NotifyReceiver() as receiver:
        for app in ("minimal", "examples/http_server.py"):
            bare, handed, exited = [], [], []
            for _ in range(args.repeats):
                a, b, c = _one(receiver, app)
                bare.append(a)
                handed.append(b)
                exited.append(c)
            share = [h - b for h, b in zip(handed, bare)]
            print(
                f"| {app} | {_ms(bare)} ms | {_ms(handed)} ms | {_ms(exited)} ms |"
                f" {_ms(share)} ms ({_ms(share, 0.9)} ms) | ≤ 5 ms (p90 ≤ 10 ms) |"
            )
    print("\n(minimal: get_listeners, an Upgrader and ready() — the smallest sockact app, so the least noise)")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("handover", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repeats", type=int, default=15)
    parser.set_defaults(run=run)
