"""What every integration shares: listeners, the upgrader, the start line and READY once serving, and
the drain budget."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from types import TracebackType

from .. import __version__
from .._journal import configure_logging
from .._listeners import Listeners, get_listeners
from .._notify import ready
from .._poll import readable
from .._startline import describe_sockets, start_line
from .._upgrade import Upgrader
from ..serve import stop_accepting

__all__ = ["Listen", "Service", "finish", "listen_spec", "ready_async", "unread"]

#: An address in ListenStream= syntax ("127.0.0.1:8000", "8000", "/run/app.sock", "[::1]:80"), or
#: a mapping of names (FileDescriptorName= in the .socket unit) to such addresses.
Listen = str | Mapping[str, str]

log = logging.getLogger("sockact.integrations")


def listen_spec(listen: Listen, name: str = "http") -> dict[str, str]:
    """The get_listeners() spec for ``listen``: one address becomes ``{name: address}``."""
    return {name: listen} if isinstance(listen, str) else dict(listen)


class Service:
    """Listeners + :class:`~sockact.Upgrader` for one server process; a context manager.

    ``__enter__`` gives sockact's loggers a stderr handler unless the application configured logging
    (:func:`sockact._journal.configure_logging`) and takes the sockets (inherited by name or address,
    else bound); ``ready()`` logs the start line, closes inherited fds nobody claimed and sends
    READY=1 — call it only once the server accepts — and ``__exit__`` restores the signal handlers
    and closes the listeners (a server that closed its own copies first is fine: closing twice is a
    no-op).
    """

    def __init__(
        self,
        listen: Listen,
        *,
        drain_timeout: float = 30.0,
        ready_timeout: float = 60.0,
        pidfile: str | None = None,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        self.spec = listen_spec(listen)
        self.drain_timeout = drain_timeout
        self.ready_timeout = ready_timeout
        self.pidfile = pidfile
        self.environ = environ
        self._listeners: Listeners | None = None
        self._upgrader: Upgrader | None = None

    @property
    def listeners(self) -> Listeners:
        if self._listeners is None:
            raise RuntimeError("use the Service as a context manager")
        return self._listeners

    @property
    def upgrader(self) -> Upgrader:
        if self._upgrader is None:
            raise RuntimeError("use the Service as a context manager")
        return self._upgrader

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets, in the order of the spec."""
        return list(self.listeners.values())

    def __enter__(self) -> Service:
        configure_logging()
        self._listeners = get_listeners(self.spec, environ=self.environ)
        try:
            self._upgrader = Upgrader(
                self._listeners,
                pidfile=self.pidfile,
                ready_timeout=self.ready_timeout,
                drain_timeout=self.drain_timeout,
                environ=self.environ,
            ).__enter__()
        except BaseException:
            self._listeners.close()
            self._listeners = None
            raise
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Restore signal handlers, close the listeners. Idempotent."""
        try:
            if self._upgrader is not None:
                self._upgrader.close()
                self._upgrader = None
        finally:
            if self._listeners is not None:
                self._listeners.close()
                self._listeners = None

    async def stop_accepting(self) -> None:
        """Stop accepting (:func:`sockact.serve.stop_accepting`) and tell the upgrader, which answers a
        waiting ``sockact reload`` at once: the server closes the sockets only later, in its shutdown."""
        await stop_accepting(self.sockets)
        self.upgrader.stopped_accepting()

    def ready(self, server: str) -> None:
        """The server accepts on every listener: log the start line (``server`` and its version),
        close unclaimed inherited fds, send READY=1."""
        origins = self.listeners.origins()
        log.info("%s", start_line(__version__, os.getpid(), origins, server=_with_version(server)))
        self.listeners.close_unclaimed()
        ready(f"{server} pid {os.getpid()} serving on {describe_sockets(origins)}", environ=self.environ)


def _with_version(server: str) -> str:
    """``uvicorn 0.30.6``: the server's distribution version, when installed as one."""
    from importlib import metadata

    try:
        return f"{server} {metadata.version(server)}"
    except metadata.PackageNotFoundError:
        return server


async def finish(drained: Awaitable[object], hammer: threading.Event, on_hammer: Callable[[], object]) -> None:
    """Await a server's own graceful shutdown; if the hammer falls first (a second stop signal), call
    ``on_hammer`` (the server's "stop now") once and keep awaiting."""
    import asyncio

    task = asyncio.ensure_future(drained)
    hammered = False
    while not task.done():
        if hammer.is_set():
            on_hammer()
            hammered = True
            break
        await asyncio.wait([task], timeout=0.1)
    try:
        await task
    except asyncio.CancelledError:
        if not hammered or not task.cancelled():
            raise


async def ready_async(service: Service, server: str) -> None:
    """:meth:`Service.ready` without blocking the loop (a successor's READY=1 waits for its hand-over)."""
    import asyncio

    await asyncio.get_running_loop().run_in_executor(None, service.ready, server)


def unread(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has bytes (or an EOF) the server has not read yet: an "idle" keep-alive
    connection in that state has a request arriving, and closing it now would lose that request."""
    if sock is None or sock.fileno() < 0:
        return False
    return bool(readable([sock.fileno()], 0))
