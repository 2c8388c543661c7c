"""Draining for asyncio protocols: a set of transports, each idle or busy."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio
    import threading

__all__ = ["ConnectionSet"]


class ConnectionSet:
    """Track an asyncio server's connections so it can drain.

    Call :meth:`add` from ``connection_made`` (the connection is new: no request yet), :meth:`busy`
    when request bytes arrive, :meth:`idle` after a response (it closes the transport if draining),
    and :meth:`discard` from ``connection_lost``. Responses should say ``Connection: close`` while
    :attr:`draining` is true. Draining closes idle connections at once; a new one keeps its chance to
    send its first request until the deadline (its client would not retry).
    """

    def __init__(self) -> None:
        self._busy: dict[asyncio.BaseTransport, bool | None] = {}  # None: no request yet
        self.draining = False
        self._empty: asyncio.Event | None = None

    def __len__(self) -> int:
        return len(self._busy)

    def add(self, transport: asyncio.BaseTransport) -> None:
        """A new connection, waiting for its first request."""
        self._busy[transport] = None

    def busy(self, transport: asyncio.BaseTransport) -> None:
        """Request bytes arrived on ``transport``."""
        if transport in self._busy:
            self._busy[transport] = True

    def idle(self, transport: asyncio.BaseTransport) -> None:
        """A response is complete and nothing else is pending; closes the connection when draining."""
        if transport in self._busy:
            self._busy[transport] = False
            if self.draining:
                transport.close()

    def discard(self, transport: asyncio.BaseTransport) -> None:
        """The connection is gone."""
        self._busy.pop(transport, None)
        if not self._busy and self._empty is not None:
            self._empty.set()

    async def drain(self, servers: Iterable[Any], timeout: float, hammer: threading.Event | None = None) -> int:
        """Close ``servers`` (stop accepting), close idle connections, wait up to ``timeout`` for busy
        ones, then abort the rest; return how many were aborted."""
        import asyncio

        servers = list(servers)
        loop = asyncio.get_running_loop()
        # Stop accepting first, close later: a connection the loop has accept()ed is turned into a
        # transport by a task a loop iteration later, and if Server.close() ran in between, CPython
        # 3.11's Server._attach() asserts, the connection is dropped, and the client gets a reset.
        for server in servers:
            for sock in getattr(server, "sockets", None) or ():
                try:
                    loop.remove_reader(sock.fileno())
                except (NotImplementedError, ValueError):
                    pass
        for _ in range(5):  # accept task → transport → connection_made(): a few iterations
            await asyncio.sleep(0)
        for server in servers:
            server.close()
        self.draining = True
        self._empty = asyncio.Event()
        for transport, state in list(self._busy.items()):
            if state is False:
                transport.close()
        deadline = time.monotonic() + timeout
        while self._busy and time.monotonic() < deadline and not (hammer is not None and hammer.is_set()):
            try:
                await asyncio.wait_for(self._empty.wait(), min(0.1, max(deadline - time.monotonic(), 0)))
            except asyncio.TimeoutError:
                pass
        cut = list(self._busy)
        for transport in cut:
            transport.abort()  # type: ignore[attr-defined]
        return len(cut)
