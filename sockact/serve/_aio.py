"""Draining for asyncio protocols: a set of transports, each idle or busy."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from .._poll import readable
from ._grace import DEFAULT_GRACE, LINGER, expired, grace_within, half_close

TYPE_CHECKING = False  # not typing's: the asyncio servers' successors import this on their way to READY=1
if TYPE_CHECKING:
    import asyncio
    import socket
    import ssl
    import threading
    from typing import Any

log = logging.getLogger("sockact.serve")

__all__ = ["Acceptor", "ConnectionSet", "stop_accepting"]


async def stop_accepting(sockets: Iterable[socket.socket]) -> None:
    """Stop the running loop accepting on ``sockets`` without closing them, and let connections it
    already accepted reach their protocol.

    Call it before an asyncio ``Server.close()`` (which a server's own graceful shutdown does): a
    connection the loop has accept()ed becomes a transport only a loop iteration later, and if
    ``Server.close()`` runs in between, CPython 3.11's ``Server._attach()`` asserts, the connection is
    dropped and its client gets a reset — during a hand-over, that is a failed request.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    for sock in sockets:
        try:
            if sock.fileno() >= 0:
                loop.remove_reader(sock.fileno())
        except (NotImplementedError, ValueError):
            pass
    for _ in range(5):  # accept task → transport → connection_made(): a few iterations
        await asyncio.sleep(0)


class ConnectionSet:
    """Track an asyncio server's connections so it can drain.

    Call :meth:`add` from ``connection_made`` (the connection is new: no request yet), :meth:`busy`
    when request bytes arrive (drop them if it returns False: the drain closed that connection),
    :meth:`idle` after a response, and :meth:`discard` from ``connection_lost``. Responses should
    say ``Connection: close`` while :attr:`draining` is true, and the protocol then close the
    connection. Draining never closes a connection under a request that may be on its way: an idle
    keep-alive connection is closed unanswered only once silent for ``idle_grace`` seconds of the
    drain, with a FIN (the transport goes on reading until the client closes too, so no RST); a new
    one keeps its chance to send its first request until the deadline (its client would not retry).
    ``clock``: the grace's clock (a seam for tests).

    Raises:
        ValueError: ``idle_grace`` < 0.
    """

    def __init__(self, *, idle_grace: float = DEFAULT_GRACE, clock: Callable[[], float] = time.monotonic) -> None:
        self._busy: dict[asyncio.BaseTransport, bool | None] = {}  # None: no request yet
        self._idle_since: dict[asyncio.BaseTransport, float] = {}  # while draining, by ``clock``
        self._closing: dict[asyncio.BaseTransport, float] = {}  # FIN sent (time.monotonic())
        self.idle_grace = grace_within(idle_grace, float("inf"))
        self._clock = clock
        self.draining = False
        self._empty: asyncio.Event | None = None
        #: Called with each discarded transport (an :class:`Acceptor` counts connections per listener).
        self.on_discard: list[Callable[[asyncio.BaseTransport], None]] = []

    def __len__(self) -> int:
        return len(self._busy)

    def add(self, transport: asyncio.BaseTransport) -> None:
        """A new connection, waiting for its first request."""
        self._busy[transport] = None

    def busy(self, transport: asyncio.BaseTransport) -> bool:
        """Request bytes arrived on ``transport``; False: the drain closed it (FIN sent), drop them."""
        if transport in self._closing:
            return False
        if transport in self._busy:
            self._busy[transport] = True
            self._idle_since.pop(transport, None)
        return True

    def idle(self, transport: asyncio.BaseTransport) -> None:
        """A response is complete and nothing else is pending (the drain closes the connection if it
        stays silent through the grace)."""
        if transport in self._busy:
            self._busy[transport] = False
            if self.draining:
                self._idle_since[transport] = self._clock()

    def discard(self, transport: asyncio.BaseTransport) -> None:
        """The connection is gone."""
        self._busy.pop(transport, None)
        self._idle_since.pop(transport, None)
        self._closing.pop(transport, None)
        for callback in self.on_discard:
            callback(transport)
        if not self._busy and self._empty is not None:
            self._empty.set()

    async def drain(self, servers: Iterable[Any], timeout: float, hammer: threading.Event | None = None) -> int:
        """Close ``servers`` (stop accepting), wait up to ``timeout`` for connections to end — busy ones
        finish, idle ones are closed once silent for the grace — then abort the rest; return how
        many were aborted."""
        import asyncio

        servers = list(servers)
        await stop_accepting(sock for server in servers for sock in getattr(server, "sockets", None) or ())
        for server in servers:
            server.close()
        self.draining = True
        self._empty = asyncio.Event()
        began = self._clock()
        grace = grace_within(self.idle_grace, timeout)
        for transport, state in self._busy.items():
            if state is False:
                self._idle_since[transport] = began
        deadline = time.monotonic() + timeout

        def pending() -> bool:  # a connection still in its TLS handshake is not in the set yet: wait for it too
            return bool(self._busy) or any(getattr(server, "connecting", 0) for server in servers)

        while pending() and time.monotonic() < deadline and not (hammer is not None and hammer.is_set()):
            self._close_idle(began, grace)
            try:
                await asyncio.wait_for(self._empty.wait(), min(0.02, max(deadline - time.monotonic(), 0)))
            except asyncio.TimeoutError:
                pass
        cut = list(self._busy)
        for transport in cut:
            transport.abort()  # type: ignore[attr-defined]
        return len(cut)

    def _close_idle(self, began: float, grace: float) -> None:
        """FIN to connections silent past the grace; close those whose client ignored it for LINGER."""
        now = self._clock()
        for transport, state in list(self._busy.items()):
            fin = self._closing.get(transport)
            if fin is not None:
                if time.monotonic() - fin >= LINGER:
                    transport.close()
            elif state is False and expired(self._idle_since.get(transport, began), began, now, grace):
                fd = _fd(transport)
                if fd >= 0 and readable([fd], 0):
                    continue  # a request (or the client's close) is arriving: let the loop read it
                self._closing[transport] = time.monotonic()
                if fd < 0 or not half_close(fd):
                    transport.close()


def _fd(transport: asyncio.BaseTransport) -> int:
    sock = transport.get_extra_info("socket")
    try:
        return int(sock.fileno()) if sock is not None else -1
    except (OSError, ValueError):
        return -1


class Acceptor:
    """Accept connections on listening sockets for an asyncio protocol — ``loop.create_server(sock=)``
    for sockact's listeners, plus TLS and a per-listener connection limit.

    ``protocol_factory``'s protocols must report to ``connections`` (see :class:`ConnectionSet`).
    ``ssl``: serve TLS (the handshake runs in its own task). ``max_connections``: with that many
    connections open from one listener, stop accepting on it until one closes — the kernel's backlog
    holds new clients meanwhile and no fd is taken for them; EMFILE and the like pause accepting for a
    second instead of failing. Pass the acceptor to :meth:`ConnectionSet.drain` as a server.
    """

    def __init__(
        self,
        sockets: Iterable[socket.socket],
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        connections: ConnectionSet,
        *,
        ssl: ssl.SSLContext | None = None,
        max_connections: int | None = None,
    ) -> None:
        if max_connections is not None and max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {max_connections}")
        self.sockets = list(sockets)
        self.protocol_factory = protocol_factory
        self.connections = connections
        self.ssl = ssl
        self.max_connections = max_connections
        self._open = {sock: 0 for sock in self.sockets}
        self._paused: set[socket.socket] = set()
        self._owner: dict[asyncio.BaseTransport, socket.socket] = {}
        self._lost_early: set[asyncio.BaseTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        connections.on_discard.append(self._discarded)

    def start(self) -> Acceptor:
        """Start accepting on every socket (made non-blocking) in the running loop."""
        import asyncio

        self._loop = asyncio.get_running_loop()
        for sock in self.sockets:
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._accept, sock)
        return self

    def paused(self, sock: socket.socket) -> bool:
        """Whether accepting on ``sock`` is paused (at the limit, or after EMFILE)."""
        return sock in self._paused

    def open_connections(self, sock: socket.socket) -> int:
        return self._open[sock]

    @property
    def connecting(self) -> int:
        """Connections accepted whose TLS handshake (or connection_made) has not finished yet: a drain
        waits for them as for busy ones, lest a client that got in just before it is dropped unanswered."""
        return len(self._tasks)

    def close(self) -> None:
        """Stop accepting and close this process's copies of the sockets (close, never shutdown:
        a successor may share them). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            if self._loop is not None and sock not in self._paused and sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
            sock.close()

    def _pause(self, sock: socket.socket) -> None:
        if sock not in self._paused and self._loop is not None:
            self._paused.add(sock)
            self._loop.remove_reader(sock.fileno())

    def _resume(self, sock: socket.socket) -> None:
        if sock in self._paused and not self._closed and self._loop is not None:
            self._paused.discard(sock)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, sock: socket.socket) -> None:
        assert self._loop is not None
        for _ in range(100):  # bounded per wake-up, as asyncio's own accept loop is
            if self.max_connections is not None and self._open[sock] >= self.max_connections:
                self._pause(sock)
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:  # EMFILE, ENFILE, ENOBUFS, ENOMEM: let connections wait in the backlog
                log.warning("accept() on %s failed: %s; pausing accepting for 1 s", sock.getsockname(), exc)
                self._pause(sock)
                self._loop.call_later(1.0, self._resume, sock)
                return
            conn.setblocking(False)
            self._open[sock] += 1
            task = self._loop.create_task(self._connect(sock, conn))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _connect(self, sock: socket.socket, conn: socket.socket) -> None:
        assert self._loop is not None
        try:
            transport, _ = await self._loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.ssl)
        except Exception as exc:  # a failed TLS handshake, a reset: that client's problem only
            log.info("connection from %s failed before its first request: %s", _peer(conn), exc)
            conn.close()
            self._release(sock)
            return
        if transport in self._lost_early:  # closed before connect_accepted_socket() returned
            self._lost_early.discard(transport)
            self._release(sock)
        else:
            self._owner[transport] = sock

    def _discarded(self, transport: asyncio.BaseTransport) -> None:
        sock = self._owner.pop(transport, None)
        if sock is None:
            self._lost_early.add(transport)
        else:
            self._release(sock)

    def _release(self, sock: socket.socket) -> None:
        self._open[sock] -= 1
        if self.max_connections is None or self._open[sock] < self.max_connections:
            self._resume(sock)


def _peer(conn: socket.socket) -> object:
    try:
        return conn.getpeername()
    except OSError:
        return "?"
