"""A bounded loopback HTTP/1.1 load generator that attributes every failure (tests, demo, bench).

Half the workers reuse keep-alive connections, half open a new connection per request. A request
counts as failed when it gets no complete 200 response — also when a *reused* keep-alive connection
is closed before any byte of the response arrives (HTTP's idle-close race, RFC 9112 §9.3.1): wrk,
many client libraries on POST and proxies without a retry rule report that as an error, so a
figure that hid it would hold only for clients that retry. Such a request is then sent once more on
a new connection, only to tell whether a retrying client (a browser, for an idempotent request)
would have survived: ``retried`` counts those, and they stay in ``failed``. Every loop is bounded
by a deadline.
"""

from __future__ import annotations

import socket
import ssl as _ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType

__all__ = ["Load", "LoadResult", "connect", "get"]


@dataclass
class LoadResult:
    """What a load run saw: ``failed`` must be 0 for a zero-downtime claim. ``retried``: failed
    requests on a reused keep-alive connection that a client retrying once would have survived."""

    requests: int = 0
    failed: int = 0
    retried: int = 0
    pids: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    timeline: list[tuple[float, bool, int]] = field(default_factory=list)

    def merge(self, other: LoadResult) -> None:
        self.requests += other.requests
        self.failed += other.failed
        self.retried += other.retried
        self.pids.update(other.pids)
        self.errors.extend(other.errors[: max(0, 20 - len(self.errors))])
        self.latencies.extend(other.latencies)
        self.timeline.extend(other.timeline)


class _Closed(ConnectionError):
    """The peer closed before any byte of the response."""


def _read_response(sock: socket.socket) -> tuple[int, bytes, bool]:
    """(status, body, server wants close). Raises _Closed on EOF before the first byte."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            if not data:
                raise _Closed
            raise ConnectionError("connection closed inside the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip().lower() for k, _, v in (line.partition(":") for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed inside the response body")
        body += chunk
    http10 = lines[0].startswith("HTTP/1.0")
    close = headers.get("connection") == "close" or (http10 and headers.get("connection") != "keep-alive")
    return status, body[:length], close


def _pid(body: bytes) -> int:
    text = body.decode(errors="replace").strip()
    return int(text.split()[1]) if text.startswith("pid ") else 0


def connect(
    host: str, port: int | None = None, timeout: float = 10.0, tls: _ssl.SSLContext | None = None
) -> socket.socket:
    """A connection to ``host:port``, or to the unix socket at path ``host`` when ``port`` is None;
    wrapped in TLS (server name ``localhost``) when ``tls`` is given."""
    if port is None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(host)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection((host, port), timeout=timeout)
    if tls is not None:
        try:
            return tls.wrap_socket(sock, server_hostname="localhost")
        except BaseException:
            sock.close()
            raise
    return sock


def get(
    host: str, port: int | None = None, path: str = "/", timeout: float = 10.0, tls: _ssl.SSLContext | None = None
) -> tuple[int, int]:
    """One request on a new connection: (status, pid in the body). ``port=None``: ``host`` is a unix socket."""
    with connect(host, port, timeout, tls) as sock:
        name = host if port is not None else "localhost"
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
        status, body, _ = _read_response(sock)
        return status, _pid(body)


class Load:
    """Run ``workers`` threads of requests against ``host:port`` (``port=None``: the unix socket at path
    ``host``; ``tls``: over TLS) until :meth:`stop` or ``max_seconds``."""

    def __init__(
        self,
        host: str,
        port: int | None,
        *,
        tls: _ssl.SSLContext | None = None,
        workers: int = 4,
        path: str = "/",
        max_seconds: float = 120.0,
        timeout: float = 10.0,
    ) -> None:
        self.host, self.port, self.path, self.tls = host, port, path, tls
        self.workers, self.max_seconds, self.timeout = workers, max_seconds, timeout
        self._stop = threading.Event()
        self._results: list[LoadResult] = []
        self._threads: list[threading.Thread] = []
        self.started = 0.0
        self._known: frozenset[int] | None = None  # see expect_new
        self._new_pid = 0
        self._answered_new = threading.Event()

    def start(self) -> Load:
        self.started = time.monotonic()
        for index in range(self.workers):
            result = LoadResult()
            self._results.append(result)
            thread = threading.Thread(target=self._run, args=(index % 2 == 0, result), daemon=True)
            self._threads.append(thread)
            thread.start()
        return self

    def snapshot(self) -> LoadResult:
        """Totals so far (approximate while running)."""
        total = LoadResult()
        for result in list(self._results):
            total.requests += result.requests
            total.failed += result.failed
            total.retried += result.retried
        return total

    def expect_new(self, known: set[int]) -> None:
        """From now on, the first answer from a pid not in ``known`` ends :meth:`wait_new`. Every
        answer is checked against ``known`` once it is set, in steady state and in a reload alike, so
        watching costs the load the same at all times (a poll every few ms would run only while
        waiting, which is what a bench compares against steady state)."""
        self._answered_new.clear()
        self._new_pid = 0
        self._known = frozenset(known)

    def seen_pids(self) -> set[int]:
        """Every pid that has answered so far."""
        return {pid for result in list(self._results) for pid in list(result.pids)}

    def wait_new(self, timeout: float) -> int:
        """The pid that answered outside :meth:`expect_new`'s set, or 0 if none did within ``timeout``."""
        return self._new_pid if self._answered_new.wait(timeout) else 0

    def stop(self) -> LoadResult:
        """Stop the workers and return the merged result."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        total = LoadResult()
        for result in self._results:
            total.merge(result)
        return total

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _connect(self) -> socket.socket:
        return connect(self.host, self.port, self.timeout, self.tls)

    def _run(self, keepalive: bool, result: LoadResult) -> None:
        deadline = self.started + self.max_seconds
        host = self.host if self.port is not None else "localhost"
        request = f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\n".encode()
        request += b"\r\n" if keepalive else b"Connection: close\r\n\r\n"
        sock: socket.socket | None = None
        while not self._stop.is_set() and time.monotonic() < deadline:
            began = time.monotonic()
            ok, pid, lost = False, 0, False
            try:
                reused = sock is not None
                if sock is None:
                    sock = self._connect()
                try:
                    sock.sendall(request)
                    status, body, close = _read_response(sock)
                except (_Closed, ConnectionResetError, BrokenPipeError) as exc:
                    if not reused:
                        raise ConnectionError(f"new connection closed without a response: {exc!r}") from exc
                    # A failure: the server closed a keep-alive connection under this request. Would
                    # a client that retries once have survived it? (counted apart, never as success)
                    lost = True
                    sock.close()
                    sock = None
                    if len(result.errors) < 20:
                        result.errors.append(f"reused keep-alive connection closed under the request: {exc!r}")
                    sock = self._connect()
                    sock.sendall(request)
                    status, body, close = _read_response(sock)
                    result.retried += status == 200
                pid = _pid(body)
                ok = status == 200 and not lost
                if status != 200:
                    result.errors.append(f"status {status}")
                if close or not keepalive:
                    sock.close()
                    sock = None
            except (OSError, ConnectionError, _Closed, ValueError, IndexError) as exc:
                if len(result.errors) < 20:
                    result.errors.append(f"{type(exc).__name__}: {exc}")
                if sock is not None:
                    sock.close()
                    sock = None
            result.requests += 1
            if not ok:
                result.failed += 1
            else:
                result.pids[pid] += 1
                known = self._known
                if known is not None and pid and pid not in known and not self._new_pid:
                    self._new_pid = pid
                    self._answered_new.set()
            end = time.monotonic()
            result.latencies.append(end - began)
            result.timeline.append((end - self.started, ok, pid))
        if sock is not None:
            sock.close()
