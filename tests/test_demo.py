"""`sockact demo` — the README's first command — runs, reports zero failed requests, draws its timeline."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from helpers import ROOT, child_env


@pytest.mark.parametrize("mode", ["inprocess", "supervise"])
def test_demo_reloads_without_failures_and_plots(tmp_path: object, mode: str) -> None:
    png = os.path.join(str(tmp_path), "out.png")
    out = subprocess.run(
        [sys.executable, "-m", "sockact", "demo", "--reloads", "5", "--seconds", "2", "--mode", mode, "--plot", png],
        env=child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("| ") and line[2].isdigit())
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert int(cells[0]) > 0 and cells[1] == "0" and cells[3] == "6", row  # requests, failed, distinct pids
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(png) > 10_000


def test_demo_argument_errors_are_one_line() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "sockact", "demo", "--reloads", "-1"],
        env=child_env(),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "--reloads" in out.stderr and "Traceback" not in out.stderr
