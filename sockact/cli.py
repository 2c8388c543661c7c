"""The ``sockact`` command. ``sockact inspect`` shows what this process inherited.

Every user error is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence

from . import __version__
from ._env import parse_watchdog_env
from ._errors import SockactError
from ._fds import describe_fd
from ._listeners import get_listeners, read_inherited
from ._supervisor import Supervisor, parse_ready
from ._units import render_units

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


def _signal(text: str) -> int:
    name = text.upper()
    if name.isdigit():
        return int(name)
    try:
        return int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown signal {text!r} (use HUP, USR2, … or a number)") from None


def _listen(text: str) -> tuple[str, str]:
    name, eq, address = text.partition("=")
    if not eq or not name or not address:
        raise argparse.ArgumentTypeError(f"--listen {text!r}: use NAME=ADDRESS, e.g. http=127.0.0.1:8080")
    return name, address


def _ready(text: str) -> str | float:
    try:
        return parse_ready(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ready {text!r}: use notify, spawn or a number of seconds") from None


def _command(args: argparse.Namespace, usage: str) -> list[str]:
    """The COMMAND after ``--``, its program resolved to an absolute path; SockactError if missing."""
    command = list(args.cmd)
    if not command:
        raise SockactError(f"no command given: {usage}")
    resolved = shutil.which(command[0])
    if resolved is None:
        raise SockactError(f"command not found: {command[0]!r} (give a path or put it on PATH)")
    command[0] = os.path.abspath(resolved)
    return command


def _run(args: argparse.Namespace) -> int:
    command = _command(args, "sockact run [OPTIONS] -- COMMAND [ARGS…]")
    spec = dict(args.listen) if args.listen else None
    listeners = get_listeners(spec)
    logging.basicConfig(level=logging.INFO, format="sockact[%(process)d]: %(message)s")
    with listeners:
        supervisor = Supervisor(
            listeners,
            command,
            ready=args.ready,
            ready_timeout=args.ready_timeout,
            drain_timeout=args.drain_timeout,
            reload_signal=args.reload_signal,
            pidfile=args.pidfile,
        )
        return supervisor.run()


def _env_pair(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"--env {text!r}: use KEY=VALUE")
    return key, value


def _units(args: argparse.Namespace) -> int:
    command = _command(args, "sockact units NAME --listen NAME=ADDR -- COMMAND [ARGS…]")
    units = render_units(
        args.name,
        args.listen or [],
        command,
        mode=args.mode,
        service_type=args.type,
        user=args.user,
        drain_timeout=args.drain_timeout,
        environment=dict(args.env or []),
        sockact_command=[sys.executable, "-m", "sockact"],
    )
    out = os.path.abspath(args.out)
    if not os.path.isdir(out):
        raise SockactError(f"--out {args.out}: no such directory")
    paths = []
    for filename, text in units.items():
        path = os.path.join(out, filename)
        with open(path, "w") as f:
            f.write(text)
        paths.append(path)
        print(f"wrote {path}")
    if args.no_verify:
        return 0
    tool = shutil.which("systemd-analyze")
    if tool is None:
        print("note: systemd-analyze not found; the units were not verified", file=sys.stderr)
        return 0
    result = subprocess.run(
        [tool, *(["--user"] if args.user else []), "verify", *paths],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "notice"},
        check=False,
    )
    if result.returncode != 0 or result.stderr.strip():  # it exits 0 on many mistakes: stderr decides
        print(f"sockact: systemd-analyze verify found problems:\n{result.stderr.strip()}", file=sys.stderr)
        return 1
    print("systemd-analyze verify: clean")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sockact`` console script."""
    parser = argparse.ArgumentParser(prog="sockact", description="socket activation and zero-downtime restarts")
    parser.add_argument("--version", action="version", version=f"sockact {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="show the fds, NOTIFY_SOCKET and watchdog this process inherited")
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    run = sub.add_parser(
        "run",
        help="hold the sockets and run COMMAND behind them; the reload signal swaps it without a gap",
        usage="sockact run [OPTIONS] -- COMMAND [ARGS…]",
        description="Run COMMAND with the sockets on fds 3.. (LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID) and "
        "NOTIFY_SOCKET pointing here; on the reload signal start a new one, wait until it is ready, then "
        "SIGTERM the old one. sockact stays the main process; COMMAND may be any program.",
    )
    run.add_argument(
        "--listen",
        action="append",
        type=_listen,
        metavar="NAME=ADDR",
        help="a socket to take from systemd by name, or bind (ListenStream= syntax); repeatable; "
        "default: everything inherited",
    )
    run.add_argument(
        "--ready",
        type=_ready,
        default="notify",
        help="when a new child counts as ready: notify (its READY=1), spawn (at once) or SECONDS",
    )
    run.add_argument("--ready-timeout", type=float, default=60.0, metavar="S")
    run.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="SIGKILL an old child this long after its SIGTERM",
    )
    run.add_argument("--reload-signal", type=_signal, default=signal.SIGHUP, metavar="SIG")
    run.add_argument("--pidfile", metavar="PATH", help="write sockact's own pid here")
    units = sub.add_parser(
        "units",
        help="write a .socket + .service pair that gets the hand-over right, then verify it",
        usage="sockact units NAME --listen NAME=ADDR [OPTIONS] -- COMMAND [ARGS…]",
        description="Write NAME.socket and NAME.service (one more .socket per extra --listen). inprocess: "
        "COMMAND restarts itself in place with sockact (PID-file hand-over); supervise: `sockact run` holds "
        "the sockets and runs COMMAND, any program.",
    )
    units.add_argument("name", help="unit name, e.g. myapp")
    units.add_argument("--listen", action="append", type=_listen, metavar="NAME=ADDR", required=True)
    units.add_argument("--mode", choices=["inprocess", "supervise"], default="inprocess")
    units.add_argument(
        "--type", choices=["notify", "notify-reload"], default="notify", help="notify-reload needs systemd >= 253"
    )
    units.add_argument("--user", action="store_true", help="a user unit (systemctl --user)")
    units.add_argument("--out", default=".", metavar="DIR")
    units.add_argument("--drain-timeout", type=float, default=30.0, metavar="S")
    units.add_argument("--env", action="append", type=_env_pair, metavar="KEY=VALUE")
    units.add_argument("--no-verify", action="store_true", help="do not run systemd-analyze verify")
    demo = sub.add_parser("demo", help="reload a server in place under load and show that nothing failed")
    demo.add_argument("--reloads", type=int, default=5)
    demo.add_argument("--seconds", type=float, default=5.0, help="roughly how long the load runs")
    demo.add_argument("--mode", choices=["inprocess", "supervisor"], default="inprocess")
    demo.add_argument("--plot", metavar="FILE.png", help="write a timeline (needs matplotlib: sockact[plot])")
    words = list(sys.argv[1:] if argv is None else argv)
    command = words[words.index("--") + 1 :] if "--" in words else []  # COMMAND goes after --, untouched
    args = parser.parse_args(words[: words.index("--")] if "--" in words else words)
    args.cmd = command
    try:
        if args.command == "inspect":
            return _inspect(args.json)
        if args.command == "run":
            return _run(args)
        if args.command == "units":
            return _units(args)
        if args.command == "demo":
            if args.reloads < 0 or args.seconds <= 0:
                raise SockactError("--reloads must be >= 0 and --seconds > 0")
            from ._demo import demo as run_demo

            return run_demo(args.reloads, args.seconds, args.mode, args.plot)
    except SockactError as exc:
        print(f"sockact: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
