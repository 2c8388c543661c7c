"""A 10-second tour: hand a socket to a server the way systemd does, then reload it in place under load.

    python examples/demo.py [--reloads N]

It binds 127.0.0.1 on a free port itself (playing the .socket unit), starts examples/http_server.py
with that socket as fd 3 named ``http`` through sockact's one spawn path (LISTEN_FDS, LISTEN_PID set in
the child, NOTIFY_SOCKET pointing at a receiver here), waits for READY=1, then sends SIGHUP N times
while a load generator runs, and prints what it saw: every request, every failure, every pid.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import statistics
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sockact import NotifyReceiver
from sockact._loadgen import Load, get
from sockact._spawn import spawn

PR_SET_CHILD_SUBREAPER = 36


def wait_for_new_pid(port: int, old: set[int], timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, pid = get("127.0.0.1", port)
        except OSError:
            pid = 0
        if pid and pid not in old:
            return pid
        time.sleep(0.005)
    raise TimeoutError(f"no successor answered on port {port} within {timeout} s")


def play_systemd(receiver: NotifyReceiver) -> None:
    """Keep reading the server's notifications, as systemd would (this acknowledges its barriers)."""
    for message in receiver:
        if message.get("STATUS"):
            pass


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except (OSError, TimeoutError) as exc:
        print(f"\ndemo: {exc}", file=sys.stderr)
        return 1


def run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--reloads", type=int, default=5)
    args = parser.parse_args(argv)
    # Orphaned predecessors re-parent to us, so we can reap them.
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_server.py")
    with socket.socket() as listener, NotifyReceiver() as receiver:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        print(f"demo: listening on 127.0.0.1:{port} (like a .socket unit), handing it to the server as fd 3")
        started = time.monotonic()
        child = spawn(
            [sys.executable, server, "--listen", f"127.0.0.1:{port}"],
            [listener.fileno()],
            ["http"],
            notify_socket=receiver.address,
        )
        receiver.allow(child.pid)
        message = receiver.receive(timeout=30)
        if message is None or message.get("READY") != "1":
            print("demo: the server did not report READY=1 within 30 s", file=sys.stderr)
            child.terminate(5)
            return 1
        print(f"demo: pid {child.pid} sent READY=1 after {1000 * (time.monotonic() - started):.0f} ms")
        receiver.allowed_pids = None  # successors report to us too once they took over
        threading.Thread(target=play_systemd, args=(receiver,), daemon=True).start()
        pids = [child.pid]
        handovers = []
        with Load("127.0.0.1", port, workers=4, max_seconds=120) as load:
            for i in range(args.reloads):
                began = time.monotonic()
                os.kill(pids[-1], signal.SIGHUP)
                pids.append(wait_for_new_pid(port, set(pids)))
                handovers.append(1000 * (time.monotonic() - began))
                done = load.snapshot()
                print(
                    f"demo: reload {i + 1}/{args.reloads}: pid {pids[-2]} -> {pids[-1]}, "
                    f"{done.requests} requests, {done.failed} failed",
                    flush=True,
                )
            result = load.stop()
        os.kill(pids[-1], signal.SIGTERM)
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    print("\n| requests | failed | retried idle keep-alive | distinct pids | hand-over median ms | max ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {result.requests} | {result.failed} | {result.retried} | {len(set(pids))} | "
        f"{statistics.median(handovers):.0f} | {max(handovers):.0f} |"
    )
    print("\n(hand-over: SIGHUP until a new connection is answered by the successor, Python start-up included)")
    return 0 if result.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
