"""An ASGI app served by uvicorn on sockact's listeners, with in-place reload.

    python examples/uvicorn_app.py [--listen ADDR] [--drain-timeout S] [--certfile PEM --keyfile PEM]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S``. SIGHUP reloads in place; SIGTERM drains.

A template: copied alone, it runs wherever ``pip install 'sockact[uvicorn]'`` did.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import sockact
from sockact.integrations import uvicorn as sockact_uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

log = logging.getLogger("uvicorn_app")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (the other examples take the same); logs go to stderr with journald priorities."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="address in ListenStream= syntax")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish in-flight requests")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a successor has to be ready")
    parser.add_argument("--pidfile", help="hand over by PID file (pair with PIDFile= in the unit)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    args = parser.parse_args(argv)
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    args.tls = None
    if args.certfile:
        args.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            args.tls.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            parser.error(f"--certfile/--keyfile: {exc}")
    handler = logging.StreamHandler()
    handler.setFormatter(sockact.JournalFormatter("uvicorn_app[%(process)d]: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return args


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """An ASGI 3 app: ``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S`` → the same after S (≤ 60) seconds."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    status, body = 200, f"pid {os.getpid()}\n".encode()
    if scope["path"] == "/sleep":
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"))
        try:
            await asyncio.sleep(min(max(float(query.get("seconds", ["1"])[0]), 0.0), 60.0))
        except ValueError:
            status, body = 400, b"seconds must be a number\n"
    elif scope["path"] != "/":
        status, body = 404, b"not found\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tls = {"ssl_certfile": args.certfile, "ssl_keyfile": args.keyfile} if args.certfile else {}
    try:
        outcome = sockact_uvicorn.run(
            app,
            args.listen,
            drain_timeout=args.drain_timeout,
            ready_timeout=args.ready_timeout,
            pidfile=args.pidfile,
            log_level="warning",
            **tls,
        )
    except sockact.SockactError as exc:  # a bad address, a port taken, a bad LISTEN_*: one line, exit 2
        log.error("%s", exc)
        return 2
    log.info("%s; drained", outcome)
    return 1 if outcome == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
