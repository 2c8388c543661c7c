"""``python tests/gated_app.py SERVER GATE ADDR``: an example app whose start-up (ASGI lifespan, or
aiohttp's on_startup) waits until the file GATE exists — so a test can see whether READY=1 waits for it."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples"))

from uvicorn_app import app as asgi_app


async def wait_gate(gate: str) -> None:
    for _ in range(6000):  # bounded: 60 s
        if os.path.exists(gate):
            return
        await asyncio.sleep(0.01)


def main(server: str, gate: str, listen: str) -> str:
    if server == "aiohttp":
        from aiohttp_app import make_app

        from sockact.integrations import aiohttp as integration

        web_app = make_app()

        async def on_startup(_: Any) -> None:
            await wait_gate(gate)

        web_app.on_startup.append(on_startup)
        return integration.run(web_app, listen)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()  # lifespan.startup
            await wait_gate(gate)
            await send({"type": "lifespan.startup.complete"})
            await receive()  # lifespan.shutdown
            await send({"type": "lifespan.shutdown.complete"})
            return
        await asgi_app(scope, receive, send)

    if server == "uvicorn":
        from sockact.integrations import uvicorn as asgi

        return asgi.run(app, listen, log_level="warning")
    from sockact.integrations import hypercorn as asgi  # type: ignore[no-redef]

    return asgi.run(app, listen)


if __name__ == "__main__":
    print(main(*sys.argv[1:4]))
