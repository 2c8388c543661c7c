"""Many idle keep-alive connections across an in-place upgrade.

``examples/asyncio_server.py`` (sockact's asyncio server) gets --connections keep-alive connections,
each of which has had one answer and now sits idle. Then SIGHUP: the successor takes over, the old
process closes its idle connections and exits. Every client connection must see a clean close (EOF,
never a reset) and the old process must be gone within --drain-timeout; every client then reconnects
and is answered by the successor. RLIMIT_NOFILE is raised (to the hard limit) for the bench and the
servers it starts. Goals (issue 7): 0 resets; the old process gone within the drain timeout.
"""

from __future__ import annotations

import argparse
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from typing import Any

from bench._util import ROOT, become_subreaper, child_env, free_port, reap_exited, wait_gone
from sockact._loadgen import _read_response, get
from sockact._poll import readable

BATCH = 250


def _open(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each answered once (HTTP/1.1 keep-alive) and left open."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    socks: list[socket.socket] = []
    while len(socks) < count:
        size = min(BATCH, count - len(socks))
        batch = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(size)]
        for sock in batch:
            sock.sendall(request)
        for sock in batch:
            status, _, close = _read_response(sock)
            if status != 200 or close:
                raise RuntimeError(f"connection {len(socks)}: status {status}, close={close}")
            socks.append(sock)
    return socks


def _closed(socks: list[socket.socket], timeout: float) -> tuple[int, int, int]:
    """(clean EOFs, resets, still open) once every connection closed or ``timeout`` passed."""
    poller = select.poll()
    by_fd = {sock.fileno(): sock for sock in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    eof = reset = 0
    deadline = time.monotonic() + timeout
    while by_fd and time.monotonic() < deadline:
        for fd, _ in poller.poll(max(deadline - time.monotonic(), 0) * 1000):
            sock = by_fd.pop(fd)
            poller.unregister(fd)
            try:
                data = sock.recv(1, socket.MSG_DONTWAIT)
                if data:
                    raise RuntimeError(f"unexpected bytes on an idle connection: {data!r}")
                eof += 1
            except ConnectionResetError:
                reset += 1
            except BlockingIOError:
                by_fd[fd] = sock  # spurious wake-up
                poller.register(fd, select.POLLIN)
    return eof, reset, len(by_fd)


def _reconnect(port: int, count: int, old: int) -> tuple[int, int]:
    """(answered by a new pid, failed) for ``count`` fresh requests, ``BATCH`` connections at a time."""
    request = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
    answered = failed = 0
    done = 0
    while done < count:
        batch = []
        for _ in range(min(BATCH, count - done)):
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(request)
                batch.append(sock)
            except OSError:
                failed += 1
        for sock in batch:
            with sock:
                try:
                    status, body, _ = _read_response(sock)
                    pid = int(body.split()[1])
                    ok = status == 200 and pid != old
                except (OSError, ConnectionError, ValueError, IndexError):
                    ok = False
                answered += ok
                failed += not ok
        done += min(BATCH, count - done)
    return answered, failed


def run(args: argparse.Namespace) -> int:
    become_subreaper()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 1024
    if hard != resource.RLIM_INFINITY and hard < want:
        print(f"RLIMIT_NOFILE hard limit {hard} < {want}: use fewer --connections or raise it", file=sys.stderr)
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))  # inherited by the servers
    port = free_port()
    argv = [sys.executable, os.path.join(ROOT, "examples", "asyncio_server.py"), "--listen", f"127.0.0.1:{port}"]
    argv += ["--drain-timeout", str(args.drain_timeout)]
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    successor = 0
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _, old = get("127.0.0.1", port, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        began = time.monotonic()
        socks = _open(port, args.connections)
        opened = time.monotonic() - began
        pidfd = os.pidfd_open(proc.pid)
        signalled = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        while True:
            _, successor = get("127.0.0.1", port, timeout=10)
            if successor != old:
                break
            if time.monotonic() - signalled > 30:
                raise TimeoutError("no successor answered within 30 s")
            time.sleep(0.01)
        handed = time.monotonic() - signalled
        gone = bool(readable([pidfd], args.drain_timeout + 5))
        exited = time.monotonic() - signalled
        os.close(pidfd)
        eof, reset, still_open = _closed(socks, 5)
        for sock in socks:
            sock.close()
        answered, failed = _reconnect(port, args.connections, old)
    finally:
        for pid in (successor, proc.pid):
            if pid:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        proc.wait(60)
        if successor:
            wait_gone(successor, 60)
        reap_exited()
    n = args.connections
    print(f"{n:,} idle keep-alive connections across one upgrade of examples/asyncio_server.py\n")
    print("| figure | measured | goal |")
    print("|---|---:|---|")
    print(f"| connections opened and answered once | {n:,} in {opened:.1f} s | — |")
    print(f"| SIGHUP → successor answers | {handed * 1000:.0f} ms | — |")
    exit_text = f"{exited:.2f} s" if gone else f"not within {args.drain_timeout + 5:.0f} s"
    print(f"| SIGHUP → old process exited | {exit_text} | within the drain timeout ({args.drain_timeout:.0f} s) |")
    print(f"| idle connections closed cleanly (EOF) | {eof:,} | {n:,} |")
    print(f"| idle connections reset | {reset:,} | 0 |")
    print(f"| idle connections left open | {still_open:,} | 0 |")
    print(f"| reconnects answered by the successor | {answered:,} of {n:,} ({failed} failed) | all |")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("keepalive", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--drain-timeout", type=float, default=10)
    parser.set_defaults(run=run)
