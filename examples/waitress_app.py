"""A WSGI app served by waitress on sockact's listeners, with in-place reload.

    python examples/waitress_app.py [--listen ADDR] [--drain-timeout S]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S``. SIGHUP reloads in place; SIGTERM drains.
waitress serves no TLS (``--certfile`` is refused). The same ``app`` runs under gunicorn:
``sockact run --listen http=127.0.0.1:8000 -- gunicorn --chdir examples waitress_app:app``.

A template: copied alone, it runs wherever ``pip install 'sockact[waitress]'`` did.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

import sockact
from sockact.integrations import waitress as sockact_waitress

log = logging.getLogger("waitress_app")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (the other examples take the same); logs go to stderr with journald priorities."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="address in ListenStream= syntax")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish in-flight requests")
    parser.add_argument("--ready-timeout", type=float, default=60.0, help="seconds a successor has to be ready")
    parser.add_argument("--pidfile", help="hand over by PID file (pair with PIDFile= in the unit)")
    parser.add_argument("--certfile", help="refused: waitress serves no TLS (terminate it in a proxy)")
    parser.add_argument("--keyfile", help="refused, as --certfile")
    args = parser.parse_args(argv)
    if args.certfile or args.keyfile:
        parser.error("waitress serves no TLS; terminate TLS in a proxy")
    handler = logging.StreamHandler()
    handler.setFormatter(sockact.JournalFormatter("waitress_app[%(process)d]: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    return args


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """A WSGI app: ``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S`` → the same after S (≤ 60) seconds."""
    status, body = "200 OK", f"pid {os.getpid()}\n".encode()
    if environ.get("PATH_INFO") == "/sleep":
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        try:
            time.sleep(min(max(float(query.get("seconds", ["1"])[0]), 0.0), 60.0))
        except ValueError:
            status, body = "400 Bad Request", b"seconds must be a number\n"
    elif environ.get("PATH_INFO") != "/":
        status, body = "404 Not Found", b"not found\n"
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        outcome = sockact_waitress.run(
            app,
            args.listen,
            drain_timeout=args.drain_timeout,
            ready_timeout=args.ready_timeout,
            pidfile=args.pidfile,
            threads=8,
        )
    except sockact.SockactError as exc:  # a bad address, a port taken, a bad LISTEN_*: one line, exit 2
        log.error("%s", exc)
        return 2
    log.info("%s; drained", outcome)
    return 1 if outcome == "failed" else 0


if __name__ == "__main__":
    sys.exit(main())
