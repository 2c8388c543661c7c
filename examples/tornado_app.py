"""A tornado web app on sockact's listeners, with in-place reload.

    python examples/tornado_app.py [--listen ADDR] [--drain-timeout S] [--certfile PEM --keyfile PEM]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S``. SIGHUP reloads in place; SIGTERM drains.

A template: copied alone, it runs wherever ``pip install 'sockact[tornado]'`` did.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
import urllib.parse
from typing import Any

import tornado.web

import sockact
from sockact.integrations import tornado as sockact_tornado

log = logging.getLogger("tornado_app")


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
    handler.setFormatter(sockact.JournalFormatter("tornado_app[%(process)d]: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return args


def sleep_seconds(query: str) -> float:
    """The ``seconds`` of ``/sleep?seconds=S``, clamped to [0, 60]; ValueError if not a number."""
    return min(max(float(urllib.parse.parse_qs(query).get("seconds", ["1"])[0]), 0.0), 60.0)


class Index(tornado.web.RequestHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.write(f"pid {os.getpid()}\n")


class Sleep(tornado.web.RequestHandler):
    async def get(self) -> None:
        try:
            seconds = sleep_seconds(self.request.query)
        except ValueError:
            raise tornado.web.HTTPError(400, "seconds must be a number") from None
        await asyncio.sleep(seconds)
        self.set_header("Content-Type", "text/plain")
        self.write(f"pid {os.getpid()}\n")


def make_app() -> tornado.web.Application:
    return tornado.web.Application([(r"/", Index), (r"/sleep", Sleep)], log_function=lambda handler: None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options: dict[str, Any] = {"ssl_options": args.tls} if args.tls else {}
    try:
        outcome = sockact_tornado.run(
            make_app(),
            args.listen,
            drain_timeout=args.drain_timeout,
            ready_timeout=args.ready_timeout,
            pidfile=args.pidfile,
            **options,
        )
    except sockact.SockactError as exc:  # a bad address, a port taken, a bad LISTEN_*: one line, exit 2
        log.error("%s", exc)
        return 2
    log.info("%s; drained", outcome)
    return 1 if outcome == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
