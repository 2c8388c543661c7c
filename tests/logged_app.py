"""``python tests/logged_app.py ADDR GATE``: an ASGI app on the uvicorn integration that leaves logging
unconfigured, as a first app does; its start-up (ASGI lifespan) fails unless the file GATE exists, so
a successor started while GATE is missing exits before READY=1."""

from __future__ import annotations

import os
import sys
from typing import Any

from sockact.integrations import uvicorn as integration


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()  # lifespan.startup
        if not os.path.exists(sys.argv[2]):
            await send({"type": "lifespan.startup.failed", "message": "the gate is closed"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = f"pid {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


if __name__ == "__main__":
    print(integration.run(app, sys.argv[1], drain_timeout=5, ready_timeout=20, log_level="warning"))
