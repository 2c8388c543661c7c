"""Successors that fail under load: the old process keeps serving, says why, leaks nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from sockact._loadgen import Load

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
