"""Successors that fail under load: the old process keeps serving, says why, leaks nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from sockact._loadgen import Load, _Closed, _read_response

from helpers import ROOT, FakeSystemd, child_env, free_port
from reloads import become_subreaper, children_of, live_children, reap, reap_any, serving_pid

PY = sys.executable
GARBAGE = r"""
import os, socket, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for junk in (b"\xff\xfe", b"no equals sign", b"READY", b"=1", b"X" * 70000, b"READY=1\x00MAINPID=1", b""):
    try:
        s.sendto(junk, os.environ["NOTIFY_SOCKET"])
    except OSError:
        pass
time.sleep(60)
"""
#: fault → (successor command, what STATUS= must say, extra environment for the server, with a PID file)
FAULTS: dict[str, tuple[list[str], str, dict[str, str], bool]] = {
    "exits-1": (["/bin/sh", "-c", "exit 1"], "exited with status 1", {}, False),
    "sigkilled": (["/bin/sh", "-c", "kill -9 $$"], "exited with signal SIGKILL", {}, False),
    "segfaults": ([PY, "-c", "import ctypes; ctypes.string_at(0)"], "exited with signal SIGSEGV", {}, False),
    "hangs": (["/bin/sleep", "60"], "not ready within 1.0 s (no READY=1)", {}, False),
    "ready-then-dies": ([PY, "-c", "import sockact; sockact.notify({'READY': 1})"], "right after READY=1", {}, False),
    "garbage-notify": ([PY, "-c", GARBAGE], "not ready within 1.0 s (no READY=1)", {}, False),
    "fds-exhausted": (["/bin/sleep", "60"], "Too many open files", {"FAULT_FILL_FDS": "1"}, False),
    "pidfile-dir-gone": (
        [PY, "-c", "import sockact, time; sockact.ready(); time.sleep(60)"],
        "cannot write PID file",
        {},
        True,
    ),
}
# each fault, in a row, on one server: it must come out of every one the same (python -m bench faults: 20)
REPEATS = int(os.environ.get("SOCKACT_FAULT_REPEATS", "5"))


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


def non_socket_fds(pid: int) -> dict[str, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if not target.startswith("socket:"):
            out[fd] = target
    return out


def settle_fds(pid: int, expected: dict[str, str], timeout: float = 10) -> None:
    """Wait (bounded) until ``pid``'s non-socket fds are ``expected`` again: fds-exhausted releases its
    filler fds half a second after each spawn."""
    deadline = time.monotonic() + timeout
    while non_socket_fds(pid) != expected and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_failed_successor_under_load(fault: str, tmp_path: object) -> None:
    command, reason, extra_env, with_pidfile = FAULTS[fault]
    port = free_port()
    piddir = os.path.join(str(tmp_path), "run")
    os.mkdir(piddir)
    pidfile = os.path.join(piddir, "app.pid")
    with FakeSystemd() as systemd:
        env = {**child_env(), "NOTIFY_SOCKET": systemd.address, **extra_env}
        argv = [PY, os.path.join(ROOT, "tests", "fault_server.py"), f"127.0.0.1:{port}", json.dumps(command), "1"]
        argv += [pidfile] if with_pidfile else []
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            systemd.wait_for(lambda m: m.get("READY") == "1" and m.pid == proc.pid)
            assert serving_pid(port) == proc.pid
            if with_pidfile:  # the directory goes away after start-up: the hand-over cannot be recorded
                shutil.rmtree(piddir)
            before = non_socket_fds(proc.pid)
            with Load("127.0.0.1", port, workers=4, max_seconds=120) as load:
                for attempt in range(1, REPEATS + 1):
                    settle_fds(proc.pid, before)  # fds-exhausted: the last attempt's filler fds are gone
                    os.kill(proc.pid, signal.SIGHUP)
                    status = systemd.wait_for(
                        lambda m, n=attempt: (
                            "upgrade failed" in (m.get("STATUS") or "")
                            and sum("upgrade failed" in (x.get("STATUS") or "") for x in systemd.messages) >= n
                        )
                    )
                    assert status.pid == proc.pid and status["READY"] == "1" and reason in status["STATUS"], status
                    assert serving_pid(port) == proc.pid  # still serving
                result = load.stop()
            assert result.failed == 0, result.errors
            assert set(result.pids) == {proc.pid}
            assert children_of(proc.pid) == []  # every failed successor was reaped: no zombie
            settle_fds(proc.pid, before)
            assert non_socket_fds(proc.pid) == before  # no pidfd, pipe or file left behind
            reloading = [m for m in systemd.messages if "RELOADING" in m]
            assert len(reloading) == REPEATS and all("MONOTONIC_USEC" in m for m in reloading)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=20)
            reap([proc.pid])
        assert systemd.wait_for(lambda m: m.get("STOPPING") == "1").pid == proc.pid
    assert proc.returncode == 0, out
    assert f"fault_server {proc.pid}: stop" in out


@pytest.mark.parametrize("example", ["http_server.py", "asyncio_server.py"])
def test_second_stop_signal_is_immediate(example: str) -> None:
    """SIGTERM drains (an in-flight request keeps it alive); a second SIGTERM cuts the drain short."""
    port = free_port()
    argv = [PY, os.path.join(ROOT, "examples", example), "--listen", f"127.0.0.1:{port}", "--drain-timeout", "60"]
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert serving_pid(port) == proc.pid
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            _read_response(sock)  # this connection is served by proc
            sock.sendall(b"GET /sleep?seconds=50 HTTP/1.1\r\nHost: x\r\n\r\n")
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(1.0)  # draining: the 50 s request holds it (a bound, not a measurement)
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)  # the hammer: well before the 50 s request or the 60 s drain timeout
            with pytest.raises((ConnectionError, OSError, _Closed)):
                _read_response(sock)  # the in-flight request was cut
    finally:
        if proc.poll() is None:
            proc.kill()
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, out
    assert "stop; drained (1 connection(s) cut)" in out, out


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_fifty_reload_signals_in_one_second(tmp_path: object, attempt: int) -> None:
    """50 SIGHUPs in a second, each to the pid in the PID file (as ExecReload=kill -HUP $MAINPID does):
    coalesced and forwarded, 0 failed requests, and in the end one server, every other exited 0."""
    port = free_port()
    pidfile = os.path.join(str(tmp_path), "app.pid")
    argv = [PY, os.path.join(ROOT, "examples", "http_server.py"), "--listen", f"127.0.0.1:{port}"]
    argv += ["--pidfile", pidfile, "--drain-timeout", "5"]
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    codes: dict[int, int] = {}
    try:
        assert serving_pid(port) == proc.pid
        mains = set()
        with Load("127.0.0.1", port, workers=4, max_seconds=120) as load:
            for _ in range(50):
                with open(pidfile) as f:
                    main = int(f.read())
                mains.add(main)
                try:
                    os.kill(main, signal.SIGHUP)
                except ProcessLookupError:
                    pass  # exited between the read and the signal: the next read finds its successor
                time.sleep(0.02)  # the pacing of the test, not a synchronisation
            deadline = time.monotonic() + 60
            settled = 0
            while time.monotonic() < deadline and settled < 5:
                # settled: one live server, the one in the PID file, starting no successor (the PID file
                # names each successor at its hand-over, while a coalesced reload may follow), 5 polls running
                codes.update(reap_any())
                with open(pidfile) as f:
                    main = int(f.read())
                quiet = live_children() == [main] and not children_of(main) and serving_pid(port) == main
                settled = settled + 1 if quiet else 0
                time.sleep(0.05)
            result = load.stop()
        assert live_children() == [main], (live_children(), main)
        assert result.failed == 0, result.errors
    finally:
        for pid in live_children():
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while live_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        codes.update(reap_any())
    bad = {pid: code for pid, code in codes.items() if code != 0}
    assert not bad, bad
    assert len(codes) >= 2  # at least one upgrade happened; the rest were coalesced or forwarded


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_old_process_killed_mid_upgrade(attempt: int) -> None:
    """SIGKILL of the old process while its successor starts: the successor either exits (its READY=1
    has nobody to go to) or serves — never holds the socket without serving."""
    port = free_port()
    argv = [PY, os.path.join(ROOT, "examples", "http_server.py"), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    successor = None
    try:
        assert serving_pid(port) == proc.pid
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 20
        while not (kids := children_of(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert kids, "no successor started"
        successor = kids[0]
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 30
        outcome = None
        while outcome is None and time.monotonic() < deadline:
            codes = reap_any()
            if successor in codes:
                outcome = f"exited {codes[successor]}"
                assert codes[successor] != 0  # it could not tell anyone it was ready: an error exit
            else:
                try:
                    if serving_pid(port, timeout=1) == successor:
                        outcome = "serves"
                except TimeoutError:
                    pass
        assert outcome is not None, "the successor neither served nor exited"
    finally:
        if successor is not None and successor in live_children():
            os.kill(successor, signal.SIGTERM)
            reap([successor])
        reap_any()
