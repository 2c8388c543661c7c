"""The benchmark programs still run (tiny sizes); their timings are never asserted."""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT, child_env


def bench(*args: str) -> str:
    """Run ``python -m bench ARGS`` (bounded); its stdout, once it exited 0."""
    out = subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-2000:])
    return out.stdout


def test_bench_spawn_runs() -> None:
    assert "| sockact spawn (posix_spawn + sh trampoline) |" in bench("spawn", "--repeats", "3")


def test_bench_soak_runs() -> None:
    out = bench("soak", "--upgrades", "3", "--max-seconds", "60")
    assert "| failed | 0 |" in out and "| notify receiver directories left | 0 |" in out, out


def test_bench_startup_runs() -> None:
    out = bench("startup", "--repeats", "2", "--fds", "20")
    assert "| modules asyncio/typing imported by it | none | none |" in out, out
    assert "| 20 inherited fds parsed, checked and adopted |" in out


def test_bench_reload_runs() -> None:
    out = bench("reload", "--reloads", "1", "--modes", "inprocess,naive", "--max-seconds", "60")
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert "| inprocess | 1 |" in rows["inprocess"] and "| naive | 1 |" in rows["naive"], out


def test_bench_overhead_runs() -> None:
    out = bench("overhead", "--rounds", "1", "--seconds", "1")
    assert "| ratio (goal ≥ 0.99) |" in out, out
