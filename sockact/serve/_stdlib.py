"""Draining for stdlib ``http.server``: a ThreadingHTTPServer that serves a socket it was given."""

from __future__ import annotations

import email.utils
import http.server
import io
import math
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable

from .._errors import UsageError
from .._poll import readable
from ._grace import DEFAULT_GRACE, LINGER, discard, expired, grace_within, half_close
from ._workers import Workers

TYPE_CHECKING = False  # not typing's: importing typing costs a successor ~3 ms on its way to READY=1
if TYPE_CHECKING:
    from typing import Any

__all__ = ["HTTPServer", "HTTPRequestHandler"]

#: Threads an HTTPServer starts before its first client (see ``spare_threads``).
SPARE_THREADS = 16
#: Connections the accept loop takes per wake-up at most, before it polls again.
ACCEPT_BATCH = 16


class HTTPServer(http.server.ThreadingHTTPServer):
    """``ThreadingHTTPServer`` on an already-listening socket (inherited or bound by get_listeners).

    Every connection is tracked as new (accepted, no request yet), busy, or idle (between keep-alive
    requests). :meth:`drain` stops accepting (closes this process's copy of the socket; a successor
    holding it keeps serving) and never closes a connection under a request that may be on its way:
    every connection's next response says ``Connection: close`` and it is closed after it; busy
    ones finish their request so; new ones have until the deadline for their first request (their
    client is sending it and would not retry); a keep-alive connection that stays silent for
    ``idle_grace`` seconds of the drain is closed unanswered with a FIN (what it still sends is read
    and dropped, so no RST); after ``timeout`` what is left is shut down. Use with
    :class:`HTTPRequestHandler` (or its methods mixed into your handler).

    ``ssl_context``: serve HTTPS — each accepted connection is wrapped, its handshake done by its own
    thread, never the accept loop. ``max_connections``: at that many open connections, stop
    accepting until one closes; the kernel's backlog holds new clients meanwhile, and no fd is taken
    for them (rather than EMFILE, or a thread per connection without bound). ``idle_grace``: see
    above (bounded by the drain timeout). ``clock``: the grace's clock (a seam for tests).

    Each connection is served by a thread of its own, as ``ThreadingHTTPServer``'s, but threads are
    reused: a connection goes to one waiting for work (:mod:`sockact.serve._workers`), and only when
    none waits is one started. Starting a thread makes the accept loop wait for two turns of the GIL
    behind every busy handler; under load that wait, not the request, was most of a new
    connection's latency. ``spare_threads`` are started with the server (before READY=1), so that
    the clients that all reconnect after a hand-over find threads waiting; a thread idle for a
    minute exits, and the pool starts afresh in a process forked from this one. Each connection's
    handler runs in a fresh ``contextvars`` context, but a ``threading.local`` value one handler set
    is there for the next connection its thread serves. With ``daemon_threads = False`` (read at
    construction) no thread is started in advance and an idle one exits within 50 ms: such threads
    hold up the interpreter's exit.

    Raises:
        UsageError: (a ValueError) ``max_connections`` < 1, ``spare_threads`` < 0, or an
            ``ssl_context`` made for clients (``check_hostname`` set).
        ValueError: ``idle_grace`` < 0.
    """

    daemon_threads = True

    def __init__(
        self,
        sock: socket.socket,
        handler: type[http.server.BaseHTTPRequestHandler],
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int | None = None,
        idle_grace: float = DEFAULT_GRACE,
        clock: Callable[[], float] = time.monotonic,
        spare_threads: int = SPARE_THREADS,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise UsageError(f"max_connections must be at least 1, not {max_connections}")
        if spare_threads < 0:
            raise UsageError(f"spare_threads must be 0 or more, not {spare_threads}")
        if ssl_context is not None and ssl_context.check_hostname:  # else the first connection ends serve_forever
            raise UsageError(
                "ssl_context checks host names, so it is a client's context (ssl.create_default_context() "
                "defaults to Purpose.SERVER_AUTH); a server needs ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)"
            )
        self.idle_grace = grace_within(idle_grace, math.inf)
        self._clock = clock
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
        self._closing: set[socket.socket] = set()  # idle past the grace: its handler is to end it
        self._polling: set[socket.socket] = set()  # handlers waiting in poll(), not in a blocking read
        self._all_closed = threading.Condition(self._lock)
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)
        self._accept_r, self._accept_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)  # shutdown() wakes the loop
        self._shutdown_asked = False
        self._accepted = 0  # connections accepted so far (by the accept loop's thread only)
        self._loop_done = threading.Event()
        self._loop_done.set()
        # Non-daemon threads (daemon_threads = False, read here) hold up the interpreter's exit while
        # they wait for work: none is started in advance, and an idle one leaves within 50 ms.
        daemon = self.daemon_threads
        self._workers = Workers(name="sockact-http", daemon=daemon, idle_timeout=60.0 if daemon else 0.05)
        if daemon:
            self._workers.prestart(spare_threads if max_connections is None else min(spare_threads, max_connections))

    def serve_forever(self, poll_interval: float = 0.5) -> None:
        """socketserver's accept loop, but :meth:`shutdown` wakes it through a pipe instead of being
        seen at the next poll: a predecessor whose successor is ready stops accepting the moment
        :meth:`drain` begins, not up to ``poll_interval`` later (socketserver's own XXX). Each wait
        is still bounded by ``poll_interval`` (``service_actions``)."""
        self._loop_done.clear()
        try:
            listener = self.socket.fileno()
            while not self._shutdown_asked:
                ready = readable([listener, self._accept_r], poll_interval)
                if self._shutdown_asked:
                    break
                if listener in ready:
                    self._accept_queued()
                self.service_actions()
        finally:
            try:
                os.read(self._accept_r, 64)  # a wake-up left over: the next loop must not spin on it
            except BlockingIOError:
                pass
            self._shutdown_asked = False
            self._loop_done.set()

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` and wait until it returned (at once, not at its next poll).
        Call it from another thread than the loop's, as socketserver's."""
        with self._lock:
            self._shutdown_asked = True
            self._below_limit.notify_all()  # an accept loop waiting for a free connection slot
        os.write(self._accept_w, b"x")
        self._loop_done.wait()

    def _accept_queued(self) -> None:
        """Accept what the listener has queued, up to ACCEPT_BATCH connections, before polling again.
        Under load every syscall of this thread waits its turn for the GIL behind the busy handlers;
        a poll() per connection doubled that wait. With 16 keep-alive clients busy, clients opening
        a connection per request got 5,800 answers in 5 s (median 12.9 ms) against 4,000 (19 ms)."""
        for _ in range(ACCEPT_BATCH):
            accepted = self._accepted
            self._handle_request_noblock()  # socketserver's: accept, verify, process; swallows EAGAIN
            if self._accepted == accepted or self._shutdown_asked:
                return  # nothing was queued (or a shutdown was asked): back to poll()
            if self.max_connections is not None and len(self._busy) >= self.max_connections:
                return  # at the limit: poll() again rather than wait here for a slot

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, address = self.socket.accept()
        self._accepted += 1
        if self.ssl_context is not None:
            conn = self.ssl_context.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, address

    def _handle_request_noblock(self) -> None:
        # At the limit, do not accept (the client waits in the backlog) until a connection closes.
        if self.max_connections is not None:
            with self._lock:
                while len(self._busy) >= self.max_connections and not (self._stopping or self._shutdown_asked):
                    self._below_limit.wait(0.5)
                if self._stopping or self._shutdown_asked:
                    return
        super()._handle_request_noblock()  # type: ignore[misc]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._busy[request] = None
        self._workers.submit(lambda: self.process_request_thread(request, client_address))

    def shutdown_request(self, request: Any) -> None:
        if self.draining:
            # FIN, then drop what the client still sends until it closes (an idle one gets LINGER s
            # to answer our FIN): closing with unread bytes would make the kernel send RST.
            half_close(request)
            discard(request, LINGER if request in self._closing else 0.0)
        with self._lock:
            self._busy.pop(request, None)
            self._closing.discard(request)
            self._below_limit.notify()
            if not self._busy:
                self._all_closed.notify_all()
        super().shutdown_request(request)

    def wait_for_request(self, conn: socket.socket, rfile: Any) -> bool:
        """Block until a request starts on ``conn`` (True) or the connection is to end (False).

        A connection that has not sent its first request yet is given until the drain deadline; an
        idle one, until the drain closes it (see :meth:`drain`).
        """
        if not self.draining and isinstance(rfile, io.BufferedReader) and not isinstance(conn, ssl.SSLSocket):
            # The plain handler's cost: one blocking read into rfile's buffer, where the handler then
            # finds the request (no syscall of ours). A drain ends this read (shutdown(SHUT_RD): EOF)
            # when the connection stayed idle past the grace. (TLS connections wait in poll().)
            try:
                arrived = bool(rfile.peek(1))
            except OSError:
                return True  # a reset or error: let the handler read it and finish
            if not arrived:
                return False
            if self.draining:  # woke during a drain, which may have chosen to close it meanwhile
                return self._start_request(conn)
            self._busy[conn] = True  # see request_done: no lock for a state change
            return True
        with self._lock:
            self._polling.add(conn)  # the drain then never shuts its reading side (see _close_idle)
        try:
            while True:
                if _buffered(conn, rfile):
                    return self._start_request(conn)
                if self.draining:
                    with self._lock:
                        closing = conn in self._closing
                    remaining = self._drain_deadline - time.monotonic()
                    if closing or remaining <= 0:
                        return False
                    readable([conn.fileno()], max(min(remaining, 0.05), 0.001))
                    continue
                readable([conn.fileno(), self._wake_r], None)  # then look again: data first
        finally:
            with self._lock:
                self._polling.discard(conn)

    def _start_request(self, conn: socket.socket) -> bool:
        """Request bytes (or EOF) arrived: busy. Also when the drain chose to close the connection a
        moment before: nothing was sent to the client yet, so the request is answered (and its
        response says ``Connection: close``)."""
        with self._lock:
            self._closing.discard(conn)
            self._busy[conn] = True
        return True

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

        Idle keep-alive connections are closed (FIN) once silent for ``idle_grace`` seconds of the
        drain (at most ``timeout``). Must not be called from the thread running ``serve_forever``.
        ``hammer``, when set (e.g. by a second SIGTERM), ends the wait at once.
        """
        with self._lock:
            self._stopping = True
            self._below_limit.notify_all()
        self.shutdown()  # the accept loop ends; until then it still serves normally
        self.socket.close()  # close, never shutdown(): a successor may share this socket
        deadline = time.monotonic() + timeout
        grace = grace_within(self.idle_grace, timeout)
        began = self._clock()
        idle_since: dict[socket.socket, float] = {}
        with self._lock:
            self._drain_deadline = deadline
            self.draining = True
        os.write(self._wake_w, b"x")  # wakes every idle TLS connection; never read, so it stays readable
        with self._lock:
            while self._busy:
                self._close_idle(began, grace, idle_since)
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (hammer is not None and hammer.is_set()):
                    break
                self._all_closed.wait(min(remaining, 0.02))
            cut = list(self._busy)
        for conn in cut:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # the hammer: unblock the handler; its writes now fail
            except OSError:
                pass
        return len(cut)

    def _close_idle(self, began: float, grace: float, idle_since: dict[socket.socket, float]) -> None:
        """One look at every connection (under the lock): those idle past the grace with nothing
        arriving are to be closed by their handler, which is woken (FIN and discard: see
        :meth:`shutdown_request`); a request that still comes first is answered."""
        now = self._clock()
        for conn, state in self._busy.items():
            if state is False and conn not in self._closing:
                since = idle_since.setdefault(conn, now)  # idle at drain start, or since first seen so
                if expired(since, began, now, grace) and not readable([conn.fileno()], 0):
                    self._closing.add(conn)
                    if conn not in self._polling:  # polling handlers see _closing within 50 ms
                        _wake_idle(conn)
            elif state is not False:
                idle_since.pop(conn, None)

    def server_close(self) -> None:
        """Close the socket and the wake-up pipes; idle threads exit, busy ones after their
        connection. Those are waited for only if they are not daemons and ``block_on_close`` is set,
        as ``ThreadingHTTPServer`` (whose ``daemon_threads`` is True) does. Idempotent."""
        super().server_close()
        self._workers.close(wait=self.block_on_close and not self.daemon_threads)
        for fd in (self._wake_r, self._wake_w, self._accept_r, self._accept_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = self._accept_r = self._accept_w = -1


def _wake_idle(conn: socket.socket) -> None:
    """End the blocking read of an idle connection's handler, unless request bytes are queued (then
    the handler wakes with them and serves the request, saying ``Connection: close``).

    shutdown(SHUT_RD) ends a read in progress with EOF and keeps bytes already queued readable (Linux).
    TLS connections are skipped (``SSLSocket.shutdown`` drops the TLS state): they wait in poll().
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
    """A BaseHTTPRequestHandler (HTTP/1.1 keep-alive) that cooperates with :meth:`HTTPServer.drain`.

    Its ``Date`` header is formatted once per second, not once per response (as uvicorn and nginx
    do; RFC 9110 §6.6.1 gives it one-second resolution): ``email.utils.formatdate`` costs ~2.6 µs,
    more than the drain's own per-request bookkeeping here.
    """

    protocol_version = "HTTP/1.1"
    server: HTTPServer
    _date: tuple[int, str] = (-1, "")  # (second, its IMF-fixdate), shared by every handler

    def date_time_string(self, timestamp: float | None = None) -> str:
        """``timestamp`` (default: now) as an HTTP date; now's is the cached one of this second."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        second = int(time.time())
        cached = HTTPRequestHandler._date  # one read: another thread may replace it meanwhile
        if cached[0] != second:
            cached = HTTPRequestHandler._date = (second, email.utils.formatdate(second, usegmt=True))
        return cached[1]

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
        # Draining: this response is the connection's last. A client's own "Connection: close"
        # (which set close_connection) is echoed, as HTTP/1.1 clients such as wrk expect. Whether the
        # handler said Connection itself is looked up only then, in the head being built (no
        # send_header override: it would cost every header of every response).
        if (self.server.draining or self.close_connection) and not _says_connection(self):
            self.send_header("Connection", "close")  # also sets close_connection
        super().end_headers()


def _says_connection(handler: http.server.BaseHTTPRequestHandler) -> bool:
    """Whether the response head being built has a Connection header (send_header writes each as
    ``keyword: value`` into ``_headers_buffer``; HTTP/0.9 has no head)."""
    lines: list[bytes] = getattr(handler, "_headers_buffer", [])
    return any(line[:11].lower() == b"connection:" for line in lines)
