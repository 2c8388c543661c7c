"""A server that knows nothing of sockact: fd 3 from LISTEN_FDS, READY=1 by hand, HTTP/1.0.

    python tests/plain_server.py MODE_FILE [--no-notify]

MODE_FILE holds ``ok`` (serve, notify) or ``hang`` (stuck in start-up: never accepts or notifies).
``/`` → ``pid <pid>``, ``/sleep?seconds=S``. SIGTERM: stop accepting, finish in-flight requests, exit 0.
"""

from __future__ import annotations

import http.server
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/sleep":
            time.sleep(float(urllib.parse.parse_qs(url.query)["seconds"][0]))
        body = f"pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def main() -> int:
    assert os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1"
    with open(sys.argv[1]) as f:
        mode = f.read().strip()
    if mode == "hang":  # stuck in start-up: never accepts, never notifies
        time.sleep(3600)
    sock = socket.socket(fileno=3)
    sock.setblocking(False)  # shared with the next child: never sleep in accept() for a stolen connection
    server = http.server.ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.daemon_threads = False  # server_close() waits for in-flight requests
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    if "--no-notify" not in sys.argv:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as n:
            n.sendto(b"READY=1\nSTATUS=plain server up", os.environ["NOTIFY_SOCKET"])
    while not stop.wait(0.1):  # a signal delivered to another thread only runs the handler when main wakes
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
