"""Every figure of issue 7 in one run (``python -m bench all``), each bench in its own process, one
after another; prints each table with its goal and, with --write, puts the run into
docs/benchmarks.md (machine facts, commands, tables) and the timeline PNG beside it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from typing import Any

from bench._util import ROOT, child_env

#: (title, bench arguments at full size, at --quick size)
STEPS: list[tuple[str, list[str], list[str]]] = [
    (
        "Reloads under continuous load, sockact and its peers",
        ["reload", "--reloads", "100", "--integration-reloads", "30", "--peer-reloads", "10", "--plot", "{png}"],
        [
            "reload",
            "--reloads",
            "1",
            "--peer-reloads",
            "1",
            "--plot",
            "{png}",
            "--reload-timeout",
            "8",
            "--steady",
            "0.3",
        ],
    ),
    ("Hand-over cost against a bare start", ["handover", "--repeats", "21"], ["handover", "--repeats", "2"]),
    (
        "Spawning a successor: posix_spawn + trampoline against fork/exec",
        ["spawn", "--repeats", "100"],
        ["spawn", "--repeats", "3"],
    ),
    (
        "Steady overhead (wrk)",
        ["overhead", "--rounds", "8", "--seconds", "3", "--instructions", "2000"],
        ["overhead", "--rounds", "1", "--seconds", "1", "--instructions", "40"],
    ),
    ("Start-up and scale", ["startup"], ["startup", "--repeats", "2", "--fds", "50"]),
    (
        "`systemctl reload` against a bare start, real systemd 252 and 257",
        ["boxes", "--repeats", "11"],
        ["boxes", "--repeats", "1"],
    ),
    (
        "10,000 idle keep-alive connections across an upgrade",
        ["keepalive", "--connections", "10000"],
        ["keepalive", "--connections", "200"],
    ),
]


def _machine() -> str:
    cores = os.cpu_count()
    systemd = subprocess.run(["systemctl", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    distro = ""
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return (
        f"{cores} cores, Linux {platform.release()}, {distro}, {systemd or 'no systemd'},"
        f" CPython {platform.python_version()} ({sys.executable})"
    )


def run(args: argparse.Namespace) -> int:
    png = os.path.join(ROOT, "docs", "reload-timeline.png") if args.write else args.png
    began = time.monotonic()
    machine = _machine()
    print(f"machine: {machine}\n")
    sections = []
    failed = []
    for title, full, quick in STEPS:
        argv = [a.replace("{png}", png) for a in (quick if args.quick else full)]
        print(f"## {title} — python -m bench {' '.join(argv)}\n", flush=True)
        step_began = time.monotonic()
        out = subprocess.run(
            [sys.executable, "-m", "bench", *argv], cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, text=True
        )
        took = time.monotonic() - step_began
        print(out.stdout, flush=True)
        print(f"({took:.0f} s)\n", flush=True)
        if out.returncode != 0:
            failed.append(title)
        shown = " ".join(a.replace(png, "docs/reload-timeline.png") for a in argv)
        text = out.stdout.strip().replace(ROOT + os.sep, "")
        sections.append(f"## {title}\n\n`python -m bench {shown}` ({took:.0f} s)\n\n{text}\n")
    total = time.monotonic() - began
    print(f"all benches: {total / 60:.1f} min (goal: under 10)")
    if args.write:
        _write(machine, sections, total)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _write(machine: str, sections: list[str], total: float) -> None:
    today = datetime.date.today().isoformat()
    head = f"""# Benchmarks — the last `python -m bench all --write`

Written by `python -m bench all --write` on {today}, in {total / 60:.1f} minutes (goal: under 10).
Machine: {machine}. One machine, also doing other work: medians, not promises. The venv's interpreter
(the pyenv shim adds ~55 ms to every start), loopback only, every loop bounded. Tests only check that
the benches still run (`tests/test_bench.py`), never a timing. What the figures mean, and where sockact
falls short of a goal, is in the README's "Benchmarks" section; docs/RELIABILITY.md has the soak and
fault benches. Clients that never retry measured the reload figures: the built-in generator (a
request lost on a reused keep-alive connection is failed; "retry would survive" counts those a
client retrying once would have got answered) and, in the same run, wrk (16 keep-alive connections,
16 sending `Connection: close`).

![requests/s and failures per 100 ms across reloads: sockact, naive restart, gunicorn USR2](reload-timeline.png)

"""
    with open(os.path.join(ROOT, "docs", "benchmarks.md"), "w") as f:
        f.write(head + "\n".join(sections))
    print("written: docs/benchmarks.md, docs/reload-timeline.png")


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("all", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--write", action="store_true", help="write docs/benchmarks.md and docs/reload-timeline.png")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that every bench runs")
    parser.add_argument("--png", default="reload-timeline.png", help="the timeline's path without --write")
    parser.set_defaults(run=run)
