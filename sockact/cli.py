"""The ``sockact`` command. ``sockact inspect`` shows what this process inherited.

Every user error is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from . import __version__
from ._env import parse_watchdog_env
from ._errors import SockactError
from ._fds import describe_fd
from ._listeners import read_inherited

__all__ = ["main"]


def _inspect(as_json: bool) -> int:
    env = dict(os.environ)
    pid = os.getpid()
    verdicts: list[str] = []
    listen_pid = env.get("LISTEN_PID")
    fds: list[dict[str, object]] = []
    try:
        inherited = read_inherited(unset_environment=False)
    except SockactError as exc:
        verdicts.append(f"LISTEN_* rejected: {exc}")
    else:
        if listen_pid is None:
            verdicts.append("LISTEN_PID is unset: nothing was handed over (not socket-activated)")
        elif not inherited.fds:
            verdicts.append(f"LISTEN_PID={listen_pid} is not mine ({pid}) or LISTEN_FDS is unset: ignoring them")
        for fd, name in zip(inherited.fds, inherited.names):
            info = describe_fd(fd)
            fds.append(
                {
                    "fd": fd,
                    "name": name,
                    "kind": info.kind,
                    "family": info.family,
                    "type": info.type,
                    "listening": info.listening,
                    "address": repr(info.sockname),
                    "description": info.describe(),
                }
            )
    try:
        watchdog = parse_watchdog_env(env, pid)
    except SockactError as exc:
        watchdog = None
        verdicts.append(str(exc))
    report = {
        "pid": pid,
        "fds": fds,
        "notify_socket": env.get("NOTIFY_SOCKET"),
        "watchdog_usec": watchdog,
        "watchdog_env": {k: env[k] for k in ("WATCHDOG_USEC", "WATCHDOG_PID") if k in env},
        "verdicts": verdicts,
    }
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"pid {pid}")
    for item in fds:
        print(f"  fd {item['fd']} {item['name']!r}: {item['description']}")
    print(f"NOTIFY_SOCKET: {report['notify_socket'] or '(unset)'}")
    print(f"watchdog: {watchdog} µs" if watchdog else "watchdog: off")
    for verdict in verdicts:
        print(f"note: {verdict}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sockact`` console script."""
    parser = argparse.ArgumentParser(prog="sockact", description="socket activation and zero-downtime restarts")
    parser.add_argument("--version", action="version", version=f"sockact {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="show the fds, NOTIFY_SOCKET and watchdog this process inherited")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    args = parser.parse_args(argv)
    try:
        if args.command == "inspect":
            return _inspect(args.json)
    except SockactError as exc:
        print(f"sockact: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())
