"""Under the real `systemd-socket-activate`: it listens, starts the child on the first connection."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time

import pytest

from conftest import need_tool
from helpers import PY, ROOT, free_port

pytestmark = pytest.mark.peer

CHILD = r"""
import json, os, socket, sys
sys.path.insert(0, sys.argv[1])
import sockact
spec = json.loads(sys.argv[2])
ls = sockact.get_listeners(spec)
out = {"pid": os.getpid(), "inherited": sorted(ls.inherited), "bound": sorted(ls.bound),
       "family": {k: s.family.name for k, s in ls.items()}, "type": {k: s.type.name for k, s in ls.items()},
       "env": sorted(k for k in os.environ if k.startswith("LISTEN_"))}
for name, s in ls.items():
    if s.type == socket.SOCK_STREAM:
        s.settimeout(5)
        c, _ = s.accept()
        c.sendall(name.encode())
        c.close()
        break
    else:
        out["datagram"] = s.recv(100).decode()
print(json.dumps(out), flush=True)
"""


def activate(args: list[str], spec: dict[str, str], trigger: object) -> dict:
    tool = need_tool("systemd-socket-activate")
    proc = subprocess.Popen(
        [tool, *args, PY, "-c", CHILD, ROOT, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # the tool binds asynchronously: retry the activating connection until it listens
            try:
                reply = trigger()  # type: ignore[operator]
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.02)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out)
    result["reply"] = reply
    return result


def tcp_trigger(host: str, port: int) -> object:
    def go() -> bytes:
        with socket.create_connection((host, port), timeout=5) as c:
            return c.recv(100)

    return go


def test_tcp_by_name() -> None:
    port = free_port()
    r = activate(["-l", f"127.0.0.1:{port}", "--fdname=http"], {"http": "127.0.0.1:1"}, tcp_trigger("127.0.0.1", port))
    assert r["inherited"] == ["http"] and r["bound"] == [] and r["reply"] == b"http"
    assert r["env"] == []  # LISTEN_* gone from os.environ


def test_two_names_and_ipv6() -> None:
    p1, p2 = free_port(), free_port()
    r = activate(
        ["-l", f"127.0.0.1:{p1}", "-l", f"[::1]:{p2}", "--fdname=a:b"],
        {"b": "[::1]:1", "a": "127.0.0.1:1"},
        tcp_trigger("::1", p2),
    )
    assert r["inherited"] == ["a", "b"] and r["family"] == {"b": "AF_INET6", "a": "AF_INET"}


def test_unix_path_by_address_without_fdname(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "act.sock")

    def trigger() -> bytes:
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(5)
            c.connect(path)
            return c.recv(100)

    r = activate(["-l", path], {"u": path, "extra": "127.0.0.1:0"}, trigger)
    assert r["inherited"] == ["u"] and r["bound"] == ["extra"] and r["family"]["u"] == "AF_UNIX"


def test_datagram() -> None:
    port = free_port()

    def trigger() -> bytes:
        # UDP cannot tell whether anyone is bound yet: wait until the tool's socket shows up, then send
        if not subprocess.run(["ss", "-Hlun", f"sport = :{port}"], capture_output=True, text=True).stdout:
            raise ConnectionRefusedError
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.sendto(b"hello", ("127.0.0.1", port))
        return b""

    r = activate(["-d", "-l", f"127.0.0.1:{port}", "--fdname=dns"], {"dns": f"udp:127.0.0.1:{port}"}, trigger)
    assert r["inherited"] == ["dns"] and r["type"]["dns"] == "SOCK_DGRAM" and r["datagram"] == "hello"


def test_example_server_serves_the_activating_connection() -> None:
    tool = need_tool("systemd-socket-activate")
    need_tool("curl")
    port = free_port()
    proc = subprocess.Popen(
        [
            tool,
            "-l",
            f"127.0.0.1:{port}",
            "--fdname=http",
            PY,
            os.path.join(ROOT, "examples", "http_server.py"),
            "--listen",
            "127.0.0.1:9",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            out = subprocess.run(
                ["curl", "-s", "--max-time", "10", f"http://127.0.0.1:{port}/"], capture_output=True, text=True
            )
            if out.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert out.stdout == f"pid {proc.pid}\n"  # systemd-socket-activate exec'd the server in place
        again = subprocess.run(
            ["curl", "-s", f"http://127.0.0.1:{port}/sleep?seconds=0.1"], capture_output=True, text=True
        )
        assert again.stdout == f"pid {proc.pid}\n"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "(inherited)" in err
