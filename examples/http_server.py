"""A stdlib HTTP server that takes its socket from systemd (or binds it itself) and reloads in place.

    python examples/http_server.py [--listen ADDR] [--drain-timeout S] [--pidfile PATH]
        [--certfile PEM --keyfile PEM] [--max-connections N]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S`` → 200 after S seconds. Under
``systemd-socket-activate -l ADDR --fdname=http`` it serves on the inherited socket. SIGHUP starts a
successor with the same command line and hands the socket over without refusing a connection;
SIGTERM/SIGINT drain and exit (a second one exits at once).

A template: copied alone, it runs wherever ``pip install sockact`` did.
"""

from __future__ import annotations

import argparse
import logging
import os
import ssl
import sys
import threading
import time
import urllib.parse

import sockact
from sockact.serve import HTTPRequestHandler, HTTPServer

log = logging.getLogger("http_server")


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
    handler.setFormatter(sockact.JournalFormatter("http_server[%(process)d]: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return args


class Handler(HTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/sleep":
            query = urllib.parse.parse_qs(url.query)
            try:
                seconds = float(query.get("seconds", ["1"])[0])
            except ValueError:
                self.send_error(400, "seconds must be a number")
                return
            time.sleep(min(max(seconds, 0.0), 60.0))
        elif url.path != "/":
            self.send_error(404)
            return
        body = f"pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        listeners = sockact.get_listeners({"http": args.listen})
    except sockact.SockactError as exc:
        log.error("%s", exc)
        return 2
    server = HTTPServer(listeners["http"], Handler, ssl_context=args.tls, max_connections=args.max_connections)
    try:
        with (
            listeners,
            sockact.Upgrader(
                listeners, pidfile=args.pidfile, ready_timeout=args.ready_timeout, drain_timeout=args.drain_timeout
            ) as upgrader,
        ):
            threading.Thread(target=server.serve_forever, args=(0.05,), name="serve", daemon=True).start()
            origin = "inherited" if "http" in listeners.inherited else "bound"
            log.info("serving on %r (%s)", listeners, origin)
            listeners.close_unclaimed()
            sockact.ready(f"serving on {args.listen}")
            outcome = upgrader.wait()
            cut = server.drain(args.drain_timeout, hammer=upgrader.hammer)
            server.server_close()
            log.info("%s; drained (%d connection(s) cut)", outcome, cut)
    except sockact.SockactError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
