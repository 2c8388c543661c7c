"""The fault matrix of tests/test_faults.py, each case repeated --repeat times in a row (CI runs 5)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

from bench._util import ROOT, child_env


def run(args: argparse.Namespace) -> int:
    env = {**child_env(), "SOCKACT_FAULT_REPEATS": str(args.repeat)}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0"]
    argv += ["-o", "timeout=1800", os.path.join(ROOT, "tests", "test_faults.py")]
    out = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True)
    print(f"fault matrix, each case x{args.repeat} (tests/test_faults.py)\n")
    print("| case | seconds |")
    print("|---|---:|")
    for line in out.stdout.splitlines():
        if " call " in line and "test_faults.py::" in line:
            seconds, _, name = line.partition("s call")
            print(f"| {name.strip().split('::')[-1]} | {float(seconds):.1f} |")
    print(f"\n{out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-500:]}")
    return out.returncode


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("faults", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repeat", type=int, default=20)
    parser.set_defaults(run=run)
