"""The benchmark programs still run (tiny sizes); their timings are never asserted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import need_peer, need_tool
from helpers import ROOT, child_env
from sandbox import available


def bench(*args: str, timeout: float = 120) -> str:
    """Run ``python -m bench ARGS`` (bounded); its stdout, once it exited 0."""
    argv = [sys.executable, "-m", "bench", *args]
    out = subprocess.run(argv, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (out.stdout[-3000:], out.stderr[-3000:])
    return out.stdout


def _rows(out: str) -> dict[str, str]:
    """Each table row by its first cell; the first table's row where two tables share a key."""
    rows: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("| "):
            rows.setdefault(line.split("|")[1].strip(), line)
    return rows


@pytest.mark.timeout(420)  # every bench, each once: 100-120 s, over the suite's 120 s default on a slow day
def test_bench_all_runs_every_figure(tmp_path: object) -> None:
    """``python -m bench all --quick``: every bench of issue 7 and every reload mode, each once."""
    why = available()
    need_peer(f"a real systemd sandbox for the systemd modes ({why})", why is None)
    why = available("257")
    need_peer(f"the systemd 257 box for bench boxes ({why})", why is None)
    need_tool("wrk")
    need_tool("systemd-socket-activate")
    png = os.path.join(str(tmp_path), "timeline.png")
    out = bench("all", "--quick", "--png", png, timeout=400)
    sections = {part.split(" — ")[0]: part for part in out.split("\n## ")[1:]}
    rows = _rows(sections["Reloads under continuous load, sockact and its peers"])
    sockact_modes = ["inprocess", "supervisor", "systemd", "uvicorn", "hypercorn", "aiohttp", "tornado", "waitress"]
    for mode in [*sockact_modes, "gunicorn"]:
        assert rows[mode].startswith(f"| {mode} | sockact | 1 |"), out
    for mode in ["naive", "gunicorn-usr2", "uvicorn-restart", "systemd-restart"]:
        assert rows[mode].startswith(f"| {mode} | peer | 1 |"), out
    assert rows["start-only"].startswith("| start-only | baseline | 1 |"), out
    assert "start-only (the same server's start-up beside the serving one, no hand-over): " in out
    # gunicorn's USR2 under socket activation: its new master fails (the table says why)
    assert rows["gunicorn-usr2-activated"].startswith("| gunicorn-usr2-activated | peer | 0 |"), out
    assert "gunicorn-usr2-activated: reload 1 failed" in out
    phases = sections["Reloads under continuous load, sockact and its peers"].split("where the reload windows' latency")
    assert len(phases) == 2, out
    phase_rows = _rows(phases[1])
    for mode in [*sockact_modes, "gunicorn"]:
        assert len(phase_rows[mode].split("|")) == 8, phase_rows  # mode, steady and the four phases
    assert "| minimal |" in out and "sockact's share: hand-over − bare start" in out
    assert "| sockact spawn (posix_spawn + sh trampoline) |" in out
    overhead = _rows(sections["Steady overhead (wrk)"])
    assert overhead["http.server"].endswith("| ≥ 0.99 |") and overhead["uvicorn"].endswith("| ≥ 0.99 |")
    counted = sections["Steady overhead (wrk)"].split("instructions per request, callgrind")
    assert len(counted) == 2, out  # valgrind ran both servers on both sides
    assert len([row for row in _rows(counted[1]).values() if row.endswith("| ≥ 0.99 |")]) == 2, out
    assert "| modules asyncio/typing imported by it | none | none |" in out
    assert "| idle connections reset | 0 | 0 |" in out and "| reconnects answered by the successor | 200 of 200" in out
    boxes = sections["`systemctl reload` against a bare start, real systemd 252 and 257"].splitlines()
    for box in ("252", "257"):
        for unit in ("stdlib-inprocess", "stdlib-supervise"):
            row = next(line for line in boxes if line.startswith(f"| {box} | bench-{unit} |"))
            assert row.endswith("| ≤ 1.2 | 0 of 1 | 0 |"), row  # a reload that served, none stale, none failed
    with open(png, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_bench_soak_runs() -> None:
    out = bench("soak", "--upgrades", "3", "--max-seconds", "60")
    assert "| failed | 0 |" in out and "| notify receiver directories left | 0 |" in out, out
