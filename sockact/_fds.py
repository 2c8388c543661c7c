"""I/O on inherited fds: check they are open, mark them close-on-exec, tell what they are, adopt them."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass

from ._address import kind_name
from ._env import LISTEN_VARIABLES
from ._errors import ActivationError

__all__ = ["FdInfo", "claim_fds", "describe_fd", "adopt_socket", "unset_listen_vars", "own_pidfd_id", "close_fd"]


def own_pidfd_id() -> int | None:
    """This process's pidfd inode id (what systemd ≥ 259 puts in LISTEN_PIDFDID), or None."""
    try:
        fd = os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return None
    try:
        return os.fstat(fd).st_ino
    finally:
        os.close(fd)


def unset_listen_vars(environ: MutableMapping[str, str]) -> None:
    """Remove every LISTEN_* variable from ``environ`` (``os.environ`` updates the C environment too)."""
    for name in LISTEN_VARIABLES:
        environ.pop(name, None)


def claim_fds(fds: Iterable[int]) -> None:
    """Mark each inherited fd close-on-exec, as sd_listen_fds(3) does, failing on the first closed one.

    Raises:
        ActivationError: an fd listed by LISTEN_FDS is not open (EBADF) — the message names it.
    """
    for fd in fds:
        try:
            flags = fcntl.fcntl(fd, fcntl.F_GETFD)
            if not flags & fcntl.FD_CLOEXEC:
                fcntl.fcntl(fd, fcntl.F_SETFD, flags | fcntl.FD_CLOEXEC)
        except OSError as exc:
            raise ActivationError(
                f"fd {fd} is listed by LISTEN_FDS but is not open ({errno.errorcode.get(exc.errno or 0, exc)}): "
                "the process that started this one passed fewer fds than it announced; check how it passes "
                "them (they must be fds 3, 4, … without close-on-exec).",
                errno=exc.errno,
            ) from exc


@dataclass(frozen=True)
class FdInfo:
    """What an fd is: ``kind`` is ``socket``, ``fifo``, ``file``, ``character device``, … ."""

    fd: int
    kind: str
    family: int = 0
    type: int = 0
    listening: bool = False
    sockname: object = None
    proto: int = 0

    def describe(self) -> str:
        """``inet6 stream socket listening on ('::', 8080, 0, 0)`` or ``fifo``."""
        if self.kind != "socket":
            return self.kind
        state = "listening" if self.listening else "not listening"
        return f"{kind_name(self.family, self.type)} socket {state} on {self.sockname!r}"


def describe_fd(fd: int, *, name: bool = True) -> FdInfo:
    """Inspect an fd without taking ownership of it; ``name=False`` skips the socket's address (one
    syscall fewer per fd, when nothing needs it). Raises OSError if it is not open."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISSOCK(mode):
        kinds = {
            stat.S_ISFIFO: "fifo",
            stat.S_ISREG: "regular file",
            stat.S_ISCHR: "character device",
            stat.S_ISDIR: "directory",
            stat.S_ISBLK: "block device",
        }
        kind = next((name for test, name in kinds.items() if test(mode)), "unknown")
        return FdInfo(fd, kind)
    # Borrow the fd without dup() or family auto-detection (both cost more than the answers, per fd,
    # and LISTEN_FDS may pass thousands); detach() hands it back untouched.
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0, fileno=fd)
    try:
        family = probe.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN)
        sock_type = probe.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE)
        proto = probe.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL)
        try:
            listening = bool(probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
        except OSError:
            listening = False
    finally:
        probe.detach()
    sockname: object = None
    if name:
        try:
            named = socket.socket(family, sock_type, proto, fileno=fd)  # the right family, to decode the name
        except OSError:
            return FdInfo(fd, "socket", family, sock_type, listening, None, proto)
        try:
            sockname = named.getsockname()
        except OSError:
            sockname = None
        finally:
            named.detach()
    return FdInfo(fd, "socket", family, sock_type, listening, sockname, proto)


def adopt_socket(fd: int, info: FdInfo | None = None) -> socket.socket:
    """Wrap an inherited socket fd in a ``socket.socket`` that owns it: family, type and protocol
    from ``info`` (what :func:`describe_fd` read) or else detected."""
    if info is not None and info.kind == "socket":
        return socket.socket(info.family, info.type, info.proto, fileno=fd)
    return socket.socket(fileno=fd)


def close_fd(fd: int) -> None:
    """Close an fd, ignoring EBADF (already closed)."""
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
