"""The benchmark programs still run (tiny sizes); their timings are never asserted."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, child_env


def test_bench_spawn_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "spawn", "--repeats", "3"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "| sockact spawn (posix_spawn + sh trampoline) |" in out.stdout


def test_bench_soak_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "soak", "--upgrades", "3", "--max-seconds", "60"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "| failed | 0 |" in out.stdout and "| notify receiver directories left | 0 |" in out.stdout, out.stdout


def test_bench_startup_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench", "startup", "--repeats", "2", "--fds", "20"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "| modules asyncio/typing imported by it | none | none |" in out.stdout, out.stdout
    assert "| 20 inherited fds parsed, checked and adopted |" in out.stdout


def test_bench_reload_runs() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "reload",
            "--reloads",
            "1",
            "--modes",
            "inprocess,naive",
            "--max-seconds",
            "60",
        ],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    rows = {line.split("|")[1].strip(): line for line in out.stdout.splitlines() if line.startswith("| ")}
    assert "| inprocess | 1 |" in rows["inprocess"] and "| naive | 1 |" in rows["naive"], out.stdout
