"""Run an ASGI app with uvicorn on sockact's listeners: activation, fallback bind, READY, in-place reload.

    from sockact.integrations import uvicorn as sockact_uvicorn
    sockact_uvicorn.run(app, "127.0.0.1:8000", drain_timeout=30)

Every inherited socket is handed to ``uvicorn.Server.serve(sockets=...)`` as the socket it is (TCP,
IPv6 or unix) — uvicorn's own ``--fd`` assumes AF_UNIX. uvicorn's signal handling is replaced by the
upgrader's (SIGHUP reloads in place; SIGTERM/SIGINT drain; a second one cuts the drain short).
uvicorn's graceful shutdown closes idle keep-alive connections at once — under a client whose next
request is on its way — so the drain first makes every response say ``Connection: close`` and starts
that shutdown only once no request has ended for ``idle_grace`` seconds
(:mod:`sockact.integrations._quiet`) — at once when no connection is open and it serves no TLS —
with what is left of ``drain_timeout`` as ``timeout_graceful_shutdown``. Until the drain the app is
called as it is: uvicorn echoes a client's ``Connection: close`` itself and counts the requests it
answered (``server_state.total_requests``, which the drain polls), so there is no per-request
middleware. Other keyword arguments go to ``uvicorn.Config`` (``ssl_certfile=``, ``ssl_keyfile=``,
``log_level=``…); the app is served as ASGI 3.
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
        ValueError: ``interface=`` other than ``"asgi3"``, or a negative ``idle_grace``.
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

    if config.setdefault("interface", "asgi3") != "asgi3":
        raise ValueError(f"sockact's uvicorn integration serves ASGI 3 apps, not interface={config['interface']!r}")
    config.setdefault("timeout_graceful_shutdown", drain_timeout)
    with Service(
        listen, drain_timeout=drain_timeout, ready_timeout=ready_timeout, pidfile=pidfile, environ=environ
    ) as service:
        activity = Activity(idle_grace, finished=lambda: server.server_state.total_requests)
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
        count = None if server.config.is_ssl else (lambda: len(server.server_state.connections))
        await activity.quiet(drain_timeout, service.upgrader.hammer, count)
        server.config.timeout_graceful_shutdown = max(deadline - time.monotonic(), 0.1)  # type: ignore[assignment]
        server.should_exit = True
        await finish(task, service.upgrader.hammer, lambda: setattr(server, "force_exit", True))
        return outcome
