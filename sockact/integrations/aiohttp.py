"""Run an aiohttp ``web.Application`` on sockact's listeners, with in-place reload.

    from sockact.integrations import aiohttp as sockact_aiohttp
    sockact_aiohttp.run(app, "127.0.0.1:8000", drain_timeout=30, ssl_context=ctx)

Each socket becomes a ``web.SockSite`` (its family kept: TCP, IPv6 or unix) on one ``AppRunner``
without aiohttp's signal handling; the upgrader owns the signals, and ``AppRunner.cleanup()`` —
aiohttp's graceful shutdown with ``shutdown_timeout`` := ``drain_timeout`` — drains.
``ssl_context`` serves HTTPS on every listener; other keyword arguments go to ``web.AppRunner``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import MutableMapping
from typing import Any

from ._service import Listen, Service, finish, quiesce, ready_async

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
    **runner_options: Any,
) -> str:
    """:func:`run` in the running loop (the common options: :mod:`sockact.integrations`)."""
    from aiohttp import web

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
            await quiesce(service.sockets)
            cleanup = asyncio.ensure_future(runner.cleanup())
            await finish(cleanup, service.upgrader.hammer, cleanup.cancel)
        finally:
            await runner.cleanup()  # idempotent; after an error above it still closes every site
        return outcome
