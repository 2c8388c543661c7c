"""Apps for ``sockact serve`` tests, one per kind: ``GET /`` → ``pid <pid>``, ``GET /sleep?seconds=S``
answers the same after S (≤ 60) seconds. Imported by the server process (``--app-dir tests``), so
the server packages are imported only by the attribute that needs them."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import Any


def _seconds(query: str) -> float:
    return min(max(float(urllib.parse.parse_qs(query).get("seconds", ["1"])[0]), 0.0), 60.0)


def _body() -> bytes:
    return f"pid {os.getpid()}\n".encode()


async def asgi(
    scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]], send: Callable[..., Awaitable[None]]
) -> None:
    """An ASGI 3 app (uvicorn, hypercorn)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["path"] == "/sleep":
        await asyncio.sleep(_seconds(scope.get("query_string", b"").decode("latin-1")))
    body = _body()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_asgi() -> Callable[..., Awaitable[None]]:
    """A factory (``--factory``) returning the ASGI app."""
    return asgi


def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app (waitress, hypercorn)."""
    if environ.get("PATH_INFO") == "/sleep":
        time.sleep(_seconds(environ.get("QUERY_STRING", "")))
    body = _body()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def make_aiohttp() -> Any:
    """An aiohttp ``web.Application`` factory."""
    from aiohttp import web

    async def index(request: web.Request) -> web.Response:
        if request.path == "/sleep":
            await asyncio.sleep(_seconds(request.query_string))
        return web.Response(text=_body().decode())

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/sleep", index)
    return app


async def make_aiohttp_async() -> Any:
    """An async factory, as ``python -m aiohttp.web`` accepts."""
    await asyncio.sleep(0)
    return make_aiohttp()


def make_tornado() -> Any:
    """A tornado ``web.Application`` factory."""
    import tornado.web

    class Index(tornado.web.RequestHandler):
        async def get(self) -> None:
            if self.request.path == "/sleep":
                await asyncio.sleep(_seconds(self.request.query))
            self.set_header("Content-Type", "text/plain")
            self.write(_body())

    return tornado.web.Application([(r"/", Index), (r"/sleep", Index)], log_function=lambda handler: None)


def needs_arguments(name: str) -> Any:
    """A "factory" that cannot be called without arguments."""
    return name


not_an_app = 42


def __getattr__(name: str) -> Any:
    """``aiohttp_app`` and ``tornado_app``: the apps themselves (no --factory), made when asked for, so
    that serving one kind imports no other server."""
    if name == "aiohttp_app":
        return make_aiohttp()
    if name == "tornado_app":
        return make_tornado()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
