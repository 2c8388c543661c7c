"""HTTPS on inherited sockets across reloads, and the per-listener connection limit."""

from __future__ import annotations

import os
import select
import socket
import ssl
import subprocess

import pytest

from sockact._loadgen import _read_response

from conftest import make_certificate, need_module
from helpers import PY, ROOT, child_env, free_port
from reloads import assert_zero_downtime, become_subreaper, reloads_under_load, serving_pid

RELOADS = 3
TLS_SERVERS = ["http_server.py", "asyncio_server.py", "uvicorn_app.py", "hypercorn_app.py", "aiohttp_app.py"]
TLS_SERVERS += ["tornado_app.py"]


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1, made by openssl for this test run."""
    return make_certificate(str(tmp_path_factory.mktemp("tls")))


@pytest.mark.parametrize("example", TLS_SERVERS)
def test_https_across_reloads(example: str, certificate: tuple[str, str], tmp_path: object) -> None:
    """Every response comes over verified TLS, before, during and after each reload."""
    if not example.startswith(("http_server", "asyncio_server")):
        need_module(example.split("_")[0])
    cert, key = certificate
    client = ssl.create_default_context(cafile=cert)
    port = free_port()
    argv = [PY, os.path.join(ROOT, "examples", example), "--listen", f"127.0.0.1:{port}", "--drain-timeout", "10"]
    argv += ["--certfile", cert, "--keyfile", key]
    run = reloads_under_load(argv, port, child_env(), os.path.join(str(tmp_path), "log"), RELOADS, tls=client)
    assert_zero_downtime(run, RELOADS)  # every request verified the certificate: TLS throughout


def _open_idle(port: int) -> socket.socket:
    """A keep-alive connection that got one answer and now sits idle (it counts toward the limit)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, close = _read_response(sock)
    assert status == 200 and not close
    return sock


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.parametrize("example", ["http_server.py", "asyncio_server.py"])
def test_connection_limit_pauses_accepting(example: str) -> None:
    """At --max-connections, new clients wait in the backlog (no fd taken, no error) until one closes."""
    limit = 4
    port = free_port()
    argv = [PY, os.path.join(ROOT, "examples", example), "--listen", f"127.0.0.1:{port}"]
    proc = subprocess.Popen([*argv, "--max-connections", str(limit)], env=child_env(), stderr=subprocess.PIPE)
    held: list[socket.socket] = []
    waiting: list[socket.socket] = []
    try:
        serving_pid(port)
        held = [_open_idle(port) for _ in range(limit)]
        fds_at_limit = _fds(proc.pid)
        for _ in range(10):  # ten more clients: connected by the kernel, sending their request
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            waiting.append(sock)
        readable, _, _ = select.select(waiting, [], [], 1.0)
        assert readable == [], "a client past the limit was answered"
        assert _fds(proc.pid) == fds_at_limit, "the server took an fd for a client past the limit"
        held.pop().close()  # one slot frees: the waiting clients are served one after another
        for sock in waiting:
            status, body, _ = _read_response(sock)
            assert (status, body) == (200, f"pid {proc.pid}\n".encode())
    finally:
        for sock in held + waiting:
            sock.close()
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert b"Too many open files" not in err
