"""The sd_notify(3) client: one send function and the helpers built on it.

Follows go-systemd's rule: ``False`` only when ``NOTIFY_SOCKET`` is unset; every real failure
raises :class:`NotifyError` naming the socket and the errno — a lost READY=1 makes systemd kill
the service after TimeoutStartSec=, so it must never pass silently.
"""

from __future__ import annotations

import errno as _errno
import os
import select
import socket
import struct
import time
from collections.abc import Mapping, MutableMapping, Sequence

from ._env import UPSTREAM_NOTIFY_VAR, check_fdname
from ._errors import NotifyError, UsageError, with_errno_class
from ._message import format_message, validate_state
from ._procenv import process_environ

TYPE_CHECKING = False  # not typing's: importing typing costs more than this module
if TYPE_CHECKING:
    import logging

__all__ = [
    "notify",
    "send",
    "ready",
    "reloading",
    "stopping",
    "status",
    "extend_timeout",
    "mainpid",
    "errno",
    "fdstore",
    "fdstore_remove",
    "barrier",
    "watchdog_ping",
    "watchdog_trigger",
    "monotonic_usec",
    "notify_target",
    "successor_handshake",
]

_FdLike = int | socket.socket


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in µs, the clock systemd expects in MONOTONIC_USEC= (sd_notify(3))."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def notify_target(value: str) -> tuple[int, int, str | tuple[int, int]]:
    """Parse a NOTIFY_SOCKET value into (family, type, address). Pure.

    ``/path`` and ``@abstract`` are AF_UNIX datagram sockets; ``vsock:CID:PORT`` is AF_VSOCK
    (systemd ≥ 253). Raises NotifyError for anything else.
    """
    if value.startswith("/"):
        return socket.AF_UNIX, socket.SOCK_DGRAM, value
    if value.startswith("@") and len(value) > 1:
        return socket.AF_UNIX, socket.SOCK_DGRAM, "\0" + value[1:]
    if value.startswith("vsock:"):
        parts = value.split(":")
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            family = getattr(socket, "AF_VSOCK", None)
            if family is None:
                raise NotifyError(f"NOTIFY_SOCKET={value!r} needs AF_VSOCK, which this Python/platform lacks")
            return family, socket.SOCK_SEQPACKET, (int(parts[1]), int(parts[2]))
    raise NotifyError(
        f"NOTIFY_SOCKET={value!r} is not an absolute path, an @abstract name or vsock:CID:PORT (sd_notify(3))",
        errno=_errno.EAFNOSUPPORT,
    )


def _fileno(fd: _FdLike) -> int:
    return fd.fileno() if isinstance(fd, socket.socket) else int(fd)


def send(
    data: bytes,
    *,
    fds: Sequence[_FdLike] = (),
    pid: int | None = None,
    environ: MutableMapping[str, str] | None = None,
    unset_environment: bool = False,
) -> bool:
    """Send one raw datagram to ``$NOTIFY_SOCKET``; the single place sockact writes to a manager.

    ``pid``: send SCM_CREDENTIALS claiming this pid (needs privilege unless it is ours), as
    sd_pid_notify(3). ``fds`` travel by SCM_RIGHTS (sd_pid_notify_with_fds(3)). ``environ``
    defaults to ``os.environ`` (a seam for tests and for successors).

    Returns False only when NOTIFY_SOCKET is unset. Raises NotifyError otherwise; a failed send is
    also the errno's own OSError subclass (ConnectionRefusedError, FileNotFoundError, …) as in
    python-systemd.
    """
    env: MutableMapping[str, str] = process_environ() if environ is None else environ
    target = env.get("NOTIFY_SOCKET")
    if unset_environment:
        env.pop("NOTIFY_SOCKET", None)
    if not target:
        return False
    family, type_, address = notify_target(target)
    ancillary = []
    if pid is not None and pid != os.getpid():
        ancillary.append((socket.SOL_SOCKET, socket.SCM_CREDENTIALS, struct.pack("iII", pid, os.getuid(), os.getgid())))
    if fds:
        ancillary.append((socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *map(_fileno, fds))))
    try:
        sock = socket.socket(family, type_ | socket.SOCK_CLOEXEC)
    except OSError as exc:
        raise with_errno_class(
            NotifyError, f"cannot create a socket for NOTIFY_SOCKET={target!r}: {exc.strerror}", exc.errno
        ) from exc
    try:
        if family == socket.AF_UNIX:
            sent = sock.sendmsg([data], ancillary, 0, address)
        else:
            sock.connect(address)  # vsock is connection-oriented
            sent = sock.sendmsg([data], ancillary)
    except OSError as exc:
        hint = {
            _errno.ENOENT: "no such socket file; is the manager still running?",
            _errno.ECONNREFUSED: "nobody is listening there; the manager has gone",
            _errno.ENOTSOCK: "that path is not a socket",
            _errno.EACCES: "permission denied",
            _errno.EAGAIN: "the manager's queue is full",
            _errno.EPERM: "not allowed to send credentials for that pid",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        # The errno's own OSError subclass too (ConnectionRefusedError, FileNotFoundError…), as python-systemd
        raise with_errno_class(NotifyError, f"cannot notify NOTIFY_SOCKET={target!r}: {hint}", exc.errno) from exc
    finally:
        sock.close()
    if sent != len(data):
        raise NotifyError(
            f"short write to NOTIFY_SOCKET={target!r}: {sent} of {len(data)} bytes", errno=_errno.EMSGSIZE
        )
    return True


def notify(
    state: str | Mapping[str, object],
    *,
    fds: Sequence[_FdLike] = (),
    pid: int | None = None,
    environ: MutableMapping[str, str] | None = None,
) -> bool:
    """Tell the service manager ``state``: ``"READY=1\\nSTATUS=…"`` or ``{"READY": 1, "STATUS": …}``.

    The message is validated (keys, no newline or NUL inside a value, ≤ 4096 bytes) before anything
    is sent. Returns False only when NOTIFY_SOCKET is unset (sd_notify(3)).

    Raises:
        UsageError: an invalid message (a ValueError: nothing was sent).
        NotifyError: unusable NOTIFY_SOCKET, or the send failed (errno kept).
    """
    data = validate_state(state) if isinstance(state, str) else format_message(state)
    return send(data, fds=fds, pid=pid, environ=environ)


def ready(status: str | None = None, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """READY=1 (and STATUS=): start-up, or a reload, is complete.

    In a successor started by sockact's upgrader (SOCKACT_UPSTREAM_NOTIFY_SOCKET set), READY=1 goes to
    the predecessor; this then waits for the hand-over (a BARRIER=1 the predecessor releases) and
    switches NOTIFY_SOCKET to the real manager, so later messages reach systemd directly.
    """
    sent = notify({"READY": 1, **({"STATUS": status} if status is not None else {})}, environ=environ)
    if sent and UPSTREAM_NOTIFY_VAR in (process_environ() if environ is None else environ):
        successor_handshake(environ)
    return sent


def successor_handshake(environ: MutableMapping[str, str] | None = None, timeout: float = 10.0) -> bool:
    """For a successor that just sent READY=1 to its predecessor: wait until the hand-over is done,
    then talk to the real manager directly (NOTIFY_SOCKET := SOCKACT_UPSTREAM_NOTIFY_SOCKET; an empty
    value means there is no manager, and NOTIFY_SOCKET is removed).

    The wait is a BARRIER=1 (sd_notify_barrier(3)) that the predecessor holds until it has told the
    manager who is main. Returns True when it switched. Called by :func:`ready`.
    """
    env: MutableMapping[str, str] = process_environ() if environ is None else environ
    upstream = env.get(UPSTREAM_NOTIFY_VAR)
    if upstream is None:
        return False
    try:
        barrier(timeout, environ=env)
    except NotifyError as exc:  # the predecessor closed its receiver first: the hand-over is over either way
        _log().info("hand-over barrier on %s: %s; talking to the manager directly now", env.get("NOTIFY_SOCKET"), exc)
    if upstream:
        env["NOTIFY_SOCKET"] = upstream
    else:
        env.pop("NOTIFY_SOCKET", None)
    del env[UPSTREAM_NOTIFY_VAR]
    return True


def _log() -> logging.Logger:
    import logging

    return logging.getLogger("sockact.notify")


def reloading(status: str | None = None, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """RELOADING=1 and MONOTONIC_USEC=now in one datagram (required by Type=notify-reload, systemd ≥ 253)."""
    msg: dict[str, object] = {"RELOADING": 1, "MONOTONIC_USEC": monotonic_usec()}
    if status is not None:
        msg["STATUS"] = status
    return notify(msg, environ=environ)


def stopping(status: str | None = None, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """STOPPING=1: shutting down."""
    return notify({"STOPPING": 1, **({"STATUS": status} if status is not None else {})}, environ=environ)


def status(text: str, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """STATUS=text, shown by ``systemctl status``."""
    return notify({"STATUS": text}, environ=environ)


def extend_timeout(seconds: float, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """EXTEND_TIMEOUT_USEC=: ask for ``seconds`` more before the current start/stop timeout fires.

    Raises UsageError unless ``seconds`` is a positive finite number (sd_notify(3)).
    """
    if not 0 < seconds < float("inf"):
        raise UsageError(f"extend_timeout needs a positive number of seconds, not {seconds!r}")
    return notify({"EXTEND_TIMEOUT_USEC": int(seconds * 1_000_000)}, environ=environ)


def mainpid(pid: int, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """MAINPID=pid: another process is now the service's main process."""
    if pid <= 0:
        raise UsageError(f"MAINPID needs a positive pid, not {pid!r}")
    return notify({"MAINPID": pid}, environ=environ)


def errno(number: int, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """ERRNO=n: the service failed with this errno."""
    return notify({"ERRNO": int(number)}, environ=environ)


def fdstore(
    fds: Sequence[_FdLike], name: str | None = None, *, environ: MutableMapping[str, str] | None = None
) -> bool:
    """FDSTORE=1 (+FDNAME=): hand fds to the manager's fd store (needs FileDescriptorStoreMax= > 0)."""
    if not fds:
        raise UsageError("fdstore() needs at least one fd")
    msg: dict[str, object] = {"FDSTORE": 1}
    if name is not None:
        check_fdname(name)
        msg["FDNAME"] = name
    return send(format_message(msg), fds=fds, environ=environ)


def fdstore_remove(name: str, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """FDSTOREREMOVE=1 with FDNAME=: drop fds of that name from the fd store."""
    check_fdname(name)
    return notify({"FDSTOREREMOVE": 1, "FDNAME": name}, environ=environ)


def watchdog_ping(*, environ: MutableMapping[str, str] | None = None) -> bool:
    """WATCHDOG=1: keep-alive ping."""
    return notify({"WATCHDOG": 1}, environ=environ)


def watchdog_trigger(*, environ: MutableMapping[str, str] | None = None) -> bool:
    """WATCHDOG=trigger: ask the manager to act as if the watchdog expired."""
    return notify({"WATCHDOG": "trigger"}, environ=environ)


def barrier(timeout: float = 5.0, *, environ: MutableMapping[str, str] | None = None) -> bool:
    """BARRIER=1: wait until the manager has processed every earlier message (sd_notify_barrier(3)).

    Sends the write end of a pipe and waits for the manager to close it. Raises NotifyError on
    timeout; returns False if NOTIFY_SOCKET is unset.
    """
    read_end, write_end = os.pipe2(os.O_CLOEXEC)
    try:
        try:
            sent = send(b"BARRIER=1", fds=[write_end], environ=environ)
        finally:
            os.close(write_end)
        if not sent:
            return False
        poller = select.poll()
        poller.register(read_end, select.POLLHUP)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotifyError(
                    f"BARRIER=1 not acknowledged within {timeout} s by the manager", errno=_errno.ETIMEDOUT
                )
            if poller.poll(remaining * 1000):
                return True
    finally:
        os.close(read_end)
