"""Drive real servers through reloads under load: start, find the serving pid, SIGHUP, reap."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence

from sockact._loadgen import _read_response, get

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned predecessors and successors are re-parented to this process, so it can reap them by pid."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def serving_pid(port: int, timeout: float = 20.0, not_pids: Sequence[int] = ()) -> int:
    """The pid answering GET / on a new connection, waiting (bounded) until it is none of ``not_pids``
    (a predecessor keeps accepting for a moment after the hand-over, until its accept loop ends)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            status, pid = get("127.0.0.1", port, timeout=5)
            if status == 200 and pid not in not_pids:
                return pid
        except OSError as exc:
            last = exc
        time.sleep(0.01)
    raise TimeoutError(f"no server other than pids {list(not_pids)} answered on port {port}: {last}")


def start(argv: Sequence[str], port: int, env: dict[str, str], log: str) -> tuple[subprocess.Popen[bytes], int]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, serving_pid(port)


def reload(port: int, pids: Sequence[int]) -> int:
    """SIGHUP the newest of ``pids`` and return its successor's pid once that answers."""
    os.kill(pids[-1], signal.SIGHUP)
    return serving_pid(port, timeout=30, not_pids=pids)


def reap(pids: Sequence[int], timeout: float = 20.0) -> dict[int, int | None]:
    """Wait (bounded) for each pid we own, directly or as subreaper; SIGTERM stragglers first if asked."""
    codes: dict[int, int | None] = {}
    deadline = time.monotonic() + timeout
    for pid in pids:
        while True:
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                codes[pid] = None  # not ours (or already reaped)
                break
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
            time.sleep(0.01)
    return codes


def children_of(pid: int) -> list[int]:
    """Live children of ``pid`` (zombies included) from /proc."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids += [int(x) for x in f.read().split()]
    except FileNotFoundError:
        pass
    return kids


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sleep_on_owned_connection(port: int, result: dict[str, object], sent: threading.Event) -> None:
    """Open a keep-alive connection (the server answering it owns it), then ask /sleep?seconds=2 on it.

    ``result`` gets ``owner`` (pid of the first answer), then ``status`` and ``pid`` of the sleep.
    """
    try:
        for _ in range(100):  # bounded: a draining server answers with Connection: close; try the next one
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            _, body, close = _read_response(sock)
            if not close:
                break
            sock.close()
        with sock:
            result["owner"] = int(body.split()[1])
            sock.sendall(b"GET /sleep?seconds=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            sent.set()
            status, body, _ = _read_response(sock)
            result["status"], result["pid"] = status, int(body.split()[1])
    except Exception as exc:  # reported by the asserting test, not lost in the thread
        result["error"] = repr(exc)
        sent.set()
