"""`systemctl reload` round trip beside a bare `systemctl start` of the same unit, inside each real
systemd box of the test suite (tests/sandbox.py: the host's 252, Debian 13's 257).

For each box, each app (``examples/http_server.py``, the lightest start there is, and
``examples/uvicorn_app.py`` where the box runs this venv's interpreter) and each unit mode
(``inprocess``: the PID-file hand-over; ``supervise``: under ``sockact run``), a unit pair from
``sockact units``, no load:

* bare start — ``systemctl stop`` the service (its socket stays), then ``systemctl start`` it: time to
  the command's return (Type=notify: READY=1 was processed), and to the first answer;
* reload — ``systemctl reload`` once the predecessors have exited: time to the command's return, and
  to the first answer from a new pid;
  ``stale`` counts the reloads whose first request *after* the return was still answered by an old pid
  (the contract of issue 14 wants 0), ``failed`` the reloads whose systemctl exited non-zero or that
  brought no new pid (the story in ``errors``; such a reload has no serving time).

Both commands go through the box's own systemctl via nsenter (a few ms, the same for both). Reusable:
:func:`time_reload_and_start` takes any booted ``Sandbox`` and unit.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from bench._util import ROOT
from bench.reload import ReloadFailed, _answering
from sockact._loadgen import get

MODES = ("inprocess", "supervise")


@dataclass
class RoundTrips:
    """Seconds per repeat; see the module docstring for what each list times."""

    box: str
    unit: str
    start_returned: list[float] = field(default_factory=list)
    start_serving: list[float] = field(default_factory=list)
    reload_returned: list[float] = field(default_factory=list)
    reload_serving: list[float] = field(default_factory=list)
    stale: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def unit_pair(
    name: str, port: int, python: str, log: str, mode: str = "inprocess", app: str = "http_server.py"
) -> dict[str, str]:
    """``sockact units`` output for ``examples/app`` on ``port``, run by ``python`` inside the box,
    logging to ``log``; with no start rate limit, so that repeated bare starts are not refused."""
    from sockact._units import render_units, sockact_command

    server = [python, os.path.join(ROOT, "examples", app), "--listen", f"127.0.0.1:{port}"]
    units = render_units(
        name,
        [("http", f"127.0.0.1:{port}")],
        [*server, "--drain-timeout", "10"],
        mode=mode,
        drain_timeout=10,
        # The box's interpreter may not write .pyc files into this checkout (257: a read-only bind, and
        # another Python version): a cache of its own, filled by the untimed first start.
        environment={"PYTHONPATH": ROOT, "PYTHONPYCACHEPREFIX": "/var/tmp/sockact-bench-pycache"},
        sockact_command=sockact_command(python),  # the console script where `sockact units` would use it
        # Unhardened: the bench runs this checkout's interpreter, which may live where a dynamic user
        # cannot reach (a venv under /root); the sandbox's cost falls on a start and a reload alike.
        harden=False,
    )
    service = units[f"{name}.service"].replace("[Unit]\n", "[Unit]\nStartLimitIntervalSec=0\n")
    logs = f"[Service]\nStandardOutput=append:{log}\nStandardError=append:{log}\n"
    units[f"{name}.service"] = service.replace("[Service]\n", logs)
    return units


def _answer(port: int, not_pids: set[int], deadline: float) -> int:
    """The pid of the first 200 on ``port`` from none of ``not_pids``; TimeoutError after ``deadline``."""
    try:
        return _answering(port, not_pids, deadline, lambda: None)
    except ReloadFailed as exc:
        raise TimeoutError(f"on 127.0.0.1:{port}, other than pids {sorted(not_pids)}: {exc}") from exc


def _wait_gone(box: Any, pids: set[int], deadline: float) -> None:
    """Wait (bounded) until none of ``pids`` (as the box sees them) is alive."""
    for pid in pids:
        while box.run("kill", "-0", str(pid), check=False).returncode == 0 and time.monotonic() < deadline:
            time.sleep(0.01)


def time_reload_and_start(
    box: Any, unit: str, port: int, repeats: int, timeout: float = 30, settle: bool = True
) -> RoundTrips:
    """Time ``repeats`` bare starts, then ``repeats`` reloads, of ``unit`` (a .socket/.service pair
    loaded in the booted ``box``, the socket on 127.0.0.1:``port``). Leaves the service running.

    With ``settle`` each reload waits (untimed) until the predecessors have exited; without it the next
    reload follows as soon as the new pid serves, which today loses reloads to issue 14's stale
    $MAINPID race (the predecessor still draining). Raises TimeoutError when no process answers within
    ``timeout`` seconds of a start; a reload that brings no new pid within ``timeout`` is counted in
    ``failed`` with its story in ``errors``."""
    out = RoundTrips(box.box, unit)
    service = f"{unit}.service"
    box.systemctl("start", f"{unit}.socket")
    box.systemctl("start", service)  # untimed: fills the bytecode cache, as a deployed service's is
    _answer(port, set(), time.monotonic() + timeout)
    for _ in range(repeats):
        box.systemctl("stop", service)
        began = time.monotonic()
        box.systemctl("start", service)
        out.start_returned.append(time.monotonic() - began)
        pid = _answer(port, set(), began + timeout)
        out.start_serving.append(time.monotonic() - began)
    pids = {pid}
    for _ in range(repeats):
        if settle:
            _wait_gone(box, pids - {pid}, time.monotonic() + timeout)
        began = time.monotonic()
        done = box.systemctl("reload", service, check=False)
        out.reload_returned.append(time.monotonic() - began)
        try:
            first = get("127.0.0.1", port, timeout=5)[1]
        except OSError:
            first = 0
        if done.returncode != 0:  # no new code is coming (issue 14): counted, and the next repeat goes on
            out.failed += 1
            out.errors.append(f"exit {done.returncode}: {done.stderr.strip()}")
            continue
        out.stale += first in pids  # (a failed reload above is not counted here)
        try:
            new = first if first and first not in pids else _answer(port, pids, began + timeout)
        except TimeoutError as exc:  # exit 0, yet no new code: counted as failed too
            out.failed += 1
            out.errors.append(f"exit 0, then {exc}")
            continue
        out.reload_serving.append(time.monotonic() - began)
        pids.add(new)
        pid = new
    return out


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.0f}" if values else "—"


def table(runs: list[RoundTrips], repeats: int) -> None:
    print(f"`systemctl reload` against a bare `systemctl start`, no load, median of {repeats} (ms)\n")
    print(
        "| systemd | unit | start → returned | start → serving | reload → returned | reload → new pid serving |", end=""
    )
    print(" reload ÷ start (returned) | goal | stale after return | failed |")
    print("|---|---|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in runs:
        ratio = (
            f"{statistics.median(r.reload_returned) / statistics.median(r.start_returned):.2f}"
            if r.reload_returned and r.start_returned
            else "—"
        )
        print(
            f"| {r.box} | {r.unit} | {_ms(r.start_returned)} | {_ms(r.start_serving)} | {_ms(r.reload_returned)} |"
            f" {_ms(r.reload_serving)} | {ratio} | ≤ 1.2 | {r.stale} of {len(r.reload_serving)} | {r.failed} |"
        )
    for r in runs:
        for error in r.errors:
            print(f"- {r.box} {r.unit}: failed reload: {error}")


def run(args: argparse.Namespace) -> int:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sandbox: Any = importlib.import_module("sandbox")  # the test suite's recipes: private namespaces, own units
    from bench._util import free_port

    runs = []
    skipped = []
    apps = {"http_server.py": "stdlib", "uvicorn_app.py": "uvicorn"}
    for version in args.boxes.split(","):
        why = sandbox.available(version)
        if why is not None:
            skipped.append(f"{version}: the box cannot run here ({why}): no rows")
            continue
        python = sandbox.PYTHON[version]
        workdir = tempfile.mkdtemp(prefix=f"sockact-bench-{version}-")
        try:
            names = {}
            units: dict[str, str] = {}
            for app, short in apps.items():
                if short == "uvicorn" and python != sys.executable:
                    skipped.append(f"{version}: the box runs its own {python}, without uvicorn: no uvicorn rows")
                    continue
                for mode in MODES:
                    name, port = f"bench-{short}-{mode}", free_port()
                    names[name] = port
                    units.update(unit_pair(name, port, python, os.path.join(workdir, f"{name}.log"), mode, app))
            with sandbox.Sandbox(workdir, units, sandbox.keep_for(version), box=version) as box:
                for name, port in names.items():
                    runs.append(time_reload_and_start(box, name, port, args.repeats, settle=not args.back_to_back))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    table(runs, args.repeats)
    for line in skipped:
        print(f"- {line}")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("boxes", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--boxes", default="252,257", help="systemd versions, comma-separated")
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument(
        "--back-to-back", action="store_true", help="reload as soon as the new pid serves (no settling)"
    )
    parser.set_defaults(run=run)
