"""An asyncio HTTP/1.1 keep-alive server on sockact's listeners, with in-place reload.

    python examples/asyncio_server.py [--listen ADDR] [--drain-timeout S] [--pidfile PATH]
        [--certfile PEM --keyfile PEM] [--max-connections N]

Same endpoints and signals as examples/http_server.py: ``GET /`` → ``pid <pid>``,
``GET /sleep?seconds=S``; SIGHUP reloads, SIGTERM/SIGINT drain.

A template: copied alone, it runs wherever ``pip install sockact`` did.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import ssl
import sys
import urllib.parse

import sockact
from sockact.serve import Acceptor, ConnectionSet

log = logging.getLogger("asyncio_server")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (the other examples take the same); logs go to stderr with journald priorities."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="address in ListenStream= syntax")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish in-flight requests")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a successor has to be ready")
    parser.add_argument("--pidfile", help="hand over by PID file (pair with PIDFile= in the unit)")
    parser.add_argument("--certfile", help="serve HTTPS with this certificate chain (PEM)")
    parser.add_argument("--keyfile", help="the certificate's private key (PEM)")
    parser.add_argument("--max-connections", type=int, help="per listener; more wait in the backlog")
    args = parser.parse_args(argv)
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if args.max_connections is not None and args.max_connections < 1:
        parser.error("--max-connections must be at least 1")
    args.tls = None
    if args.certfile:
        args.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            args.tls.load_cert_chain(args.certfile, args.keyfile)
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            parser.error(f"--certfile/--keyfile: {exc}")
    handler = logging.StreamHandler()
    handler.setFormatter(sockact.JournalFormatter("asyncio_server[%(process)d]: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return args


class HTTP(asyncio.Protocol):
    """A minimal HTTP/1.1 server protocol: GET only, keep-alive, requests answered in order."""

    def __init__(self, connections: ConnectionSet) -> None:
        self.connections = connections
        self.buffer = b""
        self.responding = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.connections.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if not self.connections.busy(self.transport):
            return  # the drain closed this idle connection (FIN sent): nothing more is answered
        self.buffer += data
        self.process()

    def process(self) -> None:
        assert self.transport is not None
        while not self.responding and b"\r\n\r\n" in self.buffer:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            close = headers.get("connection", "").lower() == "close"
            if len(parts) != 3 or parts[0] != "GET":
                self.respond(400, b"bad request\n", close=True)
                return
            url = urllib.parse.urlsplit(parts[1])
            if url.path == "/sleep":
                try:
                    seconds = float(urllib.parse.parse_qs(url.query).get("seconds", ["1"])[0])
                except ValueError:
                    self.respond(400, b"seconds must be a number\n", close=close)
                    continue
                self.responding = True
                loop = asyncio.get_running_loop()
                loop.call_later(min(max(seconds, 0.0), 60.0), self.finish_sleep, close)
                return
            if url.path != "/":
                self.respond(404, b"not found\n", close=close)
                continue
            self.respond(200, f"pid {os.getpid()}\n".encode(), close=close)
        if not self.responding and not self.buffer and not self.transport.is_closing():
            self.connections.idle(self.transport)

    def finish_sleep(self, close: bool) -> None:
        self.responding = False
        self.respond(200, f"pid {os.getpid()}\n".encode(), close=close)
        self.process()

    def respond(self, code: int, body: bytes, *, close: bool) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        close = close or self.connections.draining
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[code]
        head = (
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "")
            + "\r\n"
        )
        self.transport.write(head.encode() + body)
        if close:
            self.transport.close()


async def serve(args: argparse.Namespace) -> int:
    try:
        listeners = sockact.get_listeners({"http": args.listen})
    except sockact.SockactError as exc:
        log.error("%s", exc)
        return 2
    connections = ConnectionSet()
    with (
        listeners,
        sockact.Upgrader(
            listeners, pidfile=args.pidfile, ready_timeout=args.ready_timeout, drain_timeout=args.drain_timeout
        ) as upgrader,
    ):
        acceptor = Acceptor(
            listeners.values(),
            lambda: HTTP(connections),
            connections,
            ssl=args.tls,
            max_connections=args.max_connections,
        ).start()
        log.info("serving on %r", listeners)
        listeners.close_unclaimed()
        sockact.ready(f"serving on {args.listen}")
        outcome = await upgrader.wait_async()
        cut = await connections.drain([acceptor], args.drain_timeout, upgrader.hammer)
        log.info("%s; drained (%d connection(s) cut)", outcome, cut)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return asyncio.run(serve(args))
    except sockact.SockactError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
