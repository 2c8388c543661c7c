"""Reloads under continuous load, per mode, sockact's and its peers' side by side: requests, failures,
and latency inside reload windows against steady state; optionally a PNG timeline.

sockact's modes (each serves the same endpoints on loopback; --reloads reloads each):

* ``inprocess`` — ``examples/http_server.py``: SIGHUP, the in-process upgrader hands over.
* ``supervisor`` — the same server under ``sockact run``: SIGHUP to sockact, a new child, SIGTERM old.
* ``systemd`` — the same server from a generated unit pair under a real systemd booted in a private
  namespace (tests/sandbox.py): ``systemctl reload``, PID-file hand-over.
* ``uvicorn``, ``hypercorn``, ``aiohttp``, ``tornado``, ``waitress`` — ``examples/<server>_app.py``
  through ``sockact.integrations``; ``gunicorn`` — gunicorn (gthread) under ``sockact run``.

The peers, same app logic, same load:

* ``naive`` — SIGTERM the server, wait for it to exit, start it again (no socket passing).
* ``gunicorn-usr2`` — gunicorn's binary upgrade as its docs give it: USR2, wait until a new worker
  answers, then TERM the old master (graceful). ``gunicorn-usr2-activated`` — the same, gunicorn
  started by ``systemd-socket-activate``.
* ``uvicorn-restart`` — ``uvicorn --workers 2`` (with one worker there is no supervisor to restart
  it): SIGHUP makes the supervisor start each new worker, then stop its old one.
* ``systemd-restart`` — the systemd socket unit holds the socket, ``systemctl restart`` stops the
  service and starts it again (connections wait in the backlog; no hand-over).

The baseline, same load:

* ``start-only`` — no reload at all: a second copy of the stdlib server starts beside the serving
  one (on a port of its own), answers once, and is killed. The serving process is never touched, so
  its window is what the successor's start-up alone costs the clients of a 2-core machine (an
  interpreter, imports, threads: CPU taken from the serving process and the clients); the sockact
  modes' windows are that plus the hand-over. Its window runs from the copy's start until its
  READY=1, plus 0.2 s. It gets --integration-reloads.

A reload window runs from the signal until a new pid answers and the mode's procedure is over (for
gunicorn: the old master exited and the new one promoted itself; for uvicorn: every old worker
exited), plus 0.2 s; a request that started or ended in one counts as "reload". A reload that brings
no new pid within --reload-timeout ends that mode's reloads (the table says why); a server that does
not answer within twice that after its start ends the mode (each try may take 2 s more). Goals (issues 7,
18): 0 failed for sockact; p99 in reload windows at most 1.25 x steady p99, and at most gunicorn
USR2's ratio in the same run; the slowest request in any reload window at most 2 x steady p99.9.

A second table splits each sockact mode's window latency by phase, to show where it comes from:
requests begun while the successor starts (answered by the old process, or already by the new one)
and those begun after a new pid first answered (the rest of the window; the old one's last
responses while it drains).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench._util import ROOT, become_subreaper, child_env, children_of, free_port, reap_exited, stop, wait_gone
from sockact._loadgen import Load, LoadResult, get
from sockact._poll import readable
from sockact._wrk import Wrk, WrkResult

SERVERS = ["uvicorn", "hypercorn", "aiohttp", "tornado", "waitress"]
SOCKACT = ["inprocess", "supervisor", "systemd", *SERVERS, "gunicorn"]
PEERS = ["naive", "gunicorn-usr2", "gunicorn-usr2-activated", "uvicorn-restart", "systemd-restart"]
BASELINES = ["start-only"]
TAIL = 0.2  # of each reload window after the reload is over
GAP = 0.1  # steady state between one window and the next signal
EXAMPLES = os.path.join(ROOT, "examples")
PY = sys.executable


class ReloadFailed(Exception):
    """A reload brought no new serving pid; the message says what happened."""


@dataclass
class Run:
    mode: str
    result: LoadResult = field(default_factory=LoadResult)
    windows: list[tuple[float, float]] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)  # per window: when a new pid first answered
    reloads: int = 0
    note: str = ""
    wrk: dict[str, WrkResult | str] = field(default_factory=dict)  # "keep-alive", "close" → result or why none


def _answering(
    port: int, not_pids: set[int], deadline: float, alive: Callable[[], str | None], load: Load | None = None
) -> int:
    """The pid of the first server answering on ``port`` that is not in ``not_pids``.

    Under ``load``, its own answers tell (:meth:`Load.expect_new`: every answer is checked, in steady
    state too), and a request of ours goes out only every 50 ms. Polling with a new connection every
    few ms added load — a connection and a server thread each — and so did looking at the load's
    answers every 2 ms from this process, whose threads are the load: both only inside reload
    windows, which is what the table compares."""
    if load is not None:
        load.expect_new(not_pids)
    look = ask = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= ask:
            try:
                status, pid = get("127.0.0.1", port, timeout=2)
                if status == 200 and pid not in not_pids:
                    return pid
            except OSError:
                pass
            ask = time.monotonic() + (0.05 if load is not None else 0.0)
        if time.monotonic() >= look:  # alive() may be slow (systemctl): every 0.25 s
            why = alive()
            if why is not None:
                raise ReloadFailed(why)
            look = time.monotonic() + 0.25
        if load is None:
            time.sleep(0.005)
        elif new := load.wait_new(max(0.0, min(ask, look, deadline) - time.monotonic())):
            return new
    raise ReloadFailed(f"no new pid answered within the deadline; {alive() or 'the old one still serves'}")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _tail(path: str) -> str:
    """The last line of a log that looks like an error, for the table's note."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if "Error" in line or "error" in line]
    return (errors or lines or [""])[-1][:160]


class Target:
    """One server under test: started once, reloaded --reloads times, then stopped (only the pids
    it started or that its reloads produced, by pid)."""

    def __init__(self, mode: str, port: int, workdir: str) -> None:
        self.mode, self.port, self.workdir = mode, port, workdir
        self.log = os.path.join(workdir, f"{mode}.log")
        self.procs: list[subprocess.Popen[bytes]] = []
        self.main = 0  # the pid a reload signal goes to

    def argv(self) -> list[str]:
        stdlib = ("inprocess", "supervisor", "naive", "start-only")
        name = "http_server.py" if self.mode in stdlib else f"{self.mode}_app.py"
        return [PY, os.path.join(EXAMPLES, name), "--listen", f"127.0.0.1:{self.port}", "--drain-timeout", "10"]

    def popen(self, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(argv, env={**child_env(), **env}, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self.main = self.popen(self.argv()).pid

    def trouble(self) -> str | None:
        """Why no new pid can come any more (the main process exited), or None."""
        if self.procs and self.procs[0].poll() is not None and self.main == self.procs[0].pid:
            return f"pid {self.main} exited with {self.procs[0].returncode}: {_tail(self.log)}"
        return None

    def reload(self) -> None:
        os.kill(self.main, signal.SIGHUP)

    def new_pid(self, pids: set[int], deadline: float, load: Load) -> int:
        """The first pid not in ``pids`` to answer after a reload (ReloadFailed if none comes)."""
        return _answering(self.port, pids, deadline, self.trouble, load)

    def took_over(self, pid: int) -> None:
        self.main = pid  # in-process: the successor is the new main process

    def pids(self) -> set[int]:
        return {self.main, *(p.pid for p in self.procs)}

    def close(self) -> None:
        reaped = {p.pid for p in self.procs if p.poll() is not None}  # their pids may be another's by now
        for pid in self.pids() - reaped:
            _signal(pid, signal.SIGTERM)
        for proc in self.procs:
            stop(proc, 30)  # the SIGTERM again is harmless: it is draining already, or gone


class Supervisor(Target):
    def argv(self) -> list[str]:
        listen = ["--listen", f"http=127.0.0.1:{self.port}", "--drain-timeout", "10"]
        if self.mode == "gunicorn":
            server = [PY, "-m", "gunicorn", *_gunicorn_options(self.workdir), "waitress_app:app"]
        else:
            server = super().argv()
        return [PY, "-m", "sockact", "run", *listen, "--", *server]

    def took_over(self, pid: int) -> None:
        pass  # sockact run stays the main process


class StartOnly(Target):
    """The baseline: each "reload" starts a copy of the same server on a port of its own and waits
    for its READY=1 (on a notify socket of ours: polling the copy with requests would load the
    bench's own process inside the window only), then kills it; the serving process goes on alone."""

    def start(self) -> None:
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.notify.bind(f"\0sockact-bench-{os.getpid()}-{self.port}")
        super().start()

    def reload(self) -> None:
        argv = self.argv()
        argv[argv.index("--listen") + 1] = f"127.0.0.1:{free_port()}"
        self.copy = self.popen(argv, NOTIFY_SOCKET="@" + self.notify.getsockname()[1:].decode())

    def new_pid(self, pids: set[int], deadline: float, load: Load) -> int:
        while time.monotonic() < deadline:
            if readable([self.notify.fileno()], 0.25):
                if b"READY=1" in self.notify.recv(4096).split(b"\n"):  # ancillary fds, if any, are dropped
                    return self.copy.pid
            elif self.copy.poll() is not None:
                raise ReloadFailed(f"the copy exited with {self.copy.returncode}: {_tail(self.log)}")
        raise ReloadFailed("the copy sent no READY=1 within the deadline")

    def took_over(self, pid: int) -> None:
        self.copy.kill()
        self.copy.wait(30)

    def close(self) -> None:
        super().close()
        if hasattr(self, "notify"):
            self.notify.close()


class Naive(Target):
    def reload(self) -> None:
        old = self.procs[-1]
        old.send_signal(signal.SIGTERM)
        old.wait(30)
        self.main = self.popen(self.argv()).pid

    def took_over(self, pid: int) -> None:
        pass


def _gunicorn_options(workdir: str) -> list[str]:
    return [
        "--chdir",
        EXAMPLES,
        "--worker-class",
        "gthread",
        "--threads",
        "4",
        "--graceful-timeout",
        "10",
        "--control-socket",
        os.path.join(workdir, f"gunicorn-{time.monotonic_ns()}.ctl"),
    ]


class GunicornUSR2(Target):
    """gunicorn's binary upgrade: USR2 → a new master (a child of the old one) with new workers; once
    one answers, TERM to the old master. The master is the worker's parent."""

    def argv(self) -> list[str]:
        pidfile = os.path.join(self.workdir, f"{self.mode}.pid")
        # The console script, not `python -m gunicorn`: USR2 re-execs argv, and `python .../gunicorn/__main__.py`
        # puts gunicorn's own package first on sys.path, where its `http` shadows the stdlib's.
        argv = [os.path.join(os.path.dirname(PY), "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--pid", pidfile]
        argv += [*_gunicorn_options(self.workdir), "waitress_app:app"]
        if self.mode.endswith("-activated"):
            activate = ["systemd-socket-activate", "-l", f"127.0.0.1:{self.port}", "--fdname=http"]
            return [*activate, "-E", f"PYTHONPATH={ROOT}", *argv]  # it execs gunicorn: same pid
        return argv

    def reload(self) -> None:
        self.old_master = self.main
        os.kill(self.main, signal.SIGUSR2)

    def trouble(self) -> str | None:
        why = super().trouble()
        if why is None and "Traceback" in _read(self.log)[self._seen :]:
            return f"the new master crashed: {_tail(self.log)}"
        return why

    def took_over(self, pid: int) -> None:
        self.main = _parent(pid)  # the new worker's master
        promoted = _read(self.log).count("Master has been promoted")
        os.kill(self.old_master, signal.SIGTERM)
        # Part of the procedure: the new master ignores the next USR2 ("Parent exists") until the old
        # one exited and it promoted itself (it looks once a second).
        wait_gone(self.old_master, 30)
        deadline = time.monotonic() + 10
        while _read(self.log).count("Master has been promoted") == promoted and time.monotonic() < deadline:
            time.sleep(0.02)
        self._seen = len(_read(self.log))

    def start(self) -> None:
        self._seen = 0
        super().start()


class UvicornRestart(Target):
    """uvicorn's supervisor (it needs --workers 2 to be one): SIGHUP replaces each worker in turn,
    the new one first. The reload is over when every old worker has exited."""

    def argv(self) -> list[str]:
        listen = ["--host", "127.0.0.1", "--port", str(self.port)]
        return [
            PY,
            "-m",
            "uvicorn",
            "--workers",
            "2",
            "--app-dir",
            EXAMPLES,
            "--no-access-log",
            *listen,
            "uvicorn_app:app",
        ]

    def reload(self) -> None:
        self.old_workers = self.workers()
        super().reload()

    def workers(self) -> set[int]:
        """The supervisor's worker processes (multiprocessing's resource tracker is a child too)."""
        found = set()
        for pid in children_of(self.main):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"spawn_main" in f.read():
                        found.add(pid)
            except OSError:
                pass
        return found

    def took_over(self, pid: int) -> None:
        for worker in self.old_workers:
            wait_gone(worker, 30)


class Systemd(Target):
    """A unit pair in the shared sandbox; the bench reaches it on 127.0.0.1 (the network is shared)."""

    box: Any = None

    def __init__(self, mode: str, port: int, workdir: str) -> None:
        super().__init__(mode, port, workdir)
        self.unit = f"bench-{mode}"

    def units(self) -> dict[str, str]:
        from sockact._units import render_units

        server = [PY, os.path.join(EXAMPLES, "http_server.py"), "--listen", f"127.0.0.1:{self.port}"]
        units = render_units(
            self.unit,
            [("http", f"127.0.0.1:{self.port}")],
            [*server, "--drain-timeout", "10"],
            mode="inprocess",
            drain_timeout=10,
            environment={"PYTHONPATH": ROOT},
            sockact_command=[PY, "-m", "sockact"],
            harden=False,  # PY may live where a dynamic user cannot reach (a venv under /root): bench/boxes.py
        )
        service = units[f"{self.unit}.service"]
        logs = f"[Service]\nStandardOutput=append:{self.log}\nStandardError=append:{self.log}\n"
        # systemd refuses a 6th start within 10 s (StartLimitBurst=5): 10 quick restarts would fail the unit
        service = service.replace("[Unit]\n", "[Unit]\nStartLimitIntervalSec=0\n")
        units[f"{self.unit}.service"] = service.replace("[Service]\n", logs)
        return units

    def start(self) -> None:
        self.box.systemctl("start", f"{self.unit}.socket")

    def trouble(self) -> str | None:
        state = self.box.show(f"{self.unit}.service", "ActiveState")
        return None if state in ("active", "reloading", "activating", "deactivating") else f"unit is {state}"

    def reload(self) -> None:
        verb = "reload" if self.mode == "systemd" else "restart"
        # not waited for here: systemctl restart blocks until the new process is ready
        self.systemctl = subprocess.Popen(
            self.box.command("systemctl", verb, f"{self.unit}.service"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def took_over(self, pid: int) -> None:
        self.systemctl.wait(30)

    def close(self) -> None:
        self.box.systemctl("stop", f"{self.unit}.socket", f"{self.unit}.service", check=False)


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def _target(mode: str, port: int, workdir: str) -> Target:
    if mode in ("supervisor", "gunicorn"):
        return Supervisor(mode, port, workdir)
    if mode == "naive":
        return Naive(mode, port, workdir)
    if mode == "start-only":
        return StartOnly(mode, port, workdir)
    if mode.startswith("gunicorn-usr2"):
        return GunicornUSR2(mode, port, workdir)
    if mode == "uvicorn-restart":
        return UvicornRestart(mode, port, workdir)
    if mode in ("systemd", "systemd-restart"):
        return Systemd(mode, port, workdir)
    if mode in ("inprocess", *SERVERS):
        return Target(mode, port, workdir)
    raise SystemExit(f"unknown mode {mode!r}; modes: {', '.join(SOCKACT + PEERS + BASELINES)}")


def _wrk_runs(port: int, max_seconds: float) -> dict[str, Wrk]:
    """wrk beside the built-in load: 16 keep-alive connections, and 16 sending Connection: close."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {}
    url = f"http://127.0.0.1:{port}/"
    seconds = int(max_seconds) + 1
    return {
        "keep-alive": Wrk(url, wrk=wrk, connections=16, max_seconds=seconds),
        "close": Wrk(url, wrk=wrk, connections=16, close=True, max_seconds=seconds),
    }


def _stop_wrk(runs: dict[str, Wrk]) -> dict[str, WrkResult | str]:
    results: dict[str, WrkResult | str] = {}
    for kind, wrk in runs.items():
        try:
            results[kind] = wrk.stop()
        except (ValueError, RuntimeError) as exc:
            results[kind] = f"no summary: {exc}"
    return results


def _one(target: Target, reloads: int, max_seconds: float, reload_timeout: float, steady: float = 1.0) -> Run:
    deadline = time.monotonic() + max_seconds
    run = Run(target.mode)
    wrks: dict[str, Wrk] = {}
    try:
        target.start()
        # a start gets the reload's time, not the whole mode's: a unit that cannot start (systemd retries
        # it at every connection, "activating" between tries) made the bench wait --max-seconds
        start_limit = min(deadline, time.monotonic() + 2 * reload_timeout)
        pids = {_answering(target.port, set(), start_limit, target.trouble), *children_of(target.main)}
        wrks = _wrk_runs(target.port, max_seconds)
        for wrk in wrks.values():
            wrk.start()
        with Load("127.0.0.1", target.port, workers=4, max_seconds=max_seconds) as load:
            load.expect_new(pids)  # the same check per answer in steady state as in the windows
            time.sleep(steady)  # steady state before the first reload
            for _ in range(reloads):
                began = time.monotonic() - load.started
                target.reload()
                limit = min(deadline, time.monotonic() + reload_timeout)
                try:
                    new = target.new_pid(pids, limit, load)
                except ReloadFailed as exc:
                    run.note = f"reload {run.reloads + 1} failed: {exc}"
                    run.windows.append((began, time.monotonic() - load.started + TAIL))
                    time.sleep(1.0)  # the load goes on: does the old process still serve?
                    break
                answered = time.monotonic() - load.started  # before took_over: it may wait (systemctl)
                pids.add(new)
                target.took_over(new)
                pids |= load.seen_pids()  # a new generation of several workers: each one is old at the next reload
                run.answered.append(answered)
                run.windows.append((began, time.monotonic() - load.started + TAIL))
                run.reloads += 1
                time.sleep(TAIL + GAP)
                reap_exited()  # predecessors are orphans re-parented here
            time.sleep(steady)  # steady state after the last reload
            run.result = load.stop()
            run.wrk = _stop_wrk(wrks)
    except ReloadFailed as exc:
        run.note = f"did not start: {exc}"
    finally:
        if wrks and not run.wrk:
            run.wrk = _stop_wrk(wrks)
        target.close()
        reap_exited()
    return run


def _first_seen(run: Run) -> dict[int, float]:
    """When each pid first answered (the timeline holds each worker's list in turn, not time order)."""
    first: dict[int, float] = {}
    for end, ok, pid in run.result.timeline:
        if ok:
            first[pid] = min(first.get(pid, end), end)
    return first


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def _split(run: Run) -> tuple[list[float], list[float]]:
    inside: list[float] = []
    steady: list[float] = []
    for (end, _, _), latency in zip(run.result.timeline, run.result.latencies):
        start = end - latency
        hit = any(a <= end and start <= b for a, b in run.windows)
        (inside if hit else steady).append(latency)
    return steady, inside


#: the phases of a reload window, for :func:`phase_table`
PHASES = ("starting, old", "starting, new", "after, new", "after, old")


def _phases(run: Run) -> dict[str, list[float]]:
    """The latencies of requests in completed reload windows by phase: begun before a new pid first
    answered ("starting": the successor starts while the old process serves) or after it ("after":
    the rest of the window, the old one draining); and by who answered: "new" is a pid first seen
    in that window, "old" one seen before it."""
    first_seen = _first_seen(run)
    phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
    for (end, ok, pid), latency in zip(run.result.timeline, run.result.latencies):
        if not ok:
            continue
        start = end - latency
        for (began, until), answered in zip(run.windows, run.answered):
            if began <= end and start <= until:
                when = "starting" if start < answered else "after"
                who = "new" if first_seen[pid] >= began else "old"
                phases[f"{when}, {who}"].append(latency)
                break
    return phases


def phase_table(runs: list[Run]) -> None:
    """Where the reload windows' latency comes from, for the sockact modes: p99 by phase."""
    print("\nwhere the reload windows' latency comes from: p99 ms (requests) by phase — begun while the")
    print("successor starts (before a new pid first answered) or after; answered by the old process or")
    print("the new one — against the same run's steady p99\n")
    print("| mode | p99 steady | " + " | ".join(f"p99 {phase}" for phase in PHASES) + " |")
    print("|---|---:|" + "---:|" * len(PHASES))
    for r in runs:
        if r.mode not in SOCKACT or not r.answered:
            continue
        steady, _ = _split(r)
        phases = _phases(r)
        cells = [f"{percentile(phases[p], 0.99):.1f} ({len(phases[p])})" if phases[p] else "—" for p in PHASES]
        print(f"| {r.mode} | {percentile(steady, 0.99):.1f} | " + " | ".join(cells) + " |")


def _sandbox(targets: list[Systemd], workdir: str) -> Any:
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sandbox: Any = importlib.import_module("sandbox")  # the test suite's recipe: private namespaces, own units

    why = sandbox.available()
    if why is not None:
        raise SystemExit(f"the systemd modes need the sandbox: {why}")
    units: dict[str, str] = {}
    for target in targets:
        units.update(target.units())
    keep = [ROOT, sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    return sandbox.Sandbox(workdir, units, keep)


def _wrk_cell(result: WrkResult | str | None) -> str:
    if result is None:
        return "no wrk"
    if isinstance(result, str):
        return result
    # wrk's "requests" are its answers (a late one also counts a timeout); a connect, read or write
    # error is an attempt that got none
    return f"{result.failed} of {result.requests + result.connect + result.read + result.write}"


def table(runs: list[Run]) -> None:
    print("reloads under load, loopback; clients that never retry: the built-in generator (4 workers, half")
    print("keep-alive, half a new connection per request; a request lost on a reused keep-alive connection is")
    print("failed, and 'retry would survive' says how many of those a client retrying once would have got")
    print("answered) and, in the same run, wrk: 16 keep-alive connections and 16 sending Connection: close")
    print("(socket errors + non-2xx, of its answers + connect/read/write errors)\n")
    print("| mode | kind | reloads | requests | failed | p50 steady ms | p99 steady ms | p99.9 steady ms |", end="")
    print(" p50 reload ms | p99 reload ms | max reload ms | ratio (≤ 1.25) | max ÷ steady p99.9 (≤ 2) |", end="")
    print(" retry would survive | wrk keep-alive failed | wrk close failed |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    ratios: dict[str, float] = {}
    for r in runs:
        steady, inside = _split(r)
        p99_steady, p99_inside = percentile(steady, 0.99), percentile(inside, 0.99)
        p999_steady, slowest = percentile(steady, 0.999), max(inside, default=float("nan")) * 1000
        ratios[r.mode] = p99_inside / p99_steady
        kind = "sockact" if r.mode in SOCKACT else "baseline" if r.mode in BASELINES else "peer"
        print(
            f"| {r.mode} | {kind} | {r.reloads} | {r.result.requests} | {r.result.failed} |"
            f" {percentile(steady, 0.5):.1f} | {p99_steady:.1f} | {p999_steady:.1f} | {percentile(inside, 0.5):.1f} |"
            f" {p99_inside:.1f} | {slowest:.0f} | {ratios[r.mode]:.2f} | {slowest / p999_steady:.2f} |"
            f" {r.result.retried} | {_wrk_cell(r.wrk.get('keep-alive'))} | {_wrk_cell(r.wrk.get('close'))} |"
        )
    notes = [f"- {r.mode}: {r.note}" for r in runs if r.note]
    if notes:
        print("\n" + "\n".join(notes))
    peer = ratios.get("gunicorn-usr2")
    if peer is not None and not math.isnan(peer):
        ours = {mode: ratio for mode, ratio in ratios.items() if mode in SOCKACT}
        above = ", ".join(f"{mode} {ratio:.2f}" for mode, ratio in ours.items() if not ratio <= peer) or "none"
        print(f"\ngunicorn USR2's ratio in this run: {peer:.2f}; sockact modes above it: {above}")
    floor = ratios.get("start-only")
    if floor is not None and not math.isnan(floor):
        stdlib = ", ".join(f"{m} {ratios[m]:.2f}" for m in ("inprocess", "supervisor", "systemd") if m in ratios)
        print(
            f"\nstart-only (the same server's start-up beside the serving one, no hand-over): {floor:.2f};"
            f" the stdlib server's modes: {stdlib or 'not run'}"
        )
    print("\n(goals: failed 0, built-in and wrk, for every sockact mode; ratio = p99 in reload windows /")
    print(" steady p99 ≤ 1.25, and ≤ gunicorn USR2's in the same run; max reload: the slowest request in")
    print(" any reload window — a client's longest wait — ≤ 2 × steady p99.9)")


def plot(runs: list[Run], path: str) -> None:
    """requests/s and failures/s per 100 ms, reload windows shaded, serving pid as a band per mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(11, 2.6 * len(runs)), squeeze=False)
    for ax, r in zip(axes[:, 0], runs):
        buckets: dict[int, list[int]] = {}
        pid_at: dict[int, int] = {}
        for end, ok, pid in r.result.timeline:
            b = int(end * 10)
            buckets.setdefault(b, [0, 0])[0 if ok else 1] += 1
            if ok:
                pid_at[b] = pid
        xs = sorted(buckets)[:-1]  # the last 100 ms are cut short by the end of the load
        ax.plot([x / 10 for x in xs], [buckets[x][0] * 10 for x in xs], lw=0.8, label="answered/s")
        ax.plot([x / 10 for x in xs], [buckets[x][1] * 10 for x in xs], lw=0.8, color="red", label="failed/s")
        for start, end in r.windows:
            ax.axvspan(start, end, color="orange", alpha=0.25, lw=0)
        order = {pid: i for i, pid in enumerate(dict.fromkeys(pid_at[x] for x in sorted(pid_at)))}
        top = max((v[0] * 10 for v in buckets.values()), default=1)
        for x, pid in pid_at.items():  # serving pid: a band at the top, one colour per process
            ax.plot([x / 10, x / 10 + 0.1], [top * 1.08] * 2, lw=6, color=f"C{order[pid] % 10}", solid_capstyle="butt")
        ax.set_title(f"{r.mode}: {r.reloads} reloads, {r.result.requests} requests, {r.result.failed} failed")
        ax.set_ylabel("per second")
        ax.legend(loc="lower left", fontsize=7)
    axes[-1, 0].set_xlabel("seconds (shaded: reload windows; top band: serving pid)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    print(f"\ntimeline written to {path}")


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.steady < math.inf:
        raise SystemExit(f"--steady {args.steady}: give 0 or more seconds")
    become_subreaper()
    modes = args.modes.split(",")
    workdir = tempfile.mkdtemp(prefix="sockact-bench-")
    targets = [_target(mode, free_port(), workdir) for mode in modes]
    in_box = [t for t in targets if isinstance(t, Systemd)]
    box = _sandbox(in_box, workdir) if in_box else None
    try:
        for unit in in_box:
            unit.box = box
        runs = []
        for target in targets:
            reloads = args.reloads
            if target.mode in PEERS and args.peer_reloads:
                reloads = args.peer_reloads
            elif target.mode in (*SERVERS, "gunicorn", *BASELINES) and args.integration_reloads:
                reloads = args.integration_reloads
            runs.append(_one(target, reloads, args.max_seconds, args.reload_timeout, args.steady))
    finally:
        if box is not None:
            box.close()
    table(runs)
    phase_table(runs)
    if args.plot:
        plot([r for r in runs if r.mode in args.plot_modes.split(",")], args.plot)
    if any(r.note for r in runs if r.mode in SOCKACT):  # a peer's known failure is in its note already
        print(f"\nthe servers' logs are kept in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("reload", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--reloads", type=int, default=100)
    parser.add_argument(
        "--integration-reloads", type=int, default=0, help="per server integration and start-only (0: --reloads)"
    )
    parser.add_argument("--peer-reloads", type=int, default=0, help="reloads per peer mode (0: --reloads)")
    parser.add_argument("--modes", default=",".join(SOCKACT + PEERS + BASELINES))
    parser.add_argument("--max-seconds", type=float, default=600, help="per mode")
    parser.add_argument(
        "--reload-timeout", type=float, default=15, help="seconds for a new pid per reload; the first start gets 2x"
    )
    parser.add_argument(
        "--steady", type=float, default=1.0, help="seconds of steady state before the first reload and after the last"
    )
    parser.add_argument("--plot", metavar="PNG", help="write a timeline of --plot-modes")
    parser.add_argument("--plot-modes", default="inprocess,naive,gunicorn-usr2")
    parser.set_defaults(run=run)
