"""The README's demo runs and reports zero failed requests."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import ROOT, child_env


def test_demo_reloads_without_failures() -> None:
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "demo.py"), "--reloads", "3"],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| ") and line[2].isdigit())
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[0]) > 0 and cells[1] == "0" and cells[3] == "4", row  # requests, failed, distinct pids
