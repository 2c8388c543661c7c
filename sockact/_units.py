"""``sockact units``: write a .socket + .service pair that gets the hand-over right. Rendering is pure.

Two modes:

* ``inprocess`` — COMMAND is a sockact app that restarts itself in place (``Upgrader``). The unit uses
  the PID-file hand-over (``PIDFile=`` + ``SOCKACT_PIDFILE``, docs/PROTOCOL.md), ``NotifyAccess=all``
  and ``KillMode=mixed``.
* ``supervise`` — COMMAND is any program; ``sockact run`` holds the sockets and stays the main
  process, so ``NotifyAccess=main`` is enough and MainPID never moves.

Both reload with ``ExecReload=sockact reload --control=%t/NAME/control`` (``SOCKACT_CONTROL``): it
returns when the new code serves and fails when the upgrade failed, and it names no pid, so it cannot
hit a predecessor that just exited. ``Type=notify-reload`` is not offered: there systemd itself sends
the signal and counts any READY=1 as success, so a failed deploy would report success.

``TimeoutStopSec=`` is the drain timeout plus a margin, so systemd never SIGKILLs a drain in progress.

Hardened by default (systemd.exec(5), systemd.resource-control(5)): a dynamic user (``DynamicUser=``)
or ``User=``, the PID file and the reload channel in ``RuntimeDirectory=NAME`` (owned by that user;
systemd trusts a PID file a non-root user owns only for a pid inside the unit's cgroup, which a
successor is), a read-only file system (``ProtectSystem=strict``; with ``User=``, ``writable`` paths
become ``ReadWritePaths=``), private /tmp and /dev, no capabilities, no privilege gain, the kernel and the
other processes out of reach, a system call filter, ``UMask=0077``. ``systemd-analyze security``
rates it 1.4–1.6 (9.8 without). ``PrivateUsers=`` is left out: in a container (the Debian 13
test box) the service then fails to start with 217/USER. Unix listeners get ``SocketMode=0660``. A
user unit (``systemctl --user``) gets only what an unprivileged manager can apply. ``harden=False``
writes none of it.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import socket
from collections.abc import Mapping, Sequence

from ._address import TYPE_PREFIXES, parse_address, type_name
from ._env import check_fdname
from ._errors import UsageError

__all__ = ["render_units"]

_DIRECTIVE = {"stream": "ListenStream", "datagram": "ListenDatagram", "seqpacket": "ListenSequentialPacket"}
STOP_MARGIN = 15.0
#: User names systemd accepts in User= without warnings (systemd.exec(5), "User="; useradd's rule).
_USER_NAME = re.compile(r"[a-z_][a-z0-9_-]{0,30}")

#: What any unit may apply: seccomp and prctl need no privileges once NoNewPrivileges= is set.
_UNPRIVILEGED_HARDENING = [
    "NoNewPrivileges=yes",
    "LockPersonality=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "RestrictNamespaces=yes",
    "MemoryDenyWriteExecute=yes",
    "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
    "SystemCallArchitectures=native",
    "SystemCallFilter=@system-service",
    "SystemCallFilter=~@privileged",
    "SystemCallErrorNumber=EPERM",
    "UMask=0077",
]
#: Left out for ``supervise``, whose COMMAND may be any program: JIT runtimes (Node, the JVM, PyPy)
#: need writable+executable memory, and libuv/psutil read /proc/stat and /proc/meminfo.
_NOT_FOR_ANY_PROGRAM = ("MemoryDenyWriteExecute=yes", "ProcSubset=pid")
#: What a system unit adds: namespaces and dropped capabilities (the service never needs root).
_SYSTEM_HARDENING = [
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateTmp=yes",
    "PrivateDevices=yes",
    "PrivateMounts=yes",
    "DevicePolicy=closed",
    "CapabilityBoundingSet=",
    "AmbientCapabilities=",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectControlGroups=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "ProtectProc=invisible",
    "ProcSubset=pid",
]


def _listen_line(address: str) -> str:
    """``ListenStream=127.0.0.1:80`` for ``127.0.0.1:80``, ``ListenDatagram=53`` for ``udp:53``."""
    addr = parse_address(address)  # AddressError names the text and the accepted forms
    prefix, sep, rest = address.partition(":")
    value = rest if sep and prefix.lower() in TYPE_PREFIXES and not prefix.isdigit() else address
    return f"{_DIRECTIVE[type_name(addr.type)]}={value}"


def _escape(word: str) -> str:
    """Keep systemd from expanding specifiers (%) and variables ($) in a literal word."""
    if "\n" in word:
        raise UsageError(f"cannot put {word!r} in a unit file: it contains a newline")
    return word.replace("%", "%%").replace("$", "$$")


def _quote(argv: Sequence[str]) -> str:
    """An ExecStart= command line: each word escaped and quoted (systemd.service(5) quoting rules)."""
    return " ".join(shlex.quote(_escape(word)) for word in argv)


def _check_hardening(
    name: str, listens: Sequence[tuple[str, str]], run_as: str | None, writable: Sequence[str], harden: bool, user: bool
) -> None:
    """The rules for ``run_as`` (``--user``) and ``writable`` (``--writable``); UsageError naming the option."""
    if run_as is not None:
        if not harden or user:
            raise UsageError("--user NAME sets User= of a hardened system unit; drop --no-harden/--user-unit")
        if not _USER_NAME.fullmatch(run_as) or run_as == "root":
            raise UsageError(f"--user {run_as!r}: give an unprivileged user's name (lower-case letters, digits, _, -)")
    for path in writable:
        if not harden or user:
            raise UsageError(f"--writable {path}: only for a hardened system unit (no --no-harden, --user-unit)")
        if run_as is None:
            raise UsageError(
                f"--writable {path}: a dynamic user gets a new uid at each start and cannot own it; add --user "
                "NAME (an account that owns PATH), or give the service StateDirectory= in a drop-in"
            )
        if not path.startswith("/") or any(c.isspace() or c in "\"'%$\\" for c in path):
            raise UsageError(f"--writable {path!r}: give an absolute path without spaces, quotes, % or $")
    for fdname, address in listens:
        if address.startswith((f"/run/{name}/", f"%t/{name}/")):
            raise UsageError(
                f"--listen {fdname}={address}: /run/{name}/ is the service's RuntimeDirectory=, which systemd "
                "empties at every stop and restart (the socket would vanish); use another path, e.g. "
                f"/run/{name}.sock"
            )


def _check(
    name: str, listens: Sequence[tuple[str, str]], command: Sequence[str], mode: str, service_type: str, drain: float
) -> None:
    """Every rule an input to :func:`render_units` must follow; UsageError naming the option."""
    if not name or "/" in name or name.endswith((".service", ".socket")):
        raise UsageError(f"unit name {name!r}: give a bare name such as 'myapp'")
    if not listens:
        raise UsageError("give at least one --listen NAME=ADDRESS")
    if not command:
        raise UsageError("give the command after --")
    if mode not in ("inprocess", "supervise"):
        raise UsageError(f"mode {mode!r}: use inprocess or supervise")
    if service_type != "notify":
        raise UsageError(
            f"type {service_type!r}: only Type=notify; with notify-reload systemd counts any READY=1 as a "
            "successful reload, so a failed deploy would look like a success"
        )
    if not 0 < drain < math.inf:  # also refuses nan
        raise UsageError(f"--drain-timeout {drain}: give a positive, finite number of seconds")
    given = [fdname for fdname, _ in listens]
    twice = sorted({n for n in given if given.count(n) > 1})
    if twice:
        raise UsageError(
            f"--listen {', '.join(twice)} given more than once: each socket needs its own FileDescriptorName="
        )
    for fdname, _ in listens:
        check_fdname(fdname)


def _socket_units(name: str, listens: Sequence[tuple[str, str]], harden: bool) -> dict[str, str]:
    """One .socket per listener: ``NAME.socket`` for the first, ``NAME-<listener>.socket`` after it."""
    units = {}
    for index, (fdname, address) in enumerate(listens):
        unit = f"{name}.socket" if index == 0 else f"{name}-{fdname}.socket"
        mode = []
        parsed = parse_address(address)
        if harden and parsed.family == socket.AF_UNIX and isinstance(parsed.sockaddr, str):  # not abstract
            mode = ["# Who may connect: root and its group; SocketGroup= lets a proxy's group in.", "SocketMode=0660"]
        units[unit] = "\n".join(
            [
                f"# Generated by sockact units: listener {fdname!r} of {name}.service.",
                "[Unit]",
                f"Description={name}: socket {fdname}",
                "",
                "[Socket]",
                _listen_line(address),
                f"FileDescriptorName={fdname}",
                f"Service={name}.service",
                *mode,
                "",
                "[Install]",
                "WantedBy=sockets.target",
                "",
            ]
        )
    return units


def _start_lines(
    name: str, listens: Sequence[tuple[str, str]], command: Sequence[str], mode: str, drain: float, sockact: list[str]
) -> list[str]:
    """The mode's own lines: Type=, NotifyAccess=, PIDFile= and ExecStart= (%t: the runtime directory,
    the one specifier meant literally)."""
    if mode == "inprocess":
        return [
            "Type=notify",
            "# The draining predecessor may still speak to systemd (its watchdog) once the successor is main.",
            "NotifyAccess=all",
            "# PID-file hand-over: each successor is named here and made systemd's child (docs/PROTOCOL.md).",
            f"PIDFile=%t/{name}/{name}.pid",
            f"ExecStart={_quote(command)}",
        ]
    run = [*sockact, "run", *(f"--listen={n}={a}" for n, a in listens)]
    rest = [f"--drain-timeout={drain:g}", "--", *command]
    return [
        "Type=notify",
        "# sockact run stays the main process and the only one talking to systemd.",
        "NotifyAccess=main",
        f"ExecStart={_quote(run)} --control=%t/{name}/control {_quote(rest)}",
    ]


def _nice_lines() -> list[str]:
    """A successor starts nicer while the old code serves and gets nice 0 back when it is ready,
    which an unprivileged service may do only up to its RLIMIT_NICE (setpriority(2)): ``+0`` allows 0
    and never below. A manager that cannot raise the hard limit (a user manager; a systemd without
    CAP_SYS_RESOURCE) clamps it and starts the service anyway; sockact then starts successors at
    full priority."""
    return [
        "# Lets a successor, started nicer while the old code serves, get nice 0 back (never below).",
        "LimitNICE=+0",
    ]


def _hardening_lines(user: bool, run_as: str | None, writable: Sequence[str], mode: str) -> list[str]:
    """The sandbox (systemd.exec(5), needs systemd ≥ 247); relax one setting with a drop-in
    (``systemctl edit NAME``)."""
    lines = ["# Hardening (sockact units --no-harden leaves it out; relax one line with `systemctl edit`)."]
    dropped = _NOT_FOR_ANY_PROGRAM if mode == "supervise" else ()
    if user:
        return lines + [line for line in _UNPRIVILEGED_HARDENING if line not in dropped]
    if run_as is None:
        lines += ["# A user allocated for the service while it runs; it owns RuntimeDirectory=.", "DynamicUser=yes"]
    else:
        lines += [f"User={run_as}"]
    lines += [line for line in _SYSTEM_HARDENING + _UNPRIVILEGED_HARDENING if line not in dropped]
    lines += [f"ReadWritePaths={path}" for path in writable]
    return lines


def sockact_command(python: str) -> list[str]:
    """How a unit starts sockact with the interpreter ``python``: the console script beside it when
    that script runs this very interpreter (its ``#!`` line), else ``python -m sockact``. Every
    ``systemctl reload`` starts it (ExecReload=), and ``-m`` costs ~4 ms more: runpy's imports."""
    script = os.path.join(os.path.dirname(python), "sockact")
    try:
        with open(script, "rb") as f:
            first = f.readline(4096)
    except OSError:
        first = b""
    if first.rstrip(b"\n") == b"#!" + os.fsencode(python) and os.access(script, os.X_OK):
        return [script]
    return [python, "-m", "sockact"]


def render_units(
    name: str,
    listens: Sequence[tuple[str, str]],
    command: Sequence[str],
    *,
    mode: str = "inprocess",
    service_type: str = "notify",
    user: bool = False,
    drain_timeout: float = 30.0,
    environment: Mapping[str, str] | None = None,
    sockact_command: Sequence[str] = ("sockact",),
    harden: bool = True,
    run_as: str | None = None,
    writable: Sequence[str] = (),
) -> dict[str, str]:
    """``{filename: text}`` for ``NAME.service`` and one ``.socket`` per listener (``NAME.socket`` for
    the first, ``NAME-<listener>.socket`` for the others). ``harden``: the sandbox in the module
    docstring, as ``DynamicUser=`` unless ``run_as`` names a ``User=``; ``writable``: paths the app
    may write. Raises UsageError (a SockactError and ValueError) or AddressError on bad input."""
    _check(name, listens, command, mode, service_type, drain_timeout)
    _check_hardening(name, listens, run_as, writable, harden, user)
    env = dict(environment or {})
    for own in ("SOCKACT_PIDFILE", "SOCKACT_CONTROL"):
        if own in env:
            raise UsageError(f"{own} is set by the generated unit itself; drop it from --env")
    units = _socket_units(name, listens, harden)
    control = f"%t/{name}/control"
    service = [
        f"# Generated by sockact units ({mode} mode).",
        "[Unit]",
        f"Description={name}",
        f"Requires={' '.join(units)}",
        f"After={' '.join(units)}",
        "",
        "[Service]",
        *_start_lines(name, listens, command, mode, drain_timeout, list(sockact_command)),
        "# The PID file and the reload channel live here, owned by the service's user.",
        f"RuntimeDirectory={name}",
        "# Returns once the new code serves (the old one stopped accepting); fails if the upgrade failed.",
        f"ExecReload={_quote([*sockact_command, 'reload'])} --control={control}",
        "# SIGTERM to the main process only; it drains, then exits. Keep the stop timeout above the drain.",
        "KillMode=mixed",
        f"TimeoutStopSec={drain_timeout + STOP_MARGIN:g}",
        "Restart=on-failure",
        *_nice_lines(),
        *(f"Environment={shlex.quote(f'{k}={_escape(v)}')}" for k, v in sorted(env.items())),
    ]
    if mode == "inprocess":
        service += [f"Environment=SOCKACT_PIDFILE=%t/{name}/{name}.pid", f"Environment=SOCKACT_CONTROL={control}"]
    if harden:
        service += _hardening_lines(user, run_as, writable, mode)
    service += ["", "[Install]", f"WantedBy={'default.target' if user else 'multi-user.target'}", ""]
    units[f"{name}.service"] = "\n".join(service)
    return units
