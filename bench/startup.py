"""Start-up and scale: import cost, parsing many inherited fds, and the supervisor's memory.

* ``import sockact`` in a fresh venv interpreter (``-X importtime``): the ``sockact`` line's self and
  cumulative time, median of --repeats; and whether asyncio (or typing) got imported.
* --fds inherited listening sockets on fds 3.. with LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES, taken by
  ``get_listeners()`` (parsed, checked one by one, adopted): median over --repeats fresh processes;
  beside it, in the same run and alternating, the same fds taken the libsystemd way (python-systemd,
  when installed): ``listen_fds_with_names()`` (sd_listen_fds_with_names(3): parse, FD_CLOEXEC), then
  per fd its check ``is_socket(fd, listening=1)`` (sd_is_socket(3)) and ``socket.socket(fileno=fd)``
  — parse, check and adopt, as sockact does (which checks more: family and type against the address,
  not connected, valid names).
* ``sockact run`` holding one socket with a child: its resident memory (VmRSS) once the child runs.

Goals (issues 7, 18): self ≤ 5 ms and no asyncio; 1,000 fds ≤ 5 ms and ≤ 2 × libsystemd's; supervisor
RSS ≤ 25 MB.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from typing import Any

from bench._util import child_env, stop

FDS_CHILD = r"""
import json, os, resource, socket, sys, time
n = int(sys.argv[1])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 2 * n + 64)), hard))
made = []
for _ in range(n):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    made.append(s)
high = [os.dup(s.fileno()) for s in made]  # out of the way first, then onto 3..
for s in made:
    s.close()
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(n),
                  LISTEN_FDNAMES=":".join(f"l{i}" for i in range(n)))
if sys.argv[2] == "sockact":
    from sockact import get_listeners  # imported before the clock starts: start-up is the other figure
    began = time.perf_counter()
    listeners = get_listeners(None)
    elapsed = time.perf_counter() - began
    assert len(listeners) == n and len(listeners.inherited) == n
else:
    from systemd import daemon
    began = time.perf_counter()
    socks = []
    for fd, name in daemon.listen_fds_with_names().items():
        if not daemon.is_socket(fd, listening=1):
            raise SystemExit(f"fd {fd} is no listening socket")
        socks.append(socket.socket(fileno=fd))
    elapsed = time.perf_counter() - began
    assert len(socks) == n
print(json.dumps({"ms": elapsed * 1000}))
"""


def _import_times(repeats: int) -> tuple[float, float, list[str]]:
    selfs, totals = [], []
    extra: set[str] = set()
    code = "import sys, sockact; print(sorted(m for m in sys.modules if m in ('asyncio', 'typing')))"
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code], env=child_env(), capture_output=True, text=True
        )
        for line in out.stderr.splitlines():
            fields = [f.strip() for f in line.removeprefix("import time:").split("|")]
            if len(fields) == 3 and fields[2] == "sockact":
                selfs.append(int(fields[0]) / 1000)
                totals.append(int(fields[1]) / 1000)
        extra.update(json.loads(out.stdout.replace("'", '"')))
    return statistics.median(selfs), statistics.median(totals), sorted(extra)


def _fds_ms(count: int, repeats: int, ways: list[str]) -> dict[str, float]:
    """way → median ms to take ``count`` inherited fds; the ways alternate, so drift hits each alike."""
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(repeats):
        for way in ways:
            out = subprocess.run(
                [sys.executable, "-c", FDS_CHILD, str(count), way],
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            if out.returncode != 0:
                raise RuntimeError(out.stderr[-2000:])
            times[way].append(float(json.loads(out.stdout)["ms"]))
    return {way: statistics.median(values) for way, values in times.items()}


def _supervisor_rss_mib() -> float:
    argv = [sys.executable, "-m", "sockact", "run", "--listen", "http=127.0.0.1:0", "--ready", "spawn"]
    argv += ["--", "/bin/sleep", "60"]
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the child is running: the supervisor is in its steady loop
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                if f.read().split():
                    break
            time.sleep(0.05)
        time.sleep(0.5)  # let it settle into its select loop (a bench, not a synchronisation)
        with open(f"/proc/{proc.pid}/status") as f:
            rss_kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    finally:
        stop(proc)
    return rss_kib / 1024


def run(args: argparse.Namespace) -> int:
    self_ms, total_ms, extra = _import_times(args.repeats)
    peer = importlib.util.find_spec("systemd") is not None
    fds = _fds_ms(args.fds, max(1, min(args.repeats, 15)), ["sockact", "libsystemd"] if peer else ["sockact"])
    rss = _supervisor_rss_mib()
    print(f"start-up and scale ({sys.executable}, median of {args.repeats} imports)\n")
    print("| figure | measured | goal |")
    print("|---|---:|---:|")
    print(f"| `import sockact`: self time | {self_ms:.2f} ms | ≤ 5 ms |")
    print(f"| `import sockact`: cumulative | {total_ms:.2f} ms | — |")
    print(f"| modules asyncio/typing imported by it | {', '.join(extra) or 'none'} | none |")
    ours = fds["sockact"]
    print(f"| {args.fds} inherited fds parsed, checked and adopted | {ours:.1f} ms | ≤ 5 ms (1,000) |")
    if peer:
        theirs = fds["libsystemd"]
        print(f"| the same, the libsystemd way (python-systemd), same run | {theirs:.1f} ms | — |")
        print(f"| sockact ÷ libsystemd | {ours / theirs:.2f} | ≤ 2 |")
    else:
        print("| the same, the libsystemd way | python-systemd not installed | — |")
    print(f"| `sockact run` supervisor RSS | {rss:.1f} MiB | ≤ 25 MB |")
    return 0


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("startup", help=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fds", type=int, default=1000)
    parser.set_defaults(run=run)
