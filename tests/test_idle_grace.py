"""The idle grace of a drain, made deterministic by a clock seam: a keep-alive connection silent
through the drain is closed with a FIN (never an RST) once the grace has passed, and the drain ends
within its timeout; a request sent exactly at the grace boundary is answered (with Connection: close).

Each drain runs in this process (stdlib HTTPServer in threads, asyncio ConnectionSet in a loop
thread) on real loopback sockets; only the grace's clock is ours.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from test_serve_drain import Handler

from sockact._loadgen import _read_response
from sockact._poll import readable
from sockact.serve import Acceptor, ConnectionSet, HTTPServer
from sockact.serve._grace import expired, grace_within

from helpers import ROOT, until

sys.path.insert(0, os.path.join(ROOT, "examples"))
import asyncio_server  # the example's HTTP/1.1 protocol

GRACE = 0.25
DRAIN = 10.0


class Clock:
    """The grace's clock: stands still until the test moves it; counts the drain's looks at it and
    can run ``hook`` inside the first look that reads at least ``hook_at``."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls = 0
        self.hook: Callable[[], object] | None = None
        self.hook_at = 0.0
        self._cond = threading.Condition()

    def __call__(self) -> float:
        with self._cond:
            self.calls += 1
            self._cond.notify_all()
            now, hook = self.now, self.hook
            if hook is not None and now >= self.hook_at:
                self.hook = None
            else:
                hook = None
        if hook is not None:
            hook()  # e.g. the client's request, sent at the very instant the drain reads the boundary
        return now

    def looks(self, more: int) -> None:
        """Wait (bounded) until the clock has been read ``more`` more times."""
        with self._cond:
            target = self.calls + more
            assert self._cond.wait_for(lambda: self.calls >= target, 5), "the drain stopped looking"


class Server:
    """One server with a drain started in the background: ``drained`` is set with ``cut``."""

    address: tuple[str, int]
    drained: threading.Event
    cut: int | None

    def drain(self, timeout: float) -> None: ...
    def wait_idle(self) -> None: ...
    def close(self) -> None: ...


class Stdlib(Server):
    def __init__(self, clock: Callable[[], float], grace: float) -> None:
        self.server = HTTPServer(socket.create_server(("127.0.0.1", 0)), Handler, idle_grace=grace, clock=clock)
        self.address = self.server.server_address[:2]
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.drained, self.cut = threading.Event(), None

    def drain(self, timeout: float) -> None:
        def run() -> None:
            self.cut = self.server.drain(timeout)
            self.drained.set()

        threading.Thread(target=run, daemon=True).start()

    def wait_idle(self) -> None:
        until(lambda: self.server.connections == (0, 1))

    def close(self) -> None:
        if not self.drained.is_set():
            self.server.drain(0.1)
        self.server.server_close()


class Aio(Server):
    def __init__(self, clock: Callable[[], float], grace: float) -> None:
        self.loop = asyncio.new_event_loop()
        self.connections = ConnectionSet(idle_grace=grace, clock=clock)
        sock = socket.create_server(("127.0.0.1", 0))
        self.address = sock.getsockname()[:2]
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def start() -> Acceptor:
            return Acceptor([sock], lambda: asyncio_server.HTTP(self.connections), self.connections).start()

        self.acceptor = asyncio.run_coroutine_threadsafe(start(), self.loop).result(5)
        self.drained, self.cut = threading.Event(), None

    def drain(self, timeout: float) -> None:
        future = asyncio.run_coroutine_threadsafe(self.connections.drain([self.acceptor], timeout), self.loop)

        def done(f: object) -> None:
            self.cut = future.result()
            self.drained.set()

        future.add_done_callback(done)

    def wait_idle(self) -> None:
        until(lambda: list(self.connections._busy.values()) == [False])

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.acceptor.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(params=["stdlib", "asyncio"])
def make(request: pytest.FixtureRequest) -> Iterator[Callable[[Callable[[], float], float], Server]]:
    made: list[Server] = []

    def factory(clock: Callable[[], float], grace: float) -> Server:
        server = (Stdlib if request.param == "stdlib" else Aio)(clock, grace)
        made.append(server)
        return server

    yield factory
    for server in made:
        server.close()


def _idle_client(server: Server) -> socket.socket:
    client = socket.create_connection(server.address, timeout=10)
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, close = _read_response(client)
    assert (status, close) == (200, False)
    server.wait_idle()
    return client


def _open(client: socket.socket) -> bool:
    """Nothing to read: no FIN (nor anything else) came from the server."""
    return not readable([client.fileno()], 0)


def test_expired_at_exactly_the_grace() -> None:
    table = [  # idle since, drain began, now, grace → expired
        (0.0, 0.0, 0.2499, 0.25, False),
        (0.0, 0.0, 0.25, 0.25, True),
        (-5.0, 0.0, 0.1, 0.25, False),  # idle long before the drain: counted from the drain's start
        (1.0, 0.0, 1.2, 0.25, False),  # idle since a response during the drain
        (1.0, 0.0, 1.25, 0.25, True),
    ]
    for since, began, now, grace, want in table:
        assert expired(since, began, now, grace) is want, (since, began, now, grace)
    assert grace_within(0.5, 30) == 0.5 and grace_within(30, 2) == 1.0 and grace_within(0, 2) == 0
    with pytest.raises(ValueError, match="idle_grace"):
        grace_within(-1, 2)


def test_idle_connection_gets_a_fin_at_the_grace(make: Callable[[Callable[[], float], float], Server]) -> None:
    clock = Clock()
    server = make(clock, GRACE)
    client = _idle_client(server)
    server.drain(DRAIN)
    clock.looks(3)
    assert _open(client), "closed before any grace passed"
    clock.now = GRACE - 0.001
    clock.looks(3)
    assert _open(client), "closed before the grace"
    clock.now = GRACE
    assert client.recv(1) == b"", "not a FIN"  # a reset would raise ConnectionResetError
    # A request the client sends after that FIN is read and dropped: no RST comes back.
    client.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.recv(100) == b""
    client.close()
    assert server.drained.wait(DRAIN / 2) and server.cut == 0


def test_request_at_the_grace_boundary_is_answered(make: Callable[[Callable[[], float], float], Server]) -> None:
    """The client sends at the very instant the drain reads exactly the grace on its clock: the
    drain sees the request arriving (or its handler already took it) and the request is answered."""
    clock = Clock()
    server = make(clock, GRACE)
    client = _idle_client(server)
    clock.hook_at = GRACE
    clock.hook = lambda: client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    server.drain(DRAIN)
    clock.looks(2)
    clock.now = GRACE
    status, _, close = _read_response(client)
    assert (status, close) == (200, True)
    assert client.recv(1) == b""
    client.close()
    assert server.drained.wait(DRAIN / 2) and server.cut == 0


def test_grace_longer_than_the_drain_still_ends_cleanly(
    make: Callable[[Callable[[], float], float], Server],
) -> None:
    """idle_grace 30 s, drain timeout 1 s: the grace is bounded to half the drain, the idle connection
    gets its FIN and the drain ends before its deadline would cut anything."""
    server = make(time.monotonic, 30.0)
    client = _idle_client(server)
    server.drain(1.0)
    assert client.recv(1) == b""
    client.close()
    assert server.drained.wait(5) and server.cut == 0
