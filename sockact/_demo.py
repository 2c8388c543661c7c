"""``sockact demo``: reload a server in place N times under load and show that nothing failed.

The server is this module's own ``serve`` role (a stdlib HTTP server built on ``sockact.serve`` and
``Upgrader``), so the demo works from an installed sockact. Modes: ``inprocess`` (the server reloads
itself on SIGHUP) and ``supervisor`` (``sockact run`` swaps it). The demo plays systemd: it binds the
socket, starts the server through the one spawn path and reads its notifications.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import statistics
import sys
import threading
import time
import urllib.parse

from . import _handoff as h
from ._drive import Driver
from ._loadgen import Load, LoadResult, get
from ._receiver import NotifyReceiver
from ._spawn import Child, spawn
from ._upstream import Upstream

__all__ = ["demo", "serve"]

PR_SET_CHILD_SUBREAPER = 36


# -- the server -------------------------------------------------------------------------------------


def serve(listen: str, drain_timeout: float) -> int:
    """The demo server: ``/`` → ``pid <pid>``, ``/sleep?seconds=S``; reloads itself on SIGHUP."""
    from . import Upgrader, get_listeners, ready
    from .serve import HTTPRequestHandler, HTTPServer

    class Handler(HTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.path == "/sleep":
                time.sleep(min(float(urllib.parse.parse_qs(url.query).get("seconds", ["1"])[0]), 60.0))
            body = f"pid {os.getpid()}\n".encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    listeners = get_listeners({"http": listen})
    server = HTTPServer(listeners["http"], Handler)
    with listeners, Upgrader(listeners, drain_timeout=drain_timeout) as upgrader:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        listeners.close_unclaimed()
        ready()
        upgrader.wait()
        server.drain(drain_timeout, hammer=upgrader.hammer)
        server.server_close()
    return 0


# -- the tour ---------------------------------------------------------------------------------------


class _Launcher(Driver):
    """The demo's systemd: starts the server through the one hand-over machine (as ``sockact run``
    starts its first child) and waits for its READY=1, its death or the deadline."""

    def __init__(self, command: list[str], listener: socket.socket, receiver: NotifyReceiver) -> None:
        policy = h.Policy(ready_timeout=30.0, give_up_after=1)
        super().__init__(h.SupervisorHandoff(policy), Upstream({}), stop_signals=())
        self.command, self.listener, self.receiver = command, listener, receiver

    def start(self, timeout: float) -> Child | None:
        """The server once it sent READY=1, else None (the reason is in ``outcomes``)."""
        self.feed(h.Start())
        self.run_until(lambda: bool(self.outcomes), timeout)
        outcome = self.outcomes[-1] if self.outcomes else None
        return self.children.get(outcome.pid) if isinstance(outcome, h.Upgraded) else None

    def _spawn(self) -> Child:
        assert self.receiver is not None
        return spawn(self.command, [self.listener.fileno()], ["http"], notify_socket=self.receiver.address)

    def _hand_over(self, pid: int, status: str) -> None:
        pass  # the demo is the manager: nobody above it to tell


def _play_systemd(receiver: NotifyReceiver) -> None:
    for _ in receiver:  # reading is all systemd does here: it acknowledges barriers, closes fds
        pass


def _new_pid(port: int, seen: set[int], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = get("127.0.0.1", port)[1]
        except OSError:
            pid = 0
        if pid and pid not in seen:
            return pid
        time.sleep(0.005)
    raise TimeoutError(f"no new server answered on 127.0.0.1:{port} within {timeout} s")


def _plot(path: str, result: LoadResult, marks: list[float], duration: float) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("sockact demo: --plot needs matplotlib: pip install 'sockact[plot]'") from None
    bucket = 0.1
    n = int(duration / bucket) + 1
    ok, failed = [0] * n, [0] * n
    pids: dict[int, list[float]] = {}
    for when, success, pid in result.timeline:
        i = min(int(when / bucket), n - 1)
        (ok if success else failed)[i] += 1
        if success:
            pids.setdefault(pid, []).append(when)
    xs = [i * bucket for i in range(n)]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), sharex=True, height_ratios=[3, 1])
    top.plot(xs, [c / bucket for c in ok], label="requests/s (200)", color="tab:blue")
    top.plot(xs, [c / bucket for c in failed], label="failures/s", color="tab:red")
    for mark in marks:
        top.axvline(mark, color="grey", linestyle=":", linewidth=1)
    top.set_ylabel("per second")
    top.legend(loc="lower right")
    top.set_title(f"sockact demo: {len(marks)} reloads, {result.requests} requests, {result.failed} failed")
    for row, (_pid, times) in enumerate(sorted(pids.items(), key=lambda kv: min(kv[1]))):
        bottom.plot([min(times), max(times)], [row, row], linewidth=6)
    bottom.set_ylabel("serving pid")
    bottom.set_yticks([])
    bottom.set_xlabel("seconds (dotted: SIGHUP)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _stop_servers(pids: list[int], timeout: float = 15.0) -> None:
    """SIGTERM the servers still running (newest first), wait until they are gone, SIGKILL the rest."""

    def running(pid: int) -> bool:
        try:
            return os.waitpid(pid, os.WNOHANG) == (0, 0)  # our child (a subreaper's orphan too)
        except ChildProcessError:  # a successor whose parent still runs: it reaps it
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            return True

    for pid in reversed(pids):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [pid for pid in alive if running(pid)]
        time.sleep(0.02)  # bounded: process exit has no event to wait on here
    for pid in alive:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


# One sequence, kept whole: it is the tour the README promises, step by step, in the order it prints.
def demo(reloads: int, seconds: float, mode: str, plot: str | None) -> int:
    """Run the tour; returns 0 when no request failed."""
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphaned predecessors come back to us
    with socket.socket() as listener, NotifyReceiver() as receiver, contextlib.ExitStack() as cleanup:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4096)
        port = listener.getsockname()[1]
        server = [sys.executable, "-m", "sockact._demo", "serve", f"127.0.0.1:{port}"]
        command = (
            server
            if mode == "inprocess"
            else [sys.executable, "-m", "sockact", "run", f"--listen=http=127.0.0.1:{port}", "--", *server]
        )
        print(f"demo: listening on 127.0.0.1:{port} like a .socket unit; starting the server ({mode})")
        started = time.monotonic()
        launcher = _Launcher(command, listener, receiver)
        cleanup.callback(launcher.close_children)  # interrupted while it starts: terminate it
        child = launcher.start(timeout=30)
        if child is None:
            print(f"demo: the server did not start: {launcher.outcomes[-1]}", file=sys.stderr)
            return 1
        signalled = [child.pid]  # whom SIGHUP goes to: the newest server, or the supervisor
        cleanup.callback(_stop_servers, signalled)  # interrupted (Ctrl-C, SIGTERM, an error): leave none running
        print(f"demo: pid {child.pid} sent READY=1 after {1000 * (time.monotonic() - started):.0f} ms")
        receiver.allowed_pids = None  # successors speak to "systemd" after their hand-over
        threading.Thread(target=_play_systemd, args=(receiver,), daemon=True).start()
        seen = {get("127.0.0.1", port)[1]}
        handovers: list[float] = []
        marks: list[float] = []
        interval = seconds / (reloads + 1)
        with Load("127.0.0.1", port, workers=4, max_seconds=seconds + 120) as load:
            for i in range(reloads):
                time.sleep(interval)  # pacing the tour, not synchronisation
                began = time.monotonic()
                marks.append(began - load.started)
                os.kill(signalled[-1], signal.SIGHUP)
                new = _new_pid(port, seen)
                seen.add(new)
                if mode == "inprocess":
                    signalled.append(new)
                handovers.append(1000 * (time.monotonic() - began))
                now = load.snapshot()
                print(
                    f"demo: reload {i + 1}/{reloads}: now pid {new}; {now.requests} requests, {now.failed} failed",
                    flush=True,
                )
            time.sleep(interval)
            duration = time.monotonic() - load.started
            result = load.stop()
        os.kill(signalled[-1], signal.SIGTERM)
        for pid in {*signalled, child.pid}:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        signalled.clear()  # all reaped: nothing for _stop_servers
    print("\n| requests | failed | retried idle keep-alive | distinct pids | hand-over median ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    median = statistics.median(handovers) if handovers else 0.0
    print(
        f"| {result.requests} | {result.failed} | {result.retried} | {len(seen)} | {median:.0f} | "
        f"{max(handovers, default=0):.0f} |"
    )
    print("\n(hand-over: SIGHUP until a new connection is answered by the new server, Python start-up included)")
    if plot:
        _plot(plot, result, marks, duration)
        print(f"demo: wrote {plot}")
    return 0 if result.failed == 0 else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sockact._demo")
    sub = parser.add_subparsers(dest="role", required=True)
    role = sub.add_parser("serve")
    role.add_argument("listen")
    role.add_argument("--drain-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    return serve(args.listen, args.drain_timeout)


if __name__ == "__main__":
    sys.exit(main())
