"""The stdlib example server, but with a successor command chosen by the test (fault injection).

python tests/fault_server.py LISTEN SUCCESSOR_JSON READY_TIMEOUT
"""

from __future__ import annotations

import json
import os
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

from http_server import Handler  # noqa: E402

import sockact  # noqa: E402
from sockact.serve import HTTPServer  # noqa: E402


def main() -> int:
    listen, successor, ready_timeout = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
    listeners = sockact.get_listeners({"http": listen})
    server = HTTPServer(listeners["http"], Handler)
    with listeners, sockact.Upgrader(listeners, command=successor, ready_timeout=ready_timeout) as upgrader:
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        listeners.close_unclaimed()
        sockact.ready()
        outcome = upgrader.wait()
        server.drain(10, upgrader.hammer)
        server.server_close()
        print(f"fault_server {os.getpid()}: {outcome}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
