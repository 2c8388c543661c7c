"""Drive real servers through reloads under load: start, find the serving pid, SIGHUP, reap."""

from __future__ import annotations

import ctypes
import os
import signal
import ssl
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import Any

from sockact._loadgen import _read_response, connect, get

#: Where a server listens: a TCP port on 127.0.0.1, or a unix socket path.
Where = int | str


def _split(where: Where) -> tuple[str, int | None]:
    return ("127.0.0.1", where) if isinstance(where, int) else (where, None)


PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    """Orphaned predecessors and successors are re-parented to this process, so it can reap them by pid."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def serving_pid(
    port: Where, timeout: float = 20.0, not_pids: Sequence[int] = (), tls: ssl.SSLContext | None = None
) -> int:
    """The pid answering GET / on a new connection, waiting (bounded) until it is none of ``not_pids``
    (a predecessor keeps accepting for a moment after the hand-over, until its accept loop ends)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            status, pid = get(*_split(port), timeout=5, tls=tls)
            if status == 200 and pid not in not_pids:
                return pid
        except OSError as exc:  # also a connection a dying server dropped unanswered (_Closed)
            last = exc
        time.sleep(0.01)
    raise TimeoutError(f"no server other than pids {list(not_pids)} answered on port {port}: {last}")


def start(
    argv: Sequence[str], port: Where, env: dict[str, str], log: str, tls: ssl.SSLContext | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, serving_pid(port, timeout=30, tls=tls)


def reload(port: Where, pids: Sequence[int], tls: ssl.SSLContext | None = None, target: int | None = None) -> int:
    """SIGHUP the newest of ``pids`` (or ``target``) and return its successor's pid once that answers."""
    os.kill(pids[-1] if target is None else target, signal.SIGHUP)
    return serving_pid(port, timeout=30, not_pids=pids, tls=tls)


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


def reap_any() -> dict[int, int]:
    """Reap every exited child of ours (as subreaper: orphaned servers too); pid → exit code."""
    codes = {}
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return codes
        if pid == 0:
            return codes
        codes[pid] = os.waitstatus_to_exitcode(status)


def running_after(pids: Sequence[int], seconds: float) -> list[int]:
    """Those of ``pids`` still running (not exited, not a zombie) once ``seconds`` have passed or all
    of them exited, whichever comes first; any pid, not only our children (nothing is reaped)."""
    deadline = time.monotonic() + seconds
    while (running := [pid for pid in pids if _state(pid) != "Z"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return running


def live_children() -> list[int]:
    return [pid for pid in children_of(os.getpid()) if os.path.exists(f"/proc/{pid}") and _state(pid) != "Z"]


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return "Z"


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def sleep_on_owned_connection(
    port: Where,
    result: dict[str, object],
    sent: threading.Event,
    tls: ssl.SSLContext | None = None,
    seconds: float = 2,
) -> None:
    """Open a keep-alive connection (the server answering it owns it), then ask /sleep?seconds=N on it.

    ``result`` gets ``owner`` (pid of the first answer), then ``status`` and ``pid`` of the sleep, then
    ``next``: ``"closed"`` if the sleep's answer said ``Connection: close``, else the status of a next
    request on the same connection (a drain must not close a connection its last answer kept open).
    """
    try:
        for _ in range(100):  # bounded: a draining server answers with Connection: close; try the next one
            sock = connect(*_split(port), timeout=30, tls=tls)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            _, body, close = _read_response(sock)
            if not close:
                break
            sock.close()
        with sock:
            result["owner"] = int(body.split()[1])
            sock.sendall(f"GET /sleep?seconds={seconds:g} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sent.set()
            status, body, close = _read_response(sock)
            result["status"], result["pid"] = status, int(body.split()[1])
            if close:
                result["next"] = "closed"
            else:  # kept open: a keep-alive client sends its next request on it, and it must be answered
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                result["next"] = _read_response(sock)[0]
    except Exception as exc:  # reported by the asserting test, not lost in the thread
        result["error"] = repr(exc)
        sent.set()


def in_flight(port: Where, tls: ssl.SSLContext | None = None) -> tuple[threading.Thread, dict[str, object]]:
    """Start a /sleep?seconds=2 on a keep-alive connection (see sleep_on_owned_connection); return once sent."""
    result: dict[str, object] = {}
    sent = threading.Event()
    thread = threading.Thread(target=sleep_on_owned_connection, args=(port, result, sent, tls), daemon=True)
    thread.start()
    assert sent.wait(30), "the /sleep request was never sent"
    return thread, result


def reloads_under_load(
    argv: Sequence[str],
    where: Where,
    env: dict[str, str],
    log: str,
    reloads: int,
    tls: ssl.SSLContext | None = None,
    signal_started: bool = False,
) -> dict[str, object]:
    """Start ``argv`` serving at ``where``, reload it ``reloads`` times under load with a request in flight
    across the 4th reload (or the 1st when fewer), then SIGTERM the last one with another request in
    flight. Signals go to the newest serving pid, or with ``signal_started`` to the process started
    (a supervisor). Returns what happened, for the caller's asserts (nothing asserted but liveness)."""
    from sockact._loadgen import Load

    host, port = _split(where)
    proc, pid = start(argv, where, env, log, tls=tls)
    pids = [pid]
    across_reload: dict[str, object] = {}
    across_stop: dict[str, object] = {}
    result = None
    stopped = False
    try:
        with Load(host, port, workers=4, max_seconds=200, tls=tls) as load:
            thread = None
            for i in range(reloads):
                if i == min(3, reloads - 1):
                    thread, across_reload = in_flight(where, tls)
                pids.append(reload(where, pids, tls, target=proc.pid if signal_started else None))
            result = load.stop()
        if thread is not None:
            thread.join(20)
        for _ in range(5):  # bounded: until the in-flight request sits on the newest server
            thread, across_stop = in_flight(where, tls)
            if across_stop.get("owner") == pids[-1]:
                break
            thread.join(20)
        stopped = True
        os.kill(proc.pid if signal_started else pids[-1], signal.SIGTERM)
        thread.join(20)
    finally:
        if not stopped:  # once only: a second SIGTERM is the hammer, or kills a process restoring handlers
            try:
                os.kill(proc.pid if signal_started else pids[-1], signal.SIGTERM)
            except ProcessLookupError:
                pass
        codes = reap([proc.pid, *pids[1:]])
        proc.wait(10)
    with open(log) as f:
        output = f.read()
    return {
        "result": result,
        "pids": pids,
        "across_reload": across_reload,
        "across_stop": across_stop,
        "codes": codes,
        "output": output,
    }


def assert_zero_downtime(run: dict[str, object], reloads: int) -> None:
    """The claims every reload test makes about a :func:`reloads_under_load` run."""
    result: Any = run["result"]
    pids: Any = run["pids"]
    output: Any = run["output"]
    assert result is not None and result.failed == 0, (result and result.errors, output[-3000:])
    assert result.requests > reloads * 5, result
    assert len(set(pids)) == reloads + 1, pids  # a new pid after each reload
    # The connection's owner is the server of the moment (or a predecessor still closing its accept
    # loop); whichever it was, the request in flight across the reload finished there, with a 200.
    across: Any = run["across_reload"]
    assert across.get("status") == 200 and across.get("pid") == across.get("owner"), (across, output[-3000:])
    assert across.get("next") in ("closed", 200), (across, output[-3000:])
    assert across["owner"] in pids[:4], (across, pids)
    stop: Any = run["across_stop"]
    assert stop.get("status") == 200 and stop.get("pid") == pids[-1], (stop, pids, output[-3000:])
    assert stop.get("next") in ("closed", 200), (stop, output[-3000:])
    codes: Any = run["codes"]
    bad = {pid: code for pid, code in codes.items() if code not in (0, None)}
    assert not bad, (bad, output[-3000:])


def wrk_across_reloads(
    argv: Sequence[str], port: int, env: dict[str, str], log: str, reloads: int, signal_started: bool = False
) -> dict[str, Any]:
    """Start ``argv`` on 127.0.0.1:``port`` and reload it ``reloads`` times under two wrk runs at once —
    16 keep-alive connections, and 16 sending ``Connection: close`` — with a request in flight across
    the 2nd reload; then stop it. Returns both wrk results, the pids and the in-flight outcome."""
    from sockact._wrk import Wrk

    url = f"http://127.0.0.1:{port}/"
    proc, pid = start(argv, port, env, log)
    pids = [pid]
    across: dict[str, object] = {}
    results: dict[str, object] = {}
    try:
        with Wrk(url, connections=16) as keepalive, Wrk(url, connections=16, close=True) as closing:
            time.sleep(0.2)  # both wrk runs have their connections open (a poll would be a request of ours)
            thread = None
            for i in range(reloads):
                if i == 1:
                    thread, across = in_flight(port)
                pids.append(reload(port, pids, target=proc.pid if signal_started else None))
            # Each predecessor must drain under the load, not once wrk leaves: a drain that never told
            # the keep-alive clients to move (Connection: close) would keep them until wrk stops.
            results["still_draining"] = running_after(pids[:-1], 5.0)
            results["keepalive"], results["close"] = keepalive.stop(), closing.stop()
            results["output"] = {"keepalive": keepalive.output, "close": closing.output}
        if thread is not None:
            thread.join(20)
    finally:
        os.kill(proc.pid if signal_started else pids[-1], signal.SIGTERM)
        codes = reap([proc.pid, *pids[1:]])
        proc.wait(10)
    with open(log) as f:
        results["log"] = f.read()
    return {**results, "pids": pids, "across_reload": across, "codes": codes}
