"""Soak: many in-place upgrades of the stdlib example under load; does anything grow or leak?

Each upgrade goes through the PID file the way ``ExecReload=kill -HUP $MAINPID`` does. Just before
each upgrade the serving process is sampled (open fds, threads, RSS), so every generation is
measured at the same moment of its life. Also counted: failed requests, zombies left, and notify
receiver directories left behind in the runtime directory. Loopback only; bounded by --max-seconds.
"""

from __future__ import annotations

import argparse
import glob
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._util import ROOT, become_subreaper, child_env, free_port, reap_exited
from sockact._loadgen import Load, get


def _sample(pid: int) -> tuple[int, int, int]:
    """(open fds, threads, RSS in KiB) of ``pid``."""
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    threads = rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    return fds, threads, rss


def _receiver_dirs() -> set[str]:
    return {path for d in {"/run", tempfile.gettempdir()} for path in glob.glob(os.path.join(d, "sockact-notify-*"))}


def _wait_for_new_main(pidfile: str, port: int, old: int, deadline: float) -> int:
    while time.monotonic() < deadline:
        try:
            with open(pidfile) as f:
                main = int(f.read())
        except (OSError, ValueError):
            main = old
        if main != old:
            try:
                if get("127.0.0.1", port, timeout=5)[1] == main:
                    return main
            except OSError:
                pass
        time.sleep(0.01)
    raise TimeoutError(f"no successor of pid {old} took over")


def run(args: argparse.Namespace) -> int:
    become_subreaper()
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="sockact-soak-")
    pidfile = os.path.join(workdir, "app.pid")
    dirs_before = _receiver_dirs()
    env = child_env()
    argv = [sys.executable, os.path.join(ROOT, "examples", "http_server.py"), "--listen", f"127.0.0.1:{port}"]
    argv += ["--pidfile", pidfile, "--drain-timeout", "5"]
    with open(os.path.join(workdir, "server.log"), "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + args.max_seconds
    samples: list[tuple[int, int, int]] = []
    main = proc.pid
    done = 0
    try:
        _wait_for_new_main(pidfile, port, -1, deadline)
        with Load("127.0.0.1", port, workers=4, max_seconds=args.max_seconds) as load:
            for _ in range(args.upgrades):
                if time.monotonic() > deadline:
                    break
                samples.append(_sample(main))
                os.kill(main, signal.SIGHUP)
                main = _wait_for_new_main(pidfile, port, main, deadline)
                reap_exited()
                done += 1
            result = load.stop()
    finally:
        os.kill(main, signal.SIGTERM)
        end = time.monotonic() + 30
        while time.monotonic() < end:
            reap_exited()
            try:
                os.kill(main, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    time.sleep(0.2)  # the last process's receiver directory cleanup, before counting leftovers
    zombies = sum(1 for line in _children_states() if line == "Z")
    stale = len(_receiver_dirs() - dirs_before)  # new since the start and still there
    print(f"soak: {done} upgrades of examples/http_server.py under load (4 workers)\n")
    print("| serving process, sampled before its upgrade | first | median | last | max |")
    print("|---|---:|---:|---:|---:|")
    for index, label in enumerate(("open fds", "threads", "RSS KiB")):
        values = [s[index] for s in samples] or [0]
        median = int(statistics.median(values))
        print(f"| {label} | {values[0]} | {median} | {values[-1]} | {max(values)} |")
    print()
    print("| outcome | value |")
    print("|---|---:|")
    print(f"| requests | {result.requests} |")
    print(f"| failed | {result.failed} |")
    print(f"| zombies left | {zombies} |")
    print(f"| notify receiver directories left | {stale} |")
    for error in result.errors[:10]:  # what failed, never only how many
        print(f"- {error}")
    return 0 if result.failed == 0 and zombies == 0 and stale == 0 else 1


def _children_states() -> list[str]:
    states = []
    for task in os.listdir(f"/proc/{os.getpid()}/task"):
        with open(f"/proc/{os.getpid()}/task/{task}/children") as f:
            for pid in f.read().split():
                try:
                    with open(f"/proc/{pid}/stat") as stat:
                        states.append(stat.read().rsplit(")", 1)[1].split()[0])
                except FileNotFoundError:
                    pass
    return states


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("soak", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--upgrades", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=600)
    parser.set_defaults(run=run)
