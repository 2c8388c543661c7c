"""The stdlib example server, but with a successor command chosen by the test (fault injection).

python tests/fault_server.py LISTEN SUCCESSOR_JSON READY_TIMEOUT [PIDFILE]

With FAULT_FILL_FDS=1 in the environment, every upgrade starts with this process's fd table full
(RLIMIT_NOFILE reached); the fds are released half a second later.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

from http_server import Handler  # noqa: E402

import sockact  # noqa: E402
from sockact.serve import HTTPServer  # noqa: E402


def fill_fds() -> None:
    """Open /dev/null until EMFILE (bounded by a lowered RLIMIT_NOFILE); release them 0.5 s later.

    Meanwhile the soft limit is 3: a connection that ends under load frees an fd, and the spawn path
    could take it; with every number below the limit in use (stdio), each new fd fails with EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(soft, 4096)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    held = []
    try:
        for _ in range(5000):
            held.append(os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC))
    except OSError:
        pass

    def release() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        for fd in held:
            os.close(fd)

    threading.Timer(0.5, release).start()
    resource.setrlimit(resource.RLIMIT_NOFILE, (3, hard))


def main() -> int:
    listen, successor, ready_timeout = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
    pidfile = sys.argv[4] if len(sys.argv) > 4 else None
    listeners = sockact.get_listeners({"http": listen})
    server = HTTPServer(listeners["http"], Handler)
    before = fill_fds if os.environ.get("FAULT_FILL_FDS") == "1" else None
    upgrader = sockact.Upgrader(
        listeners, command=successor, ready_timeout=ready_timeout, pidfile=pidfile, before_spawn=before
    )
    with listeners, upgrader:
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
