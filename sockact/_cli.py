"""The ``sockact`` command line in full (``cli`` answers common ``sockact reload`` forms before it).
``sockact inspect`` shows what this process inherited.

Every user error is one line on stderr and exit status 2, never a traceback; every number, signal
and path is checked before anything starts.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from . import __version__
from ._ask import CONTROL_VAR, report, request_reload, seconds
from ._errors import SockactError, UsageError
from ._priority import NICE_MAX, START_NICE

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs more than `sockact reload` needs
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from ._listeners import Listeners

# Each command imports what it needs when it runs: `sockact reload` (every `systemctl reload`) starts
# in a few milliseconds instead of paying for asyncio, logging and the supervisor it never uses.

__all__ = ["main"]


def _inspect(as_json: bool) -> int:
    import json

    from ._env import parse_watchdog_env
    from ._fds import describe_fd
    from ._listeners import read_inherited

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


#: Signals that cannot reload: uncatchable, the supervisor's own stop signals, or raised by the
#: kernel for other reasons (a child's exit, a broken pipe, a fault).
_NOT_RELOAD = {
    signal.SIGKILL: "it cannot be caught",
    signal.SIGSTOP: "it cannot be caught",
    signal.SIGTERM: "it stops sockact run (systemd's stop signal)",
    signal.SIGINT: "it stops sockact run",
    signal.SIGCHLD: "the kernel sends it whenever a child exits",
    signal.SIGPIPE: "the kernel sends it on a broken pipe",
    signal.SIGSEGV: "the kernel sends it on a fault",
    signal.SIGBUS: "the kernel sends it on a fault",
    signal.SIGFPE: "the kernel sends it on a fault",
    signal.SIGILL: "the kernel sends it on a fault",
}


def _signal(text: str) -> int:
    name = text.strip().upper()
    if name.isdigit():
        number = int(name)
        if number not in signal.valid_signals():
            raise argparse.ArgumentTypeError(f"{text}: no such signal (use HUP, USR2, … or 1-64)")
    else:
        try:
            number = int(signal.Signals[name if name.startswith("SIG") else "SIG" + name])
        except KeyError:
            raise argparse.ArgumentTypeError(f"unknown signal {text!r} (use HUP, USR2, … or a number)") from None
    if number in _NOT_RELOAD:
        why = _NOT_RELOAD[signal.Signals(number)]
        raise argparse.ArgumentTypeError(
            f"{signal.Signals(number).name} cannot be the reload signal: {why}; use HUP or USR2"
        )
    return number


def _seconds(*, zero: bool) -> Callable[[str], float]:
    """An argparse type: a finite number of seconds, > 0 (or >= 0 when ``zero``)."""

    def parse(text: str) -> float:
        value = seconds(text, zero=zero)
        if value is None:
            bound = ">= 0" if zero else "> 0"
            raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds {bound}")
        return value

    return parse


def _whole(high: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number from 0 to ``high``; ``what`` names it in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: give {what}")
        return value

    return parse


_count = _whole(10_000, "a whole number from 0 to 10000")
_nice = _whole(NICE_MAX, f"a nice increment from 0 (none) to {NICE_MAX}")  # --start-nice


def _unique_listens(listens: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The --listen pairs, refusing a name given twice (the last one would win silently)."""
    pairs = list(listens or [])
    names = [name for name, _ in pairs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise UsageError(
            f"--listen {', '.join(twice)} given more than once: each socket needs its own name "
            "(its FileDescriptorName=)"
        )
    return pairs


def _writable_file(option: str, path: str) -> str:
    """``path`` made absolute, once its directory exists and is writable (checked before anything runs)."""
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        raise UsageError(f"{option} {path}: is a directory; give a file name")
    if not os.path.isdir(directory):
        raise UsageError(f"{option} {path}: directory {directory} does not exist; create it first")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{option} {path}: directory {directory} is not writable")
    return full


def _listen(text: str) -> tuple[str, str]:
    name, eq, address = text.partition("=")
    if not eq or not name or not address:
        raise argparse.ArgumentTypeError(f"{text!r}: use NAME=ADDRESS, e.g. http=127.0.0.1:8080")
    return name, address


def _ready(text: str) -> str | float:
    from ._supervisor import parse_ready

    try:
        return parse_ready(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use notify, spawn or a number of seconds from 0 to 3600") from None


def _command(args: argparse.Namespace, usage: str) -> list[str]:
    """The COMMAND after ``--``, its program resolved to an absolute path; SockactError if missing."""
    import shutil

    command = list(args.cmd)
    if not command:
        raise SockactError(f"no command given: {usage}")
    resolved = shutil.which(command[0])
    if resolved is None:
        raise SockactError(f"command not found: {command[0]!r} (give a path or put it on PATH)")
    command[0] = os.path.abspath(resolved)
    return command


def _add_logging_options(parser: argparse.ArgumentParser) -> None:
    """``--log-level`` and ``-v``: how much sockact itself logs (read by :func:`_setup_logging`)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--log-level",
        choices=["debug", "info", "warning", "error"],  # _journal.LEVELS (a test keeps them equal)
        default="info",
        help="the least severe of sockact's own lines to show: debug, info (default: the start line and one "
        "line per reload), warning or error (failures only), e.g. --log-level warning",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="debug",
        help="the same as --log-level debug (each successor's start and STATUS=, each drained child), e.g. -v",
    )


def _setup_logging(args: argparse.Namespace) -> None:
    """sockact's lines to stderr at ``--log-level``, ``<N>``-prefixed when stderr is the journal."""
    from ._journal import LEVELS, configure_logging

    configure_logging(LEVELS[args.log_level])


def _run(args: argparse.Namespace) -> int:
    from ._listeners import get_listeners
    from ._supervisor import Supervisor

    _setup_logging(args)
    pairs = _unique_listens(args.listen)
    command = _command(args, "sockact run [OPTIONS] -- COMMAND [ARGS…]")
    pidfile = _writable_file("--pidfile", args.pidfile) if args.pidfile else None
    spec = dict(pairs) if pairs else None
    listeners = get_listeners(spec, bind_missing=args.bind_missing)
    with listeners:
        if spec is None:
            _check_passable(listeners)
        supervisor = Supervisor(
            listeners,
            command,
            ready=args.ready,
            ready_timeout=args.ready_timeout,
            drain_timeout=args.drain_timeout,
            reload_signal=args.reload_signal,
            pidfile=pidfile,
            control=args.control,
            give_up_after=args.give_up_after,
            start_nice=args.start_nice,
        )
        return supervisor.run()


def _reload(args: argparse.Namespace) -> int:
    """``sockact reload``: ask the serving process for an upgrade, exit 0 once the new code serves."""
    path = args.control or os.environ.get(CONTROL_VAR)
    if not path:
        raise UsageError(f"no reload channel: give --control PATH or set {CONTROL_VAR} (sockact units sets both)")
    return report(*request_reload(path, args.timeout))


def _check_passable(listeners: Listeners) -> None:
    """Without --listen, `sockact run` passes on every inherited socket; refuse what it cannot pass on
    (FIFOs, files from the fd store) and having nothing at all, rather than drop them silently."""
    from ._fds import describe_fd

    others = []
    for fd, name in sorted(listeners.unclaimed.items()):
        try:
            kind = describe_fd(fd).kind
        except OSError as exc:
            kind = f"not inspectable ({exc.strerror})"
        others.append(f"fd {fd} {name!r} ({kind})")
    if others:
        raise UsageError(
            f"inherited {', '.join(others[:8])}{' …' if len(others) > 8 else ''}: sockact run passes on sockets "
            "only; take those fds in a program started directly by systemd, or give --listen for the sockets"
        )
    if not listeners:
        raise UsageError(
            "nothing to serve: no --listen given and no socket was handed over (LISTEN_FDS unset or not for this "
            "process); give --listen NAME=ADDR or run under a .socket unit"
        )


def _env_pair(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: use KEY=VALUE")
    return key, value


def _units(args: argparse.Namespace) -> int:
    import shutil
    import subprocess
    import tempfile

    from ._units import render_units, sockact_command

    command = _command(args, "sockact units NAME --listen NAME=ADDR -- COMMAND [ARGS…]")
    units = render_units(
        args.name,
        args.listen or [],
        command,
        mode=args.mode,
        service_type=args.type,
        user=args.user_unit,
        drain_timeout=args.drain_timeout,
        environment=dict(args.env or []),
        sockact_command=sockact_command(sys.executable),
        harden=not args.no_harden,
        run_as=args.run_as,
        writable=args.writable,
    )
    out = os.path.abspath(args.out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {args.out}: cannot create directory {out}: {exc.strerror}") from exc
    if not os.access(out, os.W_OK):
        raise UsageError(f"--out {args.out}: directory {out} is not writable")
    if not args.no_harden and not args.user_unit:
        for program in (command[0], sys.executable):
            problem = _unreachable(program)
            if problem:
                print(f"warning: {problem}", file=sys.stderr)
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
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice"}
    with tempfile.TemporaryDirectory(prefix="sockact-verify-") as runtime:
        if args.user_unit and not env.get("XDG_RUNTIME_DIR"):  # no user session: --user verify needs one
            env["XDG_RUNTIME_DIR"] = runtime
        result = subprocess.run(
            [tool, *(["--user"] if args.user_unit else []), "verify", *paths],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
    if result.returncode != 0 or result.stderr.strip():  # it exits 0 on many mistakes: stderr decides
        print(f"sockact: systemd-analyze verify found problems:\n{result.stderr.strip()}", file=sys.stderr)
        return 1
    print("systemd-analyze verify: clean")
    return 0


def _unreachable(program: str) -> str | None:
    """Why a hardened service (an unprivileged user, ProtectHome=yes) could not run ``program``, or None."""
    if not program.startswith("/"):
        return None  # systemd looks a bare name up in its own PATH, not ours
    real = os.path.realpath(program)
    shown = program if real == program else f"{program} (→ {real})"
    for hidden in ("/home/", "/root/", "/run/user/"):
        if real.startswith(hidden):
            return (
                f"{shown} is under {hidden}, which ProtectHome=yes hides from the service: install it elsewhere "
                "(e.g. a venv in /opt made from /usr/bin/python3) or write the unit with --no-harden"
            )
    path = "/"
    for part in real.strip("/").split("/")[:-1]:
        path = os.path.join(path, part)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return None
        if not mode & 0o001:
            return f"{shown}: {path} is not searchable by other users, so the service's user cannot run it"
    return None


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``sockact run: error: …``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        if "argument --user: expected one argument" in message:  # the old flag: sockact units --user (a user unit)
            message += "; --user NAME now names User=, and a unit for systemctl --user is --user-unit"
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _demo(args: argparse.Namespace) -> int:
    import importlib.util

    plot = _writable_file("--plot", args.plot) if args.plot else None
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'sockact[plot]'")
    from ._demo import demo as run_demo

    # SIGTERM interrupts the demo as Ctrl-C does (Python's own SIGINT handler), so its servers are stopped
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return run_demo(args.reloads, args.seconds, args.mode, plot)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _add_inspect(sub: argparse._SubParsersAction[_Parser]) -> None:
    inspect = sub.add_parser(
        "inspect",
        help="show the fds, NOTIFY_SOCKET and watchdog this process inherited",
        description="Show what this process inherited from its manager: LISTEN_FDS sockets (name, kind, "
        "address), NOTIFY_SOCKET and the watchdog, and why any of it would be ignored.",
    )
    inspect.add_argument("--json", action="store_true", help="machine-readable output")


def _add_run(sub: argparse._SubParsersAction[_Parser]) -> None:
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
    run.add_argument(
        "--ready-timeout",
        type=_seconds(zero=False),
        default=60.0,
        metavar="S",
        help="a new child not ready after S seconds is killed; the old one keeps serving (default 60)",
    )
    run.add_argument(
        "--drain-timeout",
        type=_seconds(zero=True),
        default=30.0,
        metavar="S",
        help="SIGKILL an old child this long after its SIGTERM (0: at once)",
    )
    run.add_argument(
        "--reload-signal", type=_signal, default=signal.SIGHUP, metavar="SIG", help="default HUP; not TERM or INT"
    )
    run.add_argument(
        "--start-nice",
        type=_nice,
        default=START_NICE,
        metavar="N",
        help=f"a new child starts N nicer while the old one serves, until it is ready (0: full priority; "
        f"default {START_NICE})",
    )
    run.add_argument("--pidfile", metavar="PATH", help="write sockact's own pid here")
    run.add_argument(
        "--give-up-after",
        type=_count,
        default=5,
        metavar="N",
        help="exit 1 after N children in a row died within 10 s of their start (0: never); default 5",
    )
    run.add_argument(
        "--control",
        metavar="PATH",
        help=f"serve the reload channel at PATH for `sockact reload` (default ${CONTROL_VAR})",
    )
    run.add_argument(
        "--bind-missing",
        action="store_true",
        help="under activation, bind a --listen that matches no inherited socket even if some go unclaimed",
    )
    _add_logging_options(run)


def _add_units(sub: argparse._SubParsersAction[_Parser]) -> None:
    units = sub.add_parser(
        "units",
        help="write a .socket + .service pair that gets the hand-over right, then verify it",
        usage="sockact units NAME --listen NAME=ADDR [OPTIONS] -- COMMAND [ARGS…]",
        description="Write NAME.socket and NAME.service (one more .socket per extra --listen). inprocess: "
        "COMMAND restarts itself in place with sockact (PID-file hand-over); supervise: `sockact run` holds "
        "the sockets and runs COMMAND, any program.",
    )
    units.add_argument("name", help="unit name, e.g. myapp")
    units.add_argument(
        "--listen",
        action="append",
        type=_listen,
        metavar="NAME=ADDR",
        required=True,
        help="a .socket unit with FileDescriptorName=NAME and ListenStream=ADDR; repeatable",
    )
    units.add_argument(
        "--mode",
        choices=["inprocess", "supervise"],
        default="inprocess",
        help="inprocess: COMMAND is a sockact app that restarts itself; supervise: sockact run runs COMMAND",
    )
    units.add_argument(
        "--type", choices=["notify", "notify-reload"], default="notify", help="notify-reload needs systemd >= 253"
    )
    units.add_argument(
        "--user", dest="run_as", metavar="NAME", help="run as this existing user (User=) instead of a DynamicUser="
    )
    units.add_argument("--user-unit", action="store_true", help="a unit for the user's manager (systemctl --user)")
    units.add_argument("--no-harden", action="store_true", help="leave out the sandbox (DynamicUser=, ProtectSystem=…)")
    units.add_argument(
        "--writable", action="append", default=[], metavar="PATH", help="a path the app may write (ReadWritePaths=)"
    )
    units.add_argument("--out", default=".", metavar="DIR", help="write the units into DIR (default: here)")
    units.add_argument(
        "--drain-timeout",
        type=_seconds(zero=False),
        default=30.0,
        metavar="S",
        help="time for in-flight requests at a reload or stop; TimeoutStopSec= is S + 15 (default 30)",
    )
    units.add_argument(
        "--env", action="append", type=_env_pair, metavar="KEY=VALUE", help="an Environment= line; repeatable"
    )
    units.add_argument("--no-verify", action="store_true", help="do not run systemd-analyze verify")


def _add_reload(sub: argparse._SubParsersAction[_Parser]) -> None:
    reload = sub.add_parser(
        "reload",
        help="upgrade the service in place and wait: exit 0 once the new code serves, 1 if the upgrade failed",
        description="For ExecReload=: asks the sockact process serving the reload channel (--control, "
        f"${CONTROL_VAR}) to start its successor, and returns once the successor is ready and the old "
        "process stopped accepting; exits 1 with the reason when the successor failed (the old code keeps "
        "serving). Names no pid, so it never signals a predecessor that just exited.",
    )
    reload.add_argument("--control", metavar="PATH", help=f"the reload channel (default ${CONTROL_VAR})")
    reload.add_argument(
        "--timeout", type=_seconds(zero=False), default=120.0, metavar="S", help="give up after S seconds"
    )


def _mode(text: str) -> str:
    """``--mode``: the word ``sockact units`` uses; ``supervisor`` (the demo's old word) still works."""
    return "supervise" if text == "supervisor" else text


def _add_demo(sub: argparse._SubParsersAction[_Parser]) -> None:
    demo = sub.add_parser(
        "demo",
        help="reload a server in place under load and show that nothing failed",
        description="Bind a socket as a .socket unit would, start a server on it, reload it N times under "
        "load, and print how many requests failed (none) and how long each hand-over took.",
    )
    demo.add_argument("--reloads", type=_count, default=5, metavar="N", help="how many reloads (default 5)")
    demo.add_argument("--seconds", type=_seconds(zero=False), default=5.0, help="roughly how long the load runs")
    demo.add_argument(
        "--mode",
        type=_mode,
        choices=["inprocess", "supervise"],
        default="inprocess",
        help="inprocess: the server restarts itself; supervise: sockact run swaps it (as in sockact units)",
    )
    demo.add_argument("--plot", metavar="FILE.png", help="write a timeline (needs matplotlib: sockact[plot])")


def _argument(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a parser raising SockactError: its message becomes argparse's one line."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except SockactError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _server_name(text: str) -> str:
    from ._serve_cli import server_named

    return server_named(text).name


def _serve_listen(text: str) -> tuple[str, str]:
    from ._serve_cli import parse_listen

    return parse_listen(text)


def _serve_option(text: str) -> tuple[str, object]:
    from ._serve_cli import parse_option

    return parse_option(text)


def _add_serve(sub: argparse._SubParsersAction[_Parser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="serve module:app with uvicorn, hypercorn, aiohttp, tornado or waitress; reload in place",
        usage="sockact serve SERVER APP [--listen [NAME=]ADDR]… [OPTIONS]",
        description="Import APP (module:attribute, with --app-dir first on sys.path) and serve it with SERVER "
        "on sockets taken from systemd by name or address, else bound: READY=1 once it accepts, SIGHUP (or "
        "sockact reload) starts this same command as a successor and hands the sockets over once it is ready, "
        "SIGTERM drains in-flight requests. A thin command line over sockact.integrations.SERVER.run().",
    )
    serve.add_argument(
        "server",
        metavar="SERVER",
        type=_argument(_server_name),
        help="uvicorn, hypercorn, aiohttp, tornado or waitress",
    )
    serve.add_argument("app", metavar="APP", help="module:attribute, e.g. main:app or app.main:app")
    serve.add_argument(
        "--listen",
        action="append",
        type=_argument(_serve_listen),
        metavar="[NAME=]ADDR",
        help="a socket in ListenStream= syntax, taken from systemd by name (FileDescriptorName=, default http) "
        "or address, else bound; repeatable; default 127.0.0.1:8000",
    )
    serve.add_argument(
        "--factory",
        action="store_true",
        help="APP is a function returning the app: call it with no arguments (aiohttp: it may be async)",
    )
    serve.add_argument(
        "--app-dir", default=".", metavar="DIR", help="look for APP's module in DIR first (default: here)"
    )
    serve.add_argument(
        "--drain-timeout",
        type=_seconds(zero=False),
        default=30.0,
        metavar="S",
        help="time for in-flight requests after a hand-over or a stop signal (default 30)",
    )
    serve.add_argument(
        "--ready-timeout",
        type=_seconds(zero=False),
        default=60.0,
        metavar="S",
        help="a successor not ready after S seconds is killed; this one keeps serving (default 60)",
    )
    serve.add_argument(
        "--idle-grace",
        type=_seconds(zero=True),
        metavar="S",
        help="while draining, close a keep-alive connection once it was silent this long (default 0.5)",
    )
    serve.add_argument(
        "--pidfile", metavar="PATH", help="hand over by PID file (default $SOCKACT_PIDFILE; pair with PIDFile=)"
    )
    serve.add_argument("--certfile", metavar="PEM", help="serve TLS with this certificate chain (not waitress)")
    serve.add_argument("--keyfile", metavar="PEM", help="the certificate's private key")
    serve.add_argument(
        "--option",
        action="append",
        type=_argument(_serve_option),
        metavar="KEY=VALUE",
        help="a keyword of the server's run() (uvicorn.Config, hypercorn Config, web.AppRunner, HTTPServer, "
        "waitress adjustment); VALUE true/false/none, a number, else text; repeatable",
    )
    _add_logging_options(serve)


def _serve(args: argparse.Namespace) -> int:
    from ._serve_cli import serve

    _setup_logging(args)
    return serve(
        args.server,
        args.app,
        _unique_listens(args.listen),
        factory=args.factory,
        app_dir=args.app_dir,
        drain_timeout=args.drain_timeout,
        ready_timeout=args.ready_timeout,
        idle_grace=args.idle_grace,
        pidfile=_writable_file("--pidfile", args.pidfile) if args.pidfile else None,
        certfile=args.certfile,
        keyfile=args.keyfile,
        options=args.option or [],
    )


#: The Examples: section of each subcommand's --help (each one runs as shown).
_EXAMPLES = {
    "inspect": """
  sockact inspect
  systemd-socket-activate -l 127.0.0.1:8080 --fdname=http sockact inspect --json
""",
    "run": """
  sockact run --listen http=127.0.0.1:8080 -- python3 examples/http_server.py
  sockact run --listen http=127.0.0.1:8080 --ready 2 -- ./server   (no READY=1: ready 2 s after its start)
  ExecStart=/usr/bin/sockact run --control=%t/myapp.control -- gunicorn app:app   (sockets from the .socket)
""",
    "units": """
  sockact units myapp --listen http=127.0.0.1:8080 --out /tmp/units -- /usr/bin/python3 /srv/app.py
  sockact units myapp --listen http=127.0.0.1:8080 --mode supervise -- /usr/bin/node /srv/server.js
  sockact units myapp --listen http=127.0.0.1:8000 -- sockact serve uvicorn app.main:app --app-dir /srv/myapp
""",
    "reload": """
  ExecReload=/usr/bin/sockact reload --control=%t/myapp.control   (sockact units writes this line)
  SOCKACT_CONTROL=/run/myapp.control sockact reload --timeout 60
""",
    "demo": """
  sockact demo
  sockact demo --mode supervise --reloads 10 --seconds 8 --plot demo.png
""",
    "serve": """
  sockact serve uvicorn app.main:app --listen 127.0.0.1:8000
  sockact serve hypercorn app:asgi --listen http=/run/app.sock --certfile cert.pem --keyfile key.pem
  sockact serve aiohttp web:make_app --factory --listen 8080 --option access_log=none
  sockact serve tornado server:application --app-dir /srv/app --drain-timeout 10
  sockact serve waitress wsgi:application --option threads=8
  sockact units myapp --listen http=127.0.0.1:8000 -- sockact serve uvicorn app.main:app --app-dir /srv/myapp
""",
}


class _Formatter(argparse.HelpFormatter):
    """Paragraphs are wrapped; an Examples: section keeps its lines as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith("Examples:"):
            return "".join(indent + line + "\n" for line in text.splitlines()).rstrip("\n")
        return super()._fill_text(text, width, indent)


def _parser(only: str | None = None) -> tuple[_Parser, dict[str, _Parser]]:
    """The ``sockact`` parser and its subcommands' parsers, each with help text and an Examples: epilog;
    with ``only``, just that subcommand's (what ``sockact reload`` parses: a third of the work)."""
    parser = _Parser(
        prog="sockact",
        description="socket activation and zero-downtime restarts",
        epilog="Examples:\n  sockact demo\n  sockact serve uvicorn app.main:app --listen 127.0.0.1:8000\n"
        "  sockact run --listen http=127.0.0.1:8080 -- python3 app.py\n  sockact COMMAND --help",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"sockact {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in _SUBCOMMANDS.items():
        if only is None or name == only:
            add(sub)
    for name, subparser in sub.choices.items():
        subparser.formatter_class = _Formatter
        subparser.epilog = "Examples:\n" + _EXAMPLES[name].strip("\n")
    return parser, dict(sub.choices)


#: Each subcommand's parser, in the order ``sockact --help`` lists them.
_SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction[_Parser]], None]] = {
    "inspect": _add_inspect,
    "run": _add_run,
    "units": _add_units,
    "reload": _add_reload,
    "demo": _add_demo,
    "serve": _add_serve,
}

#: What the forgotten ``--`` looks like to each subcommand that takes a COMMAND.
_DASH_HINT = {
    "run": "put the program after --: sockact run [OPTIONS] -- COMMAND [ARGS…]",
    "units": "put the program after --: sockact units NAME --listen NAME=ADDR [OPTIONS] -- COMMAND [ARGS…]",
}


def _parse(words: list[str]) -> argparse.Namespace:
    """Parse ``sockact …``; the COMMAND after ``--`` is kept untouched in ``args.cmd``. Words nobody
    takes are one error line with a hint: the ``--`` a program needs, or ``--option`` for serve."""
    parser, subparsers = _parser(words[0] if words and words[0] in _SUBCOMMANDS else None)
    cut = words.index("--") if "--" in words else len(words)
    args, extra = parser.parse_known_args(words[:cut])
    args.cmd = words[cut + 1 :]
    if cut < len(words) and args.command not in _DASH_HINT:  # nothing would read it: say so, not drop it
        subparsers[args.command].error(f"takes no COMMAND after --; unrecognized arguments: {' '.join(words[cut:])}")
    if extra:
        sub = subparsers[args.command]
        hint = _DASH_HINT.get(args.command, "")
        flag = next((word for word in extra if word.startswith("--")), None)
        if args.command == "serve" and flag:
            key, _, value = flag[2:].partition("=")
            hint = (
                f"a server's own option goes through --option, e.g. --option {key.replace('-', '_')}={value or 'VALUE'}"
            )
        sub.error(f"unrecognized arguments: {' '.join(extra)}{'; ' + hint if hint else ''}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The command line in full (``sockact.cli.main`` comes here for all but quick ``sockact reload``)."""
    args = _parse(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command == "inspect":
            return _inspect(args.json)
        if args.command == "run":
            return _run(args)
        if args.command == "units":
            return _units(args)
        if args.command == "demo":
            return _demo(args)
        if args.command == "reload":
            return _reload(args)
        if args.command == "serve":
            return _serve(args)
    except SockactError as exc:
        print(f"sockact: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2
