"""Run a tornado application on sockact's listeners, with in-place reload and a real drain.

    from sockact.integrations import tornado as sockact_tornado
    sockact_tornado.run(app, "127.0.0.1:8000", drain_timeout=30, ssl_options=ctx)

The sockets go to ``HTTPServer.add_sockets`` as they are (TCP, IPv6 or unix). tornado's own
``close_all_connections()`` closes connections mid-request, so the drain here is sockact's: stop
accepting, answer every request with ``Connection: close``, close a keep-alive connection unanswered
only once it stayed silent for ``idle_grace`` seconds of the drain (with a FIN; tornado reads the
client's close), give a new connection until the deadline to send its first request, then close
what is left. Keyword arguments go to ``tornado.httpserver.HTTPServer`` (``ssl_options=``, ``xheaders=``…).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ..serve._grace import DEFAULT_GRACE, LINGER, expired, grace_within, half_close
from ._service import Listen, Service, ready_async, unread

if TYPE_CHECKING:
    from tornado.httpserver import HTTPServer

__all__ = ["run", "serve"]


def run(app: Any, listen: Listen = "127.0.0.1:8000", **options: Any) -> str:
    """:func:`serve` in a new event loop: serve ``app`` until a successor took over (``"upgraded"``)
    or a stop signal (``"stop"``), then drain.

    Raises:
        SockactError: the listeners could not be taken or bound.
    """
    return asyncio.run(serve(app, listen, **options))


async def serve(
    app: Any,
    listen: Listen = "127.0.0.1:8000",
    *,
    drain_timeout: float = 30.0,
    ready_timeout: float = 60.0,
    pidfile: str | None = None,
    environ: MutableMapping[str, str] | None = None,
    idle_grace: float = DEFAULT_GRACE,
    **server_options: Any,
) -> str:
    """:func:`run` in the running loop (the common options: :mod:`sockact.integrations`)."""
    server = _draining_server(app, server_options)
    with Service(
        listen, drain_timeout=drain_timeout, ready_timeout=ready_timeout, pidfile=pidfile, environ=environ
    ) as service:
        for sock in service.sockets:
            sock.setblocking(False)  # tornado's accept handler expects it (its bind_sockets does this)
        server.add_sockets(service.sockets)
        await ready_async(service, "tornado")
        outcome = await service.upgrader.wait_async()
        await drain(server, drain_timeout, service.upgrader.hammer, idle_grace=idle_grace)
        return outcome


def _draining_server(app: Any, options: dict[str, Any]) -> HTTPServer:
    from tornado import httputil
    from tornado.httpserver import HTTPServer

    class Tracked(httputil.HTTPMessageDelegate):
        def __init__(self, inner: httputil.HTTPMessageDelegate, states: dict[object, bool | None], conn: object):
            self.inner, self.states, self.conn = inner, states, conn

        def headers_received(self, start_line: Any, headers: Any) -> Any:
            self.states[self.conn] = True
            return self.inner.headers_received(start_line, headers)

        def data_received(self, chunk: bytes) -> Any:
            return self.inner.data_received(chunk)

        def finish(self) -> None:
            self.inner.finish()

        def on_connection_close(self) -> None:
            self.inner.on_connection_close()

    class Draining(HTTPServer):
        """Knows each connection's state: None (no request yet), True (a request in progress), False (idle).

        tornado asks for a new request delegate right after the previous response is finished, so
        ``start_request`` on a known connection means it is idle again.
        """

        states: dict[object, bool | None]

        def start_request(self, server_conn: object, request_conn: httputil.HTTPConnection) -> Any:
            states = self.__dict__.setdefault("states", {})
            states[server_conn] = None if server_conn not in states else False
            return Tracked(super().start_request(server_conn, request_conn), states, server_conn)

        def on_close(self, server_conn: object) -> None:
            self.__dict__.setdefault("states", {}).pop(server_conn, None)
            super().on_close(server_conn)

    return Draining(app, **options)


async def drain(
    server: HTTPServer,
    timeout: float,
    hammer: threading.Event | None = None,
    *,
    idle_grace: float = DEFAULT_GRACE,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Stop accepting, let requests finish (their responses say Connection: close), close connections
    silent for ``idle_grace`` seconds of the drain (FIN, then tornado reads the client's close), and
    after ``timeout`` close the rest; return how many were cut. ``clock``: the grace's clock."""
    server.stop()  # removes the accept handlers, closes this process's copies of the sockets
    server.conn_params.no_keep_alive = True  # requests read from now on are answered with Connection: close
    states: dict[Any, bool | None] = server.__dict__.setdefault("states", {})
    deadline = time.monotonic() + timeout
    began = clock()
    grace = grace_within(idle_grace, timeout)
    idle_since: dict[Any, float] = {}
    fin: dict[Any, float] = {}
    closing: dict[Any, asyncio.Future[None]] = {}
    while True:
        now = clock()
        for conn, state in list(states.items()):
            if conn in closing:
                continue
            if conn in fin:
                if time.monotonic() - fin[conn] >= LINGER:  # the client ignored our FIN
                    closing[conn] = asyncio.ensure_future(conn.close())
            elif state is False and not _arriving(conn):
                # tornado reads a request's head and calls headers_received() a loop iteration
                # later: _arriving() sees those bytes in its buffer meanwhile.
                if expired(idle_since.setdefault(conn, now), began, now, grace):
                    fin[conn] = time.monotonic()
                    sock = getattr(getattr(conn, "stream", None), "socket", None)
                    if sock is None or not half_close(sock):
                        closing[conn] = asyncio.ensure_future(conn.close())
            else:
                idle_since.pop(conn, None)
        open_ = [conn for conn in states if conn not in closing]
        if not open_ or time.monotonic() >= deadline or (hammer is not None and hammer.is_set()):
            break
        await asyncio.sleep(0.02)
    cut = sum(1 for conn in states if conn not in closing)
    await server.close_all_connections()
    await asyncio.gather(*closing.values(), return_exceptions=True)
    return cut


def _arriving(conn: Any) -> bool:
    """Request bytes wait in the kernel or in tornado's read buffer: it is about to be busy."""
    stream = getattr(conn, "stream", None)
    if stream is None:
        return False
    return bool(getattr(stream, "_read_buffer_size", 0)) or unread(getattr(stream, "socket", None))
