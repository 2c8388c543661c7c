"""A stdlib HTTP server that takes its socket from systemd (or binds it itself).

    python examples/http_server.py [--listen ADDR]

``GET /`` → ``pid <pid>``; ``GET /sleep?seconds=S`` → 200 after S seconds. Under
``systemd-socket-activate -l ADDR --fdname=http`` it serves on the inherited socket.
"""

from __future__ import annotations

import argparse
import http.server
import os
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sockact


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:8000", help="address in ListenStream= syntax")
    args = parser.parse_args(argv)
    try:
        listeners = sockact.get_listeners({"http": args.listen})
    except sockact.SockactError as exc:
        print(f"http_server: {exc}", file=sys.stderr)
        return 2
    sock = listeners["http"]
    server = http.server.ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket.close()  # the one TCPServer made; serve on ours instead
    server.socket = sock
    server.daemon_threads = True
    origin = "inherited" if "http" in listeners.inherited else "bound"
    print(f"http_server: pid {os.getpid()} serving on {listeners!r} ({origin})", file=sys.stderr, flush=True)
    listeners.close_unclaimed()
    sockact.ready()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        listeners.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
