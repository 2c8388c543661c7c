"""What the server examples share: the command line, logging, and the same two endpoints as ASGI
and WSGI apps (``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S`` → the same after S seconds)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sockact

MAX_SLEEP = 60.0


def parse_args(doc: str | None, argv: list[str] | None = None, *, limits: bool = False) -> argparse.Namespace:
    """The examples' shared options (``limits``: also --max-connections); sets up journal-friendly logging."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="address in ListenStream= syntax")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish in-flight requests")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a successor has to be ready")
    parser.add_argument("--pidfile", help="hand over by PID file (pair with PIDFile= in the unit)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    if limits:
        parser.add_argument("--max-connections", type=int, help="per listener; more wait in the backlog")
    args = parser.parse_args(argv)
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if limits and args.max_connections is not None and args.max_connections < 1:
        parser.error("--max-connections must be at least 1")
    try:
        args.tls = server_tls(args)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        parser.error(f"--certfile/--keyfile: {exc}")
    handler = logging.StreamHandler()
    name = os.path.splitext(parser.prog)[0]
    handler.setFormatter(sockact.JournalFormatter(f"{name}[%(process)d]: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return args


def server_tls(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A server-side TLS context from --certfile/--keyfile, or None."""
    if not args.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


def sleep_seconds(query: str) -> float:
    """The ``seconds`` of ``/sleep?seconds=S``, clamped to [0, 60]; ValueError if not a number."""
    seconds = float(urllib.parse.parse_qs(query).get("seconds", ["1"])[0])
    return min(max(seconds, 0.0), MAX_SLEEP)


def pid_body() -> bytes:
    return f"pid {os.getpid()}\n".encode()


def run_main(serve: Callable[[], str]) -> int:
    """Run ``serve``; a sockact error (bad address, port taken, bad LISTEN_*) is one log line and exit 2."""
    try:
        outcome = serve()
    except sockact.SockactError as exc:
        logging.getLogger("example").error("%s", exc)
        return 2
    logging.getLogger("example").info("%s; drained", outcome)
    return 1 if outcome == "failed" else 0


async def asgi_app(
    scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Callable[[Any], Awaitable[None]]
) -> None:
    """The endpoints as an ASGI 3 app (lifespan supported, nothing to do)."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    status, body = 200, b""
    if scope["path"] == "/sleep":
        try:
            await asyncio.sleep(sleep_seconds(scope.get("query_string", b"").decode("latin-1")))
        except ValueError:
            status, body = 400, b"seconds must be a number\n"
    elif scope["path"] != "/":
        status, body = 404, b"not found\n"
    body = body or pid_body()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The endpoints as a WSGI app."""
    status, body = "200 OK", b""
    if environ.get("PATH_INFO") == "/sleep":
        try:
            time.sleep(sleep_seconds(environ.get("QUERY_STRING", "")))
        except ValueError:
            status, body = "400 Bad Request", b"seconds must be a number\n"
    elif environ.get("PATH_INFO") != "/":
        status, body = "404 Not Found", b"not found\n"
    body = body or pid_body()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
