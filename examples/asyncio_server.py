"""An asyncio HTTP/1.1 keep-alive server on sockact's listeners, with in-place reload.

    python examples/asyncio_server.py [--listen ADDR] [--drain-timeout S] [--pidfile PATH]
        [--certfile PEM --keyfile PEM] [--max-connections N]

Same endpoints and signals as examples/http_server.py: ``GET /`` → ``pid <pid>``,
``GET /sleep?seconds=S``; SIGHUP reloads, SIGTERM/SIGINT drain.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import urllib.parse

from _common import parse_args

import sockact
from sockact.serve import Acceptor, ConnectionSet

log = logging.getLogger("asyncio_server")


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
    args = parse_args(__doc__, argv, limits=True)
    try:
        return asyncio.run(serve(args))
    except sockact.SockactError as exc:
        log.error("%s", exc)
        return 1


if __name__ == "__main__":
    sys.exit(main())
