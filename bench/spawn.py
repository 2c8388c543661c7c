"""How long it takes to start a successor with its listeners on fds 3.. and LISTEN_PID = its own pid.

Compares sockact's spawn path (posix_spawn with DUP2 actions + a /bin/sh trampoline that sets
LISTEN_PID=$$) with subprocess's fork/exec (vfork in CPython ≥ 3.10) through the same trampoline,
and with a bare posix_spawn that sets nothing (the floor). Each run starts ``/bin/true`` and waits for
it; the figure is the median wall time of a start-and-reap over alternating repeats.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sockact._env import successor_env, trampoline
from sockact._spawn import spawn

TRUE = "/bin/true"


def _sockact(fds: list[int]) -> None:
    child = spawn([TRUE], fds, [f"l{i}" for i in range(len(fds))], notify_socket="@bench")
    child.wait()
    child.close()


def _subprocess(fds: list[int]) -> None:
    env, pid_vars = successor_env(os.environ, [f"l{i}" for i in range(len(fds))], notify_socket="@bench")
    # fork/exec cannot move fds to 3.. without a pre-exec hook; pass them where they are (fair for timing)
    subprocess.run(["/bin/sh", "-c", trampoline(pid_vars), TRUE], env=env, pass_fds=fds, check=True)


def _bare(fds: list[int]) -> None:
    pid = os.posix_spawn(TRUE, [TRUE], os.environ)
    os.waitpid(pid, 0)


def run(args: argparse.Namespace) -> int:
    listeners = [socket.socket() for _ in range(args.fds)]
    for s in listeners:
        s.bind(("127.0.0.1", 0))
        s.listen()
    fds = [s.fileno() for s in listeners]
    ways: dict[str, Callable[[list[int]], None]] = {
        "sockact spawn (posix_spawn + sh trampoline)": _sockact,
        "subprocess fork/exec + sh trampoline": _subprocess,
        "bare posix_spawn, no trampoline (floor)": _bare,
    }
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, way in ways.items():  # alternate, so drift hits every way alike
            began = time.perf_counter()
            way(fds)
            samples[name].append((time.perf_counter() - began) * 1000)
    print(f"start-and-reap of /bin/true with {args.fds} listener fd(s), {args.repeats} alternating repeats\n")
    print("| way | median ms | p90 ms |")
    print("|---|---:|---:|")
    for name, values in samples.items():
        values.sort()
        print(f"| {name} | {statistics.median(values):.2f} | {values[int(len(values) * 0.9)]:.2f} |")
    for s in listeners:
        s.close()
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("spawn", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--fds", type=int, default=2)
    parser.set_defaults(run=run)
