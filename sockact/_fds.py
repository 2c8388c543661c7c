"""I/O on inherited fds: check they are open, mark them close-on-exec, tell what they are, adopt them."""

from __future__ import annotations

import _socket
import errno
import os
import socket
import stat
from collections import namedtuple
from collections.abc import Iterable, MutableMapping

from ._address import kind_name
from ._env import LISTEN_VARIABLES
from ._errors import ActivationError

TYPE_CHECKING = False  # not typing's: typing.NamedTuple would import typing into every successor (~3 ms)
if TYPE_CHECKING:
    from typing import NamedTuple

__all__ = ["FdInfo", "claim_fds", "describe_fd", "inspect_fd", "unset_listen_vars", "own_pidfd_id", "close_fd"]


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

    One syscall per fd: ``os.set_inheritable`` is ioctl(FIOCLEX) on Linux (libsystemd's F_GETFD +
    F_SETFD is two, and the fcntl module adds an audit event per call); on a closed fd it falls back
    to F_GETFD, which fails with EBADF.

    Raises:
        ActivationError: an fd listed by LISTEN_FDS is not open (EBADF) — the message names it.
    """
    for fd in fds:
        try:
            os.set_inheritable(fd, False)
        except OSError as exc:
            raise ActivationError(
                f"fd {fd} is listed by LISTEN_FDS but is not open ({errno.errorcode.get(exc.errno or 0, exc)}): "
                "the process that started this one passed fewer fds than it announced; check how it passes "
                "them (they must be fds 3, 4, … without close-on-exec).",
                errno=exc.errno,
            ) from exc


if TYPE_CHECKING:

    class _FdFields(NamedTuple):
        fd: int
        kind: str
        family: int = 0
        type: int = 0
        listening: bool = False
        sockname: object = None
        proto: int = 0

else:  # the same fields and defaults, checked by tests/test_inherit.py
    _FdFields = namedtuple("_FdFields", "fd kind family type listening sockname proto", defaults=(0, 0, False, None, 0))


class FdInfo(_FdFields):
    """What an fd is: ``kind`` is ``socket``, ``fifo``, ``file``, ``character device``, … .

    A named tuple, not a frozen dataclass: built once per inherited fd, and a frozen dataclass's
    ``__init__`` costs four times as much (LISTEN_FDS may pass thousands)."""

    __slots__ = ()

    def describe(self) -> str:
        """``inet6 stream socket listening on ('::', 8080, 0, 0)`` or ``fifo``."""
        if self.kind != "socket":
            return self.kind
        state = "listening" if self.listening else "not listening"
        return f"{kind_name(self.family, self.type)} socket {state} on {self.sockname!r}"


_KINDS = {
    stat.S_ISFIFO: "fifo",
    stat.S_ISREG: "regular file",
    stat.S_ISCHR: "character device",
    stat.S_ISDIR: "directory",
    stat.S_ISBLK: "block device",
}
# socket.socket's family and type properties build an enum on every access; the C attributes
# underneath hold the same numbers.
_FAMILY = _socket.socket.family.__get__
_TYPE = _socket.socket.type.__get__


def inspect_fd(fd: int) -> tuple[FdInfo, socket.socket | None]:
    """What an fd is, and for a socket a ``socket.socket`` on it (family, type and protocol as the
    kernel reports them) that now owns the fd: the caller keeps it (adopting the fd) or ``detach()``es
    it, on every path. The fewest syscalls Python allows per socket: getsockname (which ``socket()``
    does anyway, and which tells a socket from anything else: ENOTSOCK), SO_TYPE, SO_PROTOCOL and
    SO_ACCEPTCONN; fstat only for what is not a socket. No address is decoded (see :func:`describe_fd`).

    Raises:
        OSError: ``fd`` is not open.
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        if exc.errno != errno.ENOTSOCK:
            raise
        mode = os.fstat(fd).st_mode
        return FdInfo(fd, next((name for test, name in _KINDS.items() if test(mode)), "unknown")), None
    try:
        listening = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        listening = False
    return FdInfo(fd, "socket", _FAMILY(sock), _TYPE(sock), listening, None, sock.proto), sock


def describe_fd(fd: int, *, name: bool = True) -> FdInfo:
    """Inspect an fd without taking ownership of it; ``name=False`` skips the socket's address (one
    syscall fewer). Raises OSError if it is not open."""
    info, sock = inspect_fd(fd)
    if sock is None:
        return info
    try:
        if name:
            try:
                info = info._replace(sockname=sock.getsockname())
            except OSError:
                pass
    finally:
        sock.detach()
    return info


def close_fd(fd: int) -> None:
    """Close an fd, ignoring EBADF (already closed)."""
    try:
        os.close(fd)
    except OSError as exc:
        if exc.errno != errno.EBADF:
            raise
