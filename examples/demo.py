"""A 10-second tour: hand a listening socket to a server the way systemd does, and query it.

    python examples/demo.py

It binds 127.0.0.1 on a free port itself (playing systemd), starts examples/http_server.py with that
socket as fd 3 named ``http`` through sockact's one spawn path (LISTEN_FDS, LISTEN_PID set in the
child, NOTIFY_SOCKET pointing at a receiver here), waits for its READY=1, sends requests, and stops it.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sockact import NotifyReceiver
from sockact._spawn import spawn


def main() -> int:
    server = os.path.join(os.path.dirname(os.path.abspath(__file__)), "http_server.py")
    with socket.socket() as listener, NotifyReceiver() as receiver:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        port = listener.getsockname()[1]
        print(f"demo: listening on 127.0.0.1:{port} (like a .socket unit) and handing it to the server as fd 3")
        started = time.monotonic()
        with spawn(
            [sys.executable, server, "--listen", f"127.0.0.1:{port}"],
            [listener.fileno()],
            ["http"],
            notify_socket=receiver.address,
        ) as child:
            receiver.allow(child.pid)
            message = receiver.receive(timeout=30)
            if message is None or message.get("READY") != "1":
                print("demo: the server did not report READY=1 within 30 s", file=sys.stderr)
                child.terminate(5)
                return 1
            print(f"demo: pid {child.pid} sent READY=1 after {1000 * (time.monotonic() - started):.0f} ms")
            for path in ("/", "/sleep?seconds=0.2", "/"):
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as reply:
                    print(f"demo: GET {path} -> {reply.status} {reply.read().decode().strip()}")
            code = child.terminate(5)
            print(f"demo: stopped the server (exit {code}); the socket stayed ours the whole time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
