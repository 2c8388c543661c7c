"""Draining for stdlib ``http.server``: a ThreadingHTTPServer that serves a socket it was given."""

from __future__ import annotations

import http.server
import io
import os
import socket
import ssl
import threading
import time
from typing import Any

from .._poll import readable

__all__ = ["HTTPServer", "HTTPRequestHandler"]


class HTTPServer(http.server.ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on an already-listening socket (inherited or bound by get_listeners).

    Every connection is tracked as new (accepted, no request yet), busy, or idle (between keep-alive
    requests). :meth:`drain` stops accepting (closes this process's copy of the socket; a successor
    holding it keeps serving), closes idle keep-alive connections at once, lets busy ones finish
    their request (the response says ``Connection: close``), serves the first request of new ones
    (their client is sending it and would not retry), and after ``timeout`` shuts down what is left.
    Use with :class:`HTTPRequestHandler` (or its methods mixed into your handler).

    ``ssl_context``: serve HTTPS — each accepted connection is wrapped, its handshake done by its own
    thread, never the accept loop. ``max_connections``: at that many open connections, stop
    accepting until one closes; the kernel's backlog holds new clients meanwhile, and no fd is taken
    for them (rather than EMFILE, or a thread per connection without bound).
    """

    daemon_threads = True

    def __init__(
        self,
        sock: socket.socket,
        handler: type[http.server.BaseHTTPRequestHandler],
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        super().__init__(("", 0), handler, bind_and_activate=False)
        self.socket.close()  # the socket TCPServer made; we serve on the one we were given
        # Non-blocking (as asyncio does; systemd hands sockets over blocking): during a hand-over a
        # successor shares this socket and may take the connection between our select() and accept();
        # a blocking accept() would then sleep until the next client, and shutdown() would wait forever.
        sock.setblocking(False)
        self.socket = sock
        self.address_family = sock.family
        self.server_address = sock.getsockname()
        self.draining = False
        self.ssl_context = ssl_context
        self.max_connections = max_connections
        self._stopping = False
        self._lock = threading.Lock()
        self._below_limit = threading.Condition(self._lock)
        self._busy: dict[socket.socket, bool | None] = {}  # None: accepted, no request yet
        self._drain_deadline = 0.0
        self._all_closed = threading.Condition(self._lock)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = self.socket.accept()
        if self.ssl_context is not None:
            conn = self.ssl_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def _handle_request_noblock(self) -> None:
        # At the limit, do not accept (the client waits in the backlog) until a connection closes.
        if self.max_connections is not None:
            with self._lock:
                while len(self._busy) >= self.max_connections and not self._stopping:
                    self._below_limit.wait(0.5)
                if self._stopping:
                    return
        super()._handle_request_noblock()  # type: ignore[misc]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._busy[request] = None
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._busy.pop(request, None)
            self._below_limit.notify()
            if not self._busy:
                self._all_closed.notify_all()
        super().shutdown_request(request)

    def wait_for_request(self, conn: socket.socket, rfile: Any) -> bool:
        """Block until a request starts on ``conn`` (True) or the server drains while it is idle (False).

        A connection that has not sent its first request yet is given until the drain deadline.
        """
        if not self.draining and isinstance(rfile, io.BufferedReader) and not isinstance(conn, ssl.SSLSocket):
            # The plain handler's cost: one blocking read into rfile's buffer, where the handler then
            # finds the request (no syscall of ours). drain() wakes an idle connection by shutting
            # its reading side, which ends this read with EOF. (TLS connections wait in poll().)
            try:
                arrived = bool(rfile.peek(1))
            except OSError:
                return True  # a reset or error: let the handler read it and finish
            if arrived:
                self._busy[conn] = True  # see request_done: no lock for a state change
            return arrived
        while True:
            if _buffered(conn, rfile):
                with self._lock:
                    self._busy[conn] = True
                return True
            if self.draining:
                with self._lock:
                    fresh = self._busy.get(conn) is None
                remaining = self._drain_deadline - time.monotonic()
                if not fresh or remaining <= 0:
                    return False
                if not readable([conn.fileno()], remaining):
                    return False
                continue
            readable([conn.fileno(), self._wake_r], None)  # then look again: data first

    def request_done(self, conn: socket.socket) -> None:
        """Mark ``conn`` idle again after a response.

        Per-request state changes take no lock: ``conn`` is already a key (added and removed under
        the lock, per connection), and storing to an existing key is atomic and never resizes the
        dict, so drain() may iterate it meanwhile. Per request, every lock round costs throughput.
        """
        self._busy[conn] = False

    @property
    def connections(self) -> tuple[int, int]:
        """(busy, idle) connection counts."""
        with self._lock:
            busy = sum(1 for state in self._busy.values() if state)
            return busy, len(self._busy) - busy

    def drain(self, timeout: float, hammer: threading.Event | None = None) -> int:
        """Stop accepting and wait up to ``timeout`` s for open connections; return how many were cut.

        Must not be called from the thread running ``serve_forever``. ``hammer``, when set (e.g. by a
        second SIGTERM), ends the wait at once.
        """
        with self._lock:
            self._stopping = True
            self._below_limit.notify_all()
        self.shutdown()  # the accept loop ends; until then it still serves normally
        self.socket.close()  # close, never shutdown(): a successor may share this socket
        deadline = time.monotonic() + timeout
        with self._lock:
            self._drain_deadline = deadline
            self.draining = True
        with self._lock:
            for conn, state in self._busy.items():
                if state is False:
                    _wake_idle(conn)
        os.write(self._wake_w, b"x")  # wakes every idle TLS connection; never read, so it stays readable
        with self._lock:
            while self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (hammer is not None and hammer.is_set()):
                    break
                self._all_closed.wait(min(remaining, 0.1) if hammer is not None else remaining)
            cut = list(self._busy)
        for conn in cut:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # the hammer: unblock the handler; its writes now fail
            except OSError:
                pass
        return len(cut)

    def server_close(self) -> None:
        super().server_close()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1


def _wake_idle(conn: socket.socket) -> None:
    """End an idle connection's blocking read between requests, unless request bytes are already
    queued (then the handler wakes with them and serves the request, saying ``Connection: close``).

    shutdown(SHUT_RD) ends a read in progress with EOF and keeps bytes already queued readable (Linux).
    A request arriving after it fails as it would on any keep-alive connection the server closes.
    TLS connections are skipped (``SSLSocket.shutdown`` drops the TLS state): they wait in poll()
    and are woken by the server's wake-up pipe.
    """
    if isinstance(conn, ssl.SSLSocket):
        return
    try:
        conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        try:
            conn.shutdown(socket.SHUT_RD)
        except OSError:
            pass
    except OSError:
        pass  # reset or closed: its handler is waking already


def _buffered(conn: socket.socket, rfile: Any) -> bool:
    """Whether the handler has something to read now — request bytes in ``rfile``'s buffer or the
    socket, an EOF or an error — without blocking. False only when reading would block."""
    timeout = conn.gettimeout()
    conn.settimeout(0.0)
    try:
        if rfile.peek(1):
            return True
        if isinstance(conn, ssl.SSLSocket):
            return True  # peek() read b"" without SSLWantReadError: the peer closed
        conn.recv(1, socket.MSG_PEEK)  # b"" is EOF: the handler reads it and ends the connection
        return True
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return False  # nothing yet (over TLS: no application data yet, or a handshake in progress)
    except OSError:
        return True  # a reset or error: let the handler read it and finish
    finally:
        conn.settimeout(timeout)


class HTTPRequestHandler(http.server.BaseHTTPRequestHandler):
    """A BaseHTTPRequestHandler (HTTP/1.1 keep-alive) that cooperates with :meth:`HTTPServer.drain`."""

    protocol_version = "HTTP/1.1"
    server: HTTPServer

    def setup(self) -> None:
        super().setup()
        # http.server writes the head and the body separately; with Nagle's algorithm the body then
        # waits for the client's delayed ACK (40 ms on Linux) on every keep-alive response.
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle_one_request(self) -> None:
        if not self.server.wait_for_request(self.connection, self.rfile):
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            self.server.request_done(self.connection)

    def end_headers(self) -> None:
        if self.server.draining and not self.close_connection:
            self.send_header("Connection", "close")  # also sets close_connection
        super().end_headers()
