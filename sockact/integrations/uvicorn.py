"""Run an ASGI app with uvicorn on sockact's listeners: activation, fallback bind, READY, in-place reload.

    from sockact.integrations import uvicorn as sockact_uvicorn
    sockact_uvicorn.run(app, "127.0.0.1:8000", drain_timeout=30)

Every inherited socket is handed to ``uvicorn.Server.serve(sockets=...)`` as the socket it is (TCP,
IPv6 or unix) — uvicorn's own ``--fd`` assumes AF_UNIX. uvicorn's signal handling is replaced by the
upgrader's (SIGHUP reloads in place; SIGTERM/SIGINT drain; a second one cuts the drain short).
uvicorn's graceful shutdown closes idle keep-alive connections at once — under a client whose next
request is on its way — so the drain first makes every response say ``Connection: close`` and starts
that shutdown only once no request has run, begun or ended for ``idle_grace`` seconds
(:mod:`sockact.integrations._quiet`) — at once when no connection is open and it serves no TLS —
with what is left of ``drain_timeout`` as ``timeout_graceful_shutdown``. Until the drain the app is
called as it is: uvicorn echoes a client's ``Connection: close`` itself and counts the requests it
answered, so there is no per-request middleware: the drain polls uvicorn's books (each connection's
current request, ``server_state.total_requests``) and adds ``Connection: close`` to the responses of
requests already running when it starts. Other keyword arguments go to ``uvicorn.Config``
(``ssl_certfile=``, ``ssl_keyfile=``, ``log_level=``…); the app is served as ASGI 3.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator, MutableMapping
from typing import Any

from ..serve._grace import DEFAULT_GRACE
from ._quiet import Activity, closing_when_draining
from ._service import Listen, Service, finish, ready_async

__all__ = ["run", "serve"]


def run(app: Any, listen: Listen = "127.0.0.1:8000", **options: Any) -> str:
    """:func:`serve` in a new event loop: serve ``app`` until a successor took over (``"upgraded"``)
    or a stop signal (``"stop"``), both after draining. ``"failed"``: uvicorn stopped by itself (its
    log says why, e.g. a failed lifespan start-up).

    Raises:
        SockactError: the listeners could not be taken or bound (the message names the address).
        ValueError: ``interface=`` other than ``"asgi3"`` or ``"auto"``, or a negative ``idle_grace``.
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

    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Generator[None, None, None]:
            yield  # the upgrader owns the signals

    if config.get("interface", "auto") not in ("auto", "asgi3"):
        raise ValueError(f"sockact's uvicorn integration serves ASGI 3 apps, not interface={config['interface']!r}")
    config["interface"] = "asgi3"  # the wrapper below is a plain function: uvicorn's "auto" would say ASGI 2
    config.setdefault("timeout_graceful_shutdown", drain_timeout)
    with Service(
        listen, drain_timeout=drain_timeout, ready_timeout=ready_timeout, pidfile=pidfile, environ=environ
    ) as service:
        activity = Activity(idle_grace, requests=lambda: _requests(server))
        server = Server(uvicorn.Config(closing_when_draining(app, activity), **config))
        task = asyncio.ensure_future(server.serve(sockets=service.sockets))
        while not server.started:  # uvicorn has no started event; bounded by the task itself
            if task.done():
                await task
                return "failed"
            await asyncio.wait([task], timeout=0.01)
        await ready_async(service, "uvicorn")
        waiting = asyncio.ensure_future(service.upgrader.wait_async())
        await asyncio.wait([task, waiting], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            waiting.cancel()
            await task
            return "failed"
        outcome = waiting.result()
        deadline = time.monotonic() + drain_timeout
        await service.stop_accepting()
        activity.draining = True  # requests from now on answer with Connection: close, and so do
        _close_after_running(server)  # those running now, whose responses have not started
        count = None if server.config.is_ssl else (lambda: len(server.server_state.connections))
        await activity.quiet(drain_timeout, service.upgrader.hammer, count)
        server.config.timeout_graceful_shutdown = max(deadline - time.monotonic(), 0.1)  # type: ignore[assignment]
        server.should_exit = True
        await finish(task, service.upgrader.hammer, lambda: setattr(server, "force_exit", True))
        return outcome


def _running(server: Any) -> list[Any]:
    """The request cycles in progress on uvicorn's HTTP connections (h11 and httptools both keep the
    current one as ``cycle``, as uvicorn's own shutdown reads it; a websocket has none)."""
    cycles = (getattr(connection, "cycle", None) for connection in list(server.server_state.connections))
    return [cycle for cycle in cycles if cycle is not None and not cycle.response_complete]


def _requests(server: Any) -> tuple[int, int]:
    """(HTTP requests in flight, requests answered so far), from uvicorn's own books."""
    return len(_running(server)), server.server_state.total_requests


def _close_after_running(server: Any) -> None:
    """Make the responses of requests running now, not started yet, say ``Connection: close``, and
    the connection close after them. Without it uvicorn's shutdown would end such a connection after
    a response that let its client send another request on it.

    h11: its connection is told keep-alive is off (``process_keep_alive_disabled``, what a client's
    own close does), so h11 writes the response's Connection itself — ``close``, an app's
    ``keep-alive`` dropped, one header. httptools (no h11 state): ``close`` joins the cycle's default
    headers, which uvicorn sends first; an app's own ``keep-alive`` then follows it, and the close
    still wins (RFC 9110 §7.6.1: the close option ends the connection)."""
    for cycle in _running(server):
        if cycle.response_started:
            continue
        disable = getattr(getattr(getattr(cycle, "conn", None), "_cstate", None), "process_keep_alive_disabled", None)
        if callable(disable):
            disable()
        else:
            cycle.default_headers = [*cycle.default_headers, (b"connection", b"close")]
