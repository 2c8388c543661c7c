"""sockact.serve.HTTPServer's drain, connection by connection: idle, busy, new, pipelined, TLS, unix.

Each test runs the server in a thread of this process on a real socket and talks to it over real
connections; drain() runs in another thread, as an application's main thread would call it.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import pytest

from sockact._loadgen import _read_response
from sockact.serve import HTTPRequestHandler, HTTPServer
from sockact.serve._stdlib import _wake_idle

from conftest import make_certificate
from helpers import until

DRAIN = 10.0  # long: every test that expects an early end would otherwise wait for it


class Handler(HTTPRequestHandler):
    release = threading.Event()
    threads: list[threading.Thread] = []  # noqa: RUF012 - shared on purpose: what served /thread

    def do_GET(self) -> None:
        if self.path == "/wait":
            self.release.wait(10)
        if self.path == "/thread":
            self.threads.append(threading.current_thread())  # kept alive: no identity is reused
        body = self.path.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Running:
    def __init__(self, server: HTTPServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        self.cut: int | None = None
        self.drained = threading.Event()
        self.took = 0.0

    def drain(self, timeout: float = DRAIN) -> None:
        def run() -> None:
            began = time.monotonic()
            self.cut = self.server.drain(timeout)
            self.took = time.monotonic() - began
            self.drained.set()

        threading.Thread(target=run, daemon=True).start()

    def wait_draining(self) -> None:
        deadline = time.monotonic() + 5
        while not self.server.draining:
            assert time.monotonic() < deadline
            time.sleep(0.001)


@pytest.fixture
def tcp() -> Iterator[Running]:
    Handler.release.clear()
    sock = socket.create_server(("127.0.0.1", 0))
    running = Running(HTTPServer(sock, Handler))
    yield running
    Handler.release.set()
    if not running.drained.is_set():
        running.server.drain(0.1)
    running.server.server_close()


def _connect(running: Running) -> socket.socket:
    return socket.create_connection(running.server.server_address[:2], timeout=10)


def _get(sock: socket.socket, path: str = "/") -> tuple[int, bytes, bool]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return _read_response(sock)


def _eof(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def _wait_connections(running: Running, busy: int, idle: int) -> None:
    deadline = time.monotonic() + 5
    while running.server.connections != (busy, idle):
        assert time.monotonic() < deadline, running.server.connections
        time.sleep(0.001)


def test_idle_keep_alive_connection_is_closed_after_the_grace(tcp: Running) -> None:
    """An idle connection does not hold the drain: after the idle grace its blocked read is ended
    and it is closed with a FIN (tests/test_idle_grace.py pins the grace down with a clock)."""
    idle = [_connect(tcp) for _ in range(3)]
    for sock in idle:
        assert _get(sock) == (200, b"/", False)
    _wait_connections(tcp, 0, 3)
    tcp.drain()
    assert tcp.drained.wait(DRAIN / 2), "an idle connection held the drain"
    assert tcp.cut == 0
    assert all(_eof(sock) for sock in idle)


def test_busy_request_finishes_and_says_close(tcp: Running) -> None:
    sock = _connect(tcp)
    sock.sendall(b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\n")
    _wait_connections(tcp, 1, 0)
    tcp.drain()
    tcp.wait_draining()
    assert not tcp.drained.wait(0.2)  # the busy request holds it
    Handler.release.set()
    assert _read_response(sock) == (200, b"/wait", True)
    assert tcp.drained.wait(DRAIN / 2) and tcp.cut == 0
    assert _eof(sock)


def test_new_connection_gets_its_first_request_served(tcp: Running) -> None:
    """Accepted before the drain, request sent after it began: answered (its client would not retry)."""
    sock = _connect(tcp)
    _wait_connections(tcp, 0, 1)  # counted as not busy: accepted, no request yet
    tcp.drain()
    tcp.wait_draining()
    assert _get(sock) == (200, b"/", True)
    assert tcp.drained.wait(DRAIN / 2) and tcp.cut == 0


def test_silent_new_connection_is_cut_at_the_deadline(tcp: Running) -> None:
    sock = _connect(tcp)
    _wait_connections(tcp, 0, 1)
    tcp.drain(0.3)
    assert tcp.drained.wait(5)
    assert tcp.cut == 1 and tcp.took >= 0.3
    assert _eof(sock)


def test_pipelined_requests_are_all_answered(tcp: Running) -> None:
    """Bytes of the next request already in the handler's buffer are found without a read."""
    sock = _connect(tcp)
    sock.sendall(b"".join(f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(5)))
    data = b""
    deadline = time.monotonic() + 5
    while data.count(b"HTTP/1.1 200") < 5 or not data.endswith(b"/4"):
        assert time.monotonic() < deadline, data
        data += sock.recv(65536)
    assert [data.endswith(b"/4"), data.count(b"HTTP/1.1 200")] == [True, 5]


def test_wake_idle_leaves_a_connection_with_queued_bytes_alone() -> None:
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"GET")
        _wake_idle(a)
        b.sendall(b" / HTTP/1.1\r\n")  # still open for reading: the rest of the request arrives
        assert a.recv(100) == b"GET / HTTP/1.1\r\n"
    c, d = socket.socketpair()
    with c, d:
        _wake_idle(c)  # nothing queued: its reading side is shut, a read returns EOF at once
        assert c.recv(1) == b""


def test_idle_unix_connection_is_closed_after_the_grace(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "s")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(path)
    sock.listen()
    running = Running(HTTPServer(sock, Handler))
    try:
        client = socket.socket(socket.AF_UNIX)
        client.settimeout(10)
        client.connect(path)
        assert _get(client) == (200, b"/", False)
        _wait_connections(running, 0, 1)
        running.drain()
        assert running.drained.wait(DRAIN / 2) and running.cut == 0
        assert _eof(client)
    finally:
        running.server.server_close()


def test_idle_tls_connection_is_closed_after_the_grace(tmp_path: object) -> None:
    """TLS connections wait in poll() (SSLSocket cannot shut one side) and see the drain's decision."""
    cert, key = make_certificate(str(tmp_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    running = Running(HTTPServer(socket.create_server(("127.0.0.1", 0)), Handler, ssl_context=context))
    try:
        client = ssl.create_default_context(cafile=cert).wrap_socket(_connect(running), server_hostname="127.0.0.1")
        assert _get(client) == (200, b"/", False)
        _wait_connections(running, 0, 1)
        running.drain()
        assert running.drained.wait(DRAIN / 2) and running.cut == 0
        try:
            assert client.recv(1) == b""
        except (ConnectionResetError, ssl.SSLError):
            pass
    finally:
        running.server.server_close()


def _date_of(sock: socket.socket) -> str:
    """The Date header of one response read raw from ``sock``."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, head
        head += chunk
    head, _, rest = head.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(rest) < length:
        rest += sock.recv(4096)
    return next(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n") if line.startswith(b"Date:"))


def test_date_header_is_now_to_the_second_though_formatted_once_a_second(tcp: Running) -> None:
    """The cached Date is the response's second (RFC 9110 §6.6.1), never an older second's; an explicit
    timestamp is formatted as http.server formats it."""
    import email.utils
    import http.server

    with _connect(tcp) as sock:
        for _ in range(3):  # the second may turn between the clock readings: then read again
            before = int(time.time())
            first, second = _date_of(sock), _date_of(sock)
            if int(time.time()) == before:
                break
        expected = email.utils.formatdate(before, usegmt=True)
        assert first == second == expected
        # a cache left from an earlier second is replaced, not served
        HTTPRequestHandler._date = (before - 5, "Thu, 01 Jan 1970 00:00:00 GMT")
        assert _date_of(sock) in (expected, email.utils.formatdate(before + 1, usegmt=True))
    handler = Handler.__new__(Handler)
    for _ in range(3):
        before = int(time.time())
        a, b = handler.date_time_string(), handler.date_time_string()
        if int(time.time()) == before:
            break
    assert a is b  # formatted once for both: the same string object
    plain = http.server.BaseHTTPRequestHandler.date_time_string
    for timestamp in (0.0, 1e9 + 0.7, 1_800_000_000.0):
        assert Handler.date_time_string(Handler.__new__(Handler), timestamp) == plain(
            Handler.__new__(Handler), timestamp
        )


def test_connections_are_served_by_spare_threads_reused_from_one_to_the_next() -> None:
    """Threads are started with the server, before any client, and a connection that ended leaves
    its thread to the next one (no thread start per connection: see sockact.serve._workers)."""
    sock = socket.create_server(("127.0.0.1", 0))
    running = Running(HTTPServer(sock, Handler, spare_threads=2))
    try:
        assert running.server._workers.counts[0] == 2  # started with the server, before any client
        Handler.threads.clear()
        for _ in range(4):
            with _connect(running) as conn:
                assert _get(conn, "/thread")[0] == 200
            _wait_connections(running, 0, 0)
        assert len(set(Handler.threads)) <= 2 and running.server._workers.counts[0] == 2  # no thread started
    finally:
        running.server.drain(0.1)
        running.server.server_close()
    workers = running.server._workers
    until(lambda: workers.counts == (0, 0), state=lambda: workers.counts)  # server_close(): idle threads exit
    with socket.create_server(("127.0.0.1", 0)) as other, pytest.raises(ValueError, match="spare_threads must be 0"):
        HTTPServer(other, Handler, spare_threads=-1)


def test_one_wake_up_accepts_every_queued_connection_up_to_the_batch() -> None:
    """Connections already queued are taken in one wake-up of the accept loop (at most ACCEPT_BATCH),
    not one poll() each: under load each syscall of that thread waits a turn of the GIL."""
    from sockact.serve._stdlib import ACCEPT_BATCH

    batches: list[int] = []

    class Counting(HTTPServer):
        def _accept_queued(self) -> None:
            before = self._accepted
            super()._accept_queued()
            batches.append(self._accepted - before)

    sock = socket.create_server(("127.0.0.1", 0), backlog=64)
    server = Counting(sock, Handler, spare_threads=0)
    clients = [socket.create_connection(sock.getsockname()[:2], timeout=10) for _ in range(ACCEPT_BATCH + 4)]
    Running(server)  # its loop starts with all of them queued
    try:
        until(lambda: sum(batches) >= len(clients), state=lambda: batches)  # a batch is recorded once it returned
        assert batches[0] == ACCEPT_BATCH and sum(batches) == len(clients), batches
    finally:
        for client in clients:
            client.close()
        server.drain(0.1)
        server.server_close()


def test_shutdown_at_the_connection_limit_returns_at_once() -> None:
    """At max_connections with nothing queued, the accept loop polls (it does not wait for a slot),
    and a wait for a slot ends at shutdown(): found by review, shutdown() hung until a client left."""
    sock = socket.create_server(("127.0.0.1", 0))
    running = Running(HTTPServer(sock, Handler, max_connections=1, spare_threads=1))
    with _connect(running) as conn:
        assert _get(conn)[0] == 200  # served, and kept open: the server is at its limit
        _wait_connections(running, 0, 1)
        stopper = threading.Thread(target=running.server.shutdown, daemon=True)
        stopper.start()
        stopper.join(5)
        assert not stopper.is_alive()
    running.server.server_close()


def test_non_daemon_threads_are_not_started_in_advance() -> None:
    """daemon_threads = False: idle threads would hold up the interpreter's exit, so none waits
    beforehand, and server_close() waits for a busy one (block_on_close, as ThreadingMixIn)."""

    class Joined(HTTPServer):
        daemon_threads = False

    sock = socket.create_server(("127.0.0.1", 0))
    server = Joined(sock, Handler)
    assert server._workers.counts == (0, 0) and not server._workers.daemon
    server.server_close()


def test_a_clients_tls_context_is_refused_at_construction() -> None:
    """ssl.create_default_context() is for clients (check_hostname): its wrap_socket(server_side=True)
    raises ValueError inside the accept loop, which would end serve_forever at the first connection."""
    from sockact import UsageError

    with socket.create_server(("127.0.0.1", 0)) as sock, pytest.raises(UsageError, match=r"Purpose\.CLIENT_AUTH"):
        HTTPServer(sock, Handler, ssl_context=ssl.create_default_context())
