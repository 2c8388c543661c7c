"""`sockact inspect` under the real systemd-socket-activate reports the right fds and names."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from conftest import need_tool
from helpers import ROOT, free_port


@pytest.mark.peer
def test_inspect_under_systemd_socket_activate(tmp_path: object) -> None:
    tool = need_tool("systemd-socket-activate")
    p1, p2 = free_port(), free_port()
    path = os.path.join(str(tmp_path), "u.sock")
    env = {**os.environ, "PYTHONPATH": ROOT}
    proc = subprocess.Popen(
        [
            tool,
            "-l",
            f"127.0.0.1:{p1}",
            "-l",
            f"[::1]:{p2}",
            "-l",
            path,
            "--fdname=web:admin:local",
            "-E",
            "PYTHONPATH",
            sys.executable,
            "-m",
            "sockact",
            "inspect",
            "--json",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while True:  # the first connection starts it
        try:
            socket.create_connection(("127.0.0.1", p1), timeout=5).close()
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.02)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert [(f["fd"], f["name"], f["kind"], f["listening"]) for f in report["fds"]] == [
        (3, "web", "socket", True),
        (4, "admin", "socket", True),
        (5, "local", "socket", True),
    ]
    assert report["fds"][0]["family"] == socket.AF_INET and report["fds"][1]["family"] == socket.AF_INET6
    assert report["fds"][2]["family"] == socket.AF_UNIX and path in report["fds"][2]["address"]
    assert report["pid"] == proc.pid and report["verdicts"] == []


def test_inspect_explains_a_foreign_listen_pid() -> None:
    env = {**os.environ, "PYTHONPATH": ROOT, "LISTEN_PID": "1", "LISTEN_FDS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "sockact", "inspect"], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0 and "LISTEN_PID=1 is not mine" in out.stdout
    env["LISTEN_PID"] = "garbage"
    out = subprocess.run(
        [sys.executable, "-m", "sockact", "inspect", "--json"], env=env, capture_output=True, text=True, timeout=30
    )
    assert "LISTEN_PID='garbage' is invalid" in json.loads(out.stdout)["verdicts"][0]
