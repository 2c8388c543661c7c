"""Run an aiohttp ``web.Application`` on sockact's listeners, with in-place reload.

    from sockact.integrations import aiohttp as sockact_aiohttp
    sockact_aiohttp.run(app, "127.0.0.1:8000", drain_timeout=30, ssl_context=ctx)

Each socket becomes a ``web.SockSite`` (its family kept: TCP, IPv6 or unix) on one ``AppRunner``
without aiohttp's signal handling; the upgrader owns the signals. ``AppRunner.cleanup()`` —
aiohttp's graceful shutdown — closes idle keep-alive connections at once, so the drain first makes
every response close its connection (a middleware and an ``on_response_prepare`` hook added to
``app``) and calls it only once no request has begun or ended for ``idle_grace`` seconds, with what
is left of ``drain_timeout`` as its ``shutdown_timeout``.
``ssl_context`` serves HTTPS on every listener; other keyword arguments go to ``web.AppRunner``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import MutableMapping
from typing import Any

from ..serve._grace import DEFAULT_GRACE
from ._quiet import Activity
from ._service import Listen, Service, finish, ready_async

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
    ssl_context: ssl.SSLContext | None = None,
    idle_grace: float = DEFAULT_GRACE,
    **runner_options: Any,
) -> str:
    """:func:`run` in the running loop (the common options: :mod:`sockact.integrations`)."""
    import time

    from aiohttp import web

    activity = Activity(idle_grace)

    @web.middleware
    async def count(request: Any, handler: Any) -> Any:
        activity.begin()
        try:
            return await handler(request)
        finally:
            activity.end()

    async def last_response(request: Any, response: Any) -> None:
        if activity.draining:
            response.force_close()  # aiohttp closes the connection after this response
            if request.version >= (1, 1):  # aiohttp ≥ 3.10 has chosen the headers before this hook runs
                response.headers["Connection"] = "close"

    app.middlewares.append(count)
    app.on_response_prepare.append(last_response)

    with Service(
        listen, drain_timeout=drain_timeout, ready_timeout=ready_timeout, pidfile=pidfile, environ=environ
    ) as service:
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=drain_timeout, **runner_options)
        await runner.setup()
        try:
            for sock in service.sockets:
                site = web.SockSite(runner, sock, ssl_context=ssl_context, backlog=socket.SOMAXCONN)
                await site.start()
            await ready_async(service, "aiohttp")
            outcome = await service.upgrader.wait_async()
            deadline = time.monotonic() + drain_timeout
            await service.stop_accepting()
            tls = ssl_context is not None
            await activity.quiet(drain_timeout, service.upgrader.hammer, None if tls else lambda: _open(runner))
            if hasattr(runner, "_shutdown_timeout"):  # aiohttp reads it when cleanup() runs
                runner._shutdown_timeout = max(deadline - time.monotonic(), 0.1)
            cleanup = asyncio.ensure_future(runner.cleanup())
            await finish(cleanup, service.upgrader.hammer, cleanup.cancel)
        finally:
            await runner.cleanup()  # idempotent; after an error above it still closes every site
        return outcome


def _open(runner: Any) -> int:
    """The connections ``runner``'s server has open; 1 when it has no server yet (the grace decides)."""
    server = runner.server
    return 1 if server is None else len(server.connections)
