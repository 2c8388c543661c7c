"""Run an ASGI (or WSGI) app with hypercorn on sockact's listeners, with in-place reload.

    from sockact.integrations import hypercorn as sockact_hypercorn
    sockact_hypercorn.run(app, "127.0.0.1:8000", drain_timeout=30, certfile=..., keyfile=...)

The sockets go to hypercorn's asyncio worker as they are (TCP, IPv6 or unix); hypercorn's signal
handling is replaced by the upgrader's. hypercorn's graceful shutdown closes idle keep-alive
connections at once, so the drain first makes every HTTP/1 response say ``Connection: close`` (an
ASGI middleware around the wrapped app) and starts that shutdown only once no request has begun or
ended for ``idle_grace`` seconds, with what is left of ``drain_timeout`` as ``graceful_timeout``.
HTTP/2 has no ``Connection: close``; its equivalent is GOAWAY (RFC 9113 §6.8). When the drain
begins, every HTTP/2 connection gets the graceful-shutdown notice, a GOAWAY with NO_ERROR and the
last stream id 2^31-1: the client opens no new stream on it (its next request goes to a new
connection, which the successor accepts), and every stream already open, or in flight towards the
server, is still served. When hypercorn's own shutdown closes a connection that has gone idle, it
gets the final GOAWAY (the last stream id served) first.

Other keyword arguments set ``hypercorn.config.Config`` attributes (``certfile=``, ``keyfile=``,
``keep_alive_timeout=``…); with a certificate every listener serves TLS. hypercorn re-``listen()``s
each socket with ``Config.backlog``: sockact sets it to ``socket.SOMAXCONN`` (systemd's default
Backlog=) unless given.

:func:`serve` installs a ``TCPServer`` subclass in ``hypercorn.asyncio.run`` for two things: it
keeps the live connections (so the drain can reach the HTTP/2 ones), and it tolerates an
``ssl.SSLError`` in hypercorn 0.18's connection close. Uncaught, that error — a TLS client sending a
request on a keep-alive connection while hypercorn closes it, the ordinary idle-close race of a
drain — fails hypercorn's whole graceful shutdown and cuts every request still in flight.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from collections.abc import MutableMapping
from typing import Any

from .._errors import SockactError
from ..serve._grace import DEFAULT_GRACE
from ._quiet import Activity, asgi_middleware
from ._service import Listen, Service, finish, ready_async

__all__ = ["run", "serve"]

#: The connections of this process's hypercorn (``TCPServer`` objects, see :func:`_install_server`) —
#: one hypercorn per process, as :func:`run` starts it — and whether its drain has begun.
_CONNECTIONS: weakref.WeakSet[Any] = weakref.WeakSet()
_DRAINING = False
#: RFC 9113 §6.8: GOAWAY on stream 0, last stream id 2^31-1, NO_ERROR — "stop opening streams here".
_SHUTDOWN_NOTICE = bytes([0, 0, 8, 7, 0, 0, 0, 0, 0, 0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])


def run(app: Any, listen: Listen = "127.0.0.1:8000", **options: Any) -> str:
    """:func:`serve` in a new event loop: serve ``app`` until a successor took over (``"upgraded"``)
    or a stop signal (``"stop"``), then drain; ``"failed"`` if hypercorn stopped by itself.

    Raises:
        SockactError: the listeners could not be taken or bound.
        SockactError: a keyword is not a hypercorn Config attribute.
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
    **config: Any,
) -> str:
    """:func:`run` in the running loop (the common options: :mod:`sockact.integrations`)."""
    import time

    from hypercorn.asyncio.run import worker_serve
    from hypercorn.config import Config, Sockets
    from hypercorn.utils import wrap_app

    global _DRAINING
    _install_server()
    _DRAINING = False  # this serve()'s drain has not begun, whatever an earlier one in this process did
    cfg = Config()
    cfg.graceful_timeout = drain_timeout
    cfg.backlog = socket.SOMAXCONN
    for key, value in config.items():
        if not hasattr(cfg, key):
            raise SockactError(f"hypercorn's Config has no option {key!r}; see hypercorn's configuration docs")
        setattr(cfg, key, value)
    with Service(
        listen, drain_timeout=drain_timeout, ready_timeout=ready_timeout, pidfile=pidfile, environ=environ
    ) as service:
        secure = cfg.ssl_enabled
        sockets = Sockets(
            secure_sockets=service.sockets if secure else [],
            insecure_sockets=[] if secure else service.sockets,
            quic_sockets=[],
        )
        accepting = asyncio.Event()
        shutdown = asyncio.Event()

        async def trigger() -> None:  # hypercorn awaits this once every server accepts
            accepting.set()
            await shutdown.wait()

        activity = Activity(idle_grace)
        wrapped = asgi_middleware(wrap_app(app, cfg.wsgi_max_body_size, None), activity)
        task = asyncio.ensure_future(worker_serve(wrapped, cfg, sockets=sockets, shutdown_trigger=trigger))  # type: ignore[arg-type]
        started = asyncio.ensure_future(accepting.wait())
        await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            started.cancel()
            await task
            return "failed"
        await ready_async(service, "hypercorn")
        waiting = asyncio.ensure_future(service.upgrader.wait_async())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiting.cancel()
            await task
            return "failed"
        outcome = waiting.result()
        deadline = time.monotonic() + drain_timeout
        await service.stop_accepting()
        _announce_shutdown()
        await activity.quiet(drain_timeout, service.upgrader.hammer)
        cfg.graceful_timeout = max(deadline - time.monotonic(), 0.1)
        shutdown.set()
        await finish(task, service.upgrader.hammer, task.cancel)
        return outcome


def _announce_shutdown() -> None:
    """Send the graceful-shutdown GOAWAY (:data:`_SHUTDOWN_NOTICE`) on every live HTTP/2 connection,
    and from now on on every connection that becomes HTTP/2 (one still in its TLS handshake, or an
    h2c one whose preface has not arrived yet): see ``Server.protocol_send``.

    Written beside h2's state machine, not through it: h2 has no call for this first GOAWAY (its
    ``close_connection()`` is the final one, after which it refuses to send the open streams'
    responses). The write is synchronous — no lock, no ``drain()`` — so a client that stopped reading
    cannot hold up the drain; hypercorn writes whole frames, so the frame lands between two of them.
    """
    global _DRAINING
    _DRAINING = True
    for server in list(_CONNECTIONS):
        _notify(server)


def _h2(server: Any) -> Any:
    """The connection's HTTP/2 protocol object, or None (HTTP/1, not started, or closed)."""
    from hypercorn.protocol.h2 import H2Protocol

    protocol = getattr(getattr(server, "protocol", None), "protocol", None)
    return protocol if isinstance(protocol, H2Protocol) and not protocol.closed else None


def _write(server: Any, data: bytes) -> None:
    try:
        server.writer.write(data)
    except (OSError, RuntimeError):
        pass  # the connection is going: nothing to tell it


def _notify(server: Any) -> None:
    if _h2(server) is not None and not getattr(server, "_sockact_notified", False):
        server._sockact_notified = True
        _write(server, _SHUTDOWN_NOTICE)


def _final_goaway(server: Any) -> None:
    """Before hypercorn closes an idle HTTP/2 connection: the final GOAWAY, naming the last stream served
    (hypercorn sends it only when a stream ends during its shutdown, not for a connection already idle)."""
    protocol = _h2(server)
    if protocol is not None:
        try:
            protocol.connection.close_connection()
        except Exception:  # h2 already closed (ProtocolError): it closes anyway
            return
        _write(server, protocol.connection.data_to_send())


def _install_server() -> None:
    import ssl

    import hypercorn.asyncio.run as hypercorn_run
    from hypercorn.asyncio.tcp_server import TCPServer

    if getattr(hypercorn_run, "TCPServer", None) is not TCPServer:  # ours already, or a changed hypercorn
        return

    class Server(TCPServer):
        _sockact = True

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            _CONNECTIONS.add(self)

        async def protocol_send(self, event: Any) -> None:
            await super().protocol_send(event)
            if _DRAINING:  # e.g. the SETTINGS of a connection that became HTTP/2 after the drain began
                _notify(self)

        async def _initiate_server_close(self) -> None:  # an idle connection, at shutdown or keep-alive timeout
            _final_goaway(self)
            await super()._initiate_server_close()

        async def _close(self) -> None:
            try:
                await super()._close()
            except ssl.SSLError:  # e.g. APPLICATION_DATA_AFTER_CLOSE_NOTIFY: the client spoke as we closed
                await self.idle_task.stop()

    hypercorn_run.TCPServer = Server  # type: ignore[attr-defined]
