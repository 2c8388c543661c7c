"""Successors that fail under load: the old process keeps serving, says why, leaks nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from sockact._loadgen import Load, _Closed, _read_response

from helpers import ROOT, FakeSystemd, child_env, free_port
from reloads import become_subreaper, children_of, reap, serving_pid

PY = sys.executable
FAULTS = {
    "exits-1": (["/bin/sh", "-c", "exit 1"], "exited with status 1"),
    "sigkilled": (["/bin/sh", "-c", "kill -9 $$"], "exited with signal 9"),
    "segfaults": ([PY, "-c", "import ctypes; ctypes.string_at(0)"], "exited with signal 11"),
    "hangs": (["/bin/sleep", "60"], "no READY=1 within 1.0 s"),
}


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


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_failed_successor_under_load(fault: str, tmp_path: object) -> None:
    command, reason = FAULTS[fault]
    port = free_port()
    with FakeSystemd() as systemd:
        env = {**child_env(), "NOTIFY_SOCKET": systemd.address}
        argv = [PY, os.path.join(ROOT, "tests", "fault_server.py"), f"127.0.0.1:{port}", json.dumps(command), "1"]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            systemd.wait_for(lambda m: m.get("READY") == "1" and m.pid == proc.pid)
            assert serving_pid(port) == proc.pid
            before = non_socket_fds(proc.pid)
            with Load("127.0.0.1", port, workers=4, max_seconds=60) as load:
                os.kill(proc.pid, signal.SIGHUP)
                status = systemd.wait_for(lambda m: "upgrade failed" in (m.get("STATUS") or ""))
                assert status.pid == proc.pid and status["READY"] == "1" and reason in status["STATUS"]
                assert serving_pid(port) == proc.pid  # still serving
                result = load.stop()
            assert result.failed == 0, result.errors
            assert set(result.pids) == {proc.pid}
            assert children_of(proc.pid) == []  # the failed successor was reaped: no zombie
            assert non_socket_fds(proc.pid) == before  # no pidfd, pipe or file left behind
            reloading = [m for m in systemd.messages if "RELOADING" in m]
            assert len(reloading) == 1 and "MONOTONIC_USEC" in reloading[0]
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
