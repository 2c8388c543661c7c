"""A drop-in for python-systemd's ``systemd.daemon`` (version 235): change one import, no compiler.

``from sockact import daemon`` offers the same names, signatures, results and errors
(``OSError`` with libsystemd's errno) as ``from systemd import daemon``, implemented in pure Python
with libsystemd 252's exact parsing rules. One difference, on purpose: ``unset_environment=True``
also removes the variables from ``os.environ`` (python-systemd only unsets them at C level, so
``os.environ`` stays stale and children started with ``env=dict(os.environ)`` inherit them).

Opt-in libsystemd backend: set ``SOCKACT_DAEMON_BACKEND=libsystemd`` in the environment (or call
``use_backend("libsystemd")``) with the ``systemd`` extra installed; every function then delegates
to python-systemd and sockact still cleans ``os.environ``.
"""

from __future__ import annotations

import errno as _errno
import ipaddress
import os
import socket
import stat
from collections.abc import Callable
from typing import Any, Protocol

from ._env import LISTEN_FDS_START as _START
from ._fds import unset_listen_vars
from ._listeners import read_inherited
from ._notify import send as _send

__all__ = [
    "LISTEN_FDS_START",
    "booted",
    "notify",
    "listen_fds",
    "listen_fds_with_names",
    "is_fifo",
    "is_socket",
    "is_socket_inet",
    "is_socket_unix",
    "is_socket_sockaddr",
    "is_mq",
    "use_backend",
]

LISTEN_FDS_START = _START
_backend: str | None = None


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


FileLike = int | _HasFileno


def use_backend(name: str | None) -> None:
    """Choose ``"python"`` (default), ``"libsystemd"`` (python-systemd), or None to follow the environment."""
    global _backend
    if name not in (None, "python", "libsystemd"):
        raise ValueError(f"unknown sockact.daemon backend {name!r}: use 'python' or 'libsystemd'")
    if name == "libsystemd":
        _libsystemd()
    _backend = name


def _libsystemd() -> Any:
    try:
        from systemd import daemon as sd  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise ImportError(
            "SOCKACT_DAEMON_BACKEND=libsystemd needs python-systemd: pip install 'sockact[systemd]' "
            "(build needs libsystemd-dev, pkg-config and gcc)"
        ) from exc
    return sd


def _delegate() -> Any:
    name = _backend or os.environ.get("SOCKACT_DAEMON_BACKEND", "python")
    return _libsystemd() if name == "libsystemd" else None


def _fd(fileobj: FileLike) -> int:
    fileno: Callable[[], int] | None = getattr(fileobj, "fileno", None)
    return fileno() if fileno is not None else int(fileobj)  # type: ignore[arg-type]


def _oserror(err: int, filename: str | None = None) -> OSError:
    return OSError(err, os.strerror(err), *([filename] if filename is not None else []))


def booted() -> bool:
    """Whether the system was booted with systemd (sd_booted(3): /run/systemd/system/ exists)."""
    sd = _delegate()
    if sd is not None:
        return bool(sd.booted())
    try:
        return stat.S_ISDIR(os.lstat("/run/systemd/system/").st_mode)
    except OSError:
        return False


def notify(status: str, unset_environment: bool = False, pid: int = 0, fds: list[int] | None = None) -> bool:
    """Send ``status`` to $NOTIFY_SOCKET (sd_pid_notify_with_fds(3)); False when it is unset.

    Raises OSError (a sockact NotifyError) when sending fails: the errno's own subclass
    (ConnectionRefusedError, FileNotFoundError, …), as python-systemd does.
    """
    sd = _delegate()
    if sd is not None:
        result = bool(sd.notify(status, unset_environment, pid, fds))
        if unset_environment:
            os.environ.pop("NOTIFY_SOCKET", None)
        return result
    if pid < 0:
        raise OverflowError("Bad pid_t")
    return _send(status.encode(), fds=fds or (), pid=pid or None, unset_environment=unset_environment)


def listen_fds_with_names(unset_environment: bool = True) -> dict[int, str]:
    """Return ``{fd: name}`` for the fds passed by socket activation (sd_listen_fds_with_names(3)).

    Raises OSError (EINVAL, ERANGE, EBADF) exactly where libsystemd fails.
    """
    sd = _delegate()
    if sd is not None:
        try:
            return dict(sd.listen_fds_with_names(unset_environment))
        finally:
            if unset_environment:
                unset_listen_vars(os.environ)
    inherited = read_inherited(unset_environment=unset_environment)
    return dict(zip(inherited.fds, inherited.names))


def listen_fds(unset_environment: bool = True) -> list[int]:
    """Return the fds passed by socket activation, from 3 (sd_listen_fds(3)); like libsystemd, it
    never reads LISTEN_FDNAMES (a name count that does not match is no error here)."""
    sd = _delegate()
    if sd is not None:
        try:
            return list(sd.listen_fds(unset_environment))
        finally:
            if unset_environment:
                unset_listen_vars(os.environ)
    return list(read_inherited(unset_environment=unset_environment, names=False).fds)


def _fstat_mode(fd: int, path: str | None = None) -> int:
    if fd < 0:
        raise _oserror(_errno.EBADF, path)
    return os.fstat(fd).st_mode


def is_fifo(fileobj: FileLike, path: str | None = None) -> bool:
    """Whether the fd is a FIFO (at ``path``, if given) — sd_is_fifo(3)."""
    fd = _fd(fileobj)
    sd = _delegate()
    if sd is not None:
        return bool(sd.is_fifo(fd, path))
    mode = _fstat_mode(fd, path)
    if not stat.S_ISFIFO(mode):
        return False
    return _same_file(fd, path)


def _same_file(fd: int, path: str | None) -> bool:
    if path is None:
        return True
    try:
        st_path = os.stat(path)
    except FileNotFoundError:
        return False
    st_fd = os.fstat(fd)
    return (st_path.st_dev, st_path.st_ino) == (st_fd.st_dev, st_fd.st_ino)


def _is_socket_internal(fd: int, type: int, listening: int) -> socket.socket | None:
    """A non-owning socket object when ``fd`` is a socket of ``type`` in ``listening`` state, else None."""
    if not stat.S_ISSOCK(_fstat_mode(fd)):
        return None
    sock = socket.socket(fileno=os.dup(fd))
    if type and sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != type:
        sock.close()
        return None
    if listening >= 0 and bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)) != bool(listening):
        sock.close()
        return None
    return sock


def is_socket(fileobj: FileLike, family: int = socket.AF_UNSPEC, type: int = 0, listening: int = -1) -> bool:
    """Whether the fd is a socket of that family, type and listening state (0 = any) — sd_is_socket(3)."""
    fd = _fd(fileobj)
    sd = _delegate()
    if sd is not None:
        return bool(sd.is_socket(fd, family, type, listening))
    if family < 0:
        raise _oserror(_errno.EINVAL)
    sock = _is_socket_internal(fd, type, listening)
    if sock is None:
        return False
    with sock:
        return family == 0 or sock.family == family


def is_socket_inet(
    fileobj: FileLike, family: int = socket.AF_UNSPEC, type: int = 0, listening: int = -1, port: int = 0
) -> bool:
    """Whether the fd is an IPv4/IPv6 socket (on ``port``, if non-zero) — sd_is_socket_inet(3)."""
    fd = _fd(fileobj)
    sd = _delegate()
    if sd is not None:
        return bool(sd.is_socket_inet(fd, family, type, listening, port))
    if not 0 <= port <= 0xFFFF:
        raise ValueError("port must fit into uint16_t")
    if family not in (0, socket.AF_INET, socket.AF_INET6):
        raise _oserror(_errno.EINVAL)
    sock = _is_socket_internal(fd, type, listening)
    if sock is None:
        return False
    with sock:
        if sock.family not in (socket.AF_INET, socket.AF_INET6) or (family and sock.family != family):
            return False
        return port == 0 or sock.getsockname()[1] == port


def is_socket_unix(fileobj: FileLike, type: int = 0, listening: int = -1, path: str | None = None) -> bool:
    """Whether the fd is an AF_UNIX socket (bound to ``path``; a leading NUL = abstract) — sd_is_socket_unix(3)."""
    fd = _fd(fileobj)
    sd = _delegate()
    if sd is not None:
        return bool(sd.is_socket_unix(fd, type, listening, path))
    sock = _is_socket_internal(fd, type, listening)
    if sock is None:
        return False
    with sock:
        if sock.family != socket.AF_UNIX:
            return False
        if path is None:
            return True
        name = sock.getsockname()
        got = name if isinstance(name, bytes) else os.fsencode(name)
        want = os.fsencode(path)
        if want.startswith(b"\0"):
            return got == want
        return got.rstrip(b"\0") == want and not got.startswith(b"\0")


def _parse_sockaddr(address: str) -> tuple[int, str, int, int]:
    """(family, host, port, scope) for python-systemd's address syntax: ADDR, ADDR:PORT, [ADDR]:PORT, PORT."""
    invalid = ValueError("Cannot parse address")
    try:
        if address.startswith("["):
            host, _, rest = address[1:].partition("]")
            port = 0
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit() or not 0 < int(rest[1:]) <= 0xFFFF:
                    raise invalid
                port = int(rest[1:])
            return socket.AF_INET6, str(ipaddress.IPv6Address(host)), port, 0
        if ":" in address:
            host, _, port_text = address.partition(":")
            if not port_text.isdigit() or not 0 < int(port_text) <= 0xFFFF:
                raise invalid
            return socket.AF_INET, str(ipaddress.IPv4Address(host)), int(port_text), 0
        if address.isdigit():
            if not 0 < int(address) <= 0xFFFF:
                raise invalid
            return socket.AF_INET6, "::", int(address), 0
        ip = ipaddress.ip_address(address)
        return (socket.AF_INET if ip.version == 4 else socket.AF_INET6), str(ip), 0, 0
    except ValueError as exc:
        raise invalid from exc


def is_socket_sockaddr(fileobj: FileLike, address: str, type: int = 0, flowinfo: int = 0, listening: int = -1) -> bool:
    """Whether the fd is a socket bound to ``address`` (``ADDR``, ``ADDR:PORT``, ``[ADDR]:PORT``; port 0 = any)
    — sd_is_socket_sockaddr(3). Raises ValueError for an unparsable address."""
    fd = _fd(fileobj)
    sd = _delegate()
    if sd is not None:
        return bool(sd.is_socket_sockaddr(fd, address, type, flowinfo, listening))
    family, host, port, _ = _parse_sockaddr(address)
    if flowinfo and family != socket.AF_INET6:
        raise ValueError("flowinfo is only applicable to IPv6 addresses")
    sock = _is_socket_internal(fd, type, listening)
    if sock is None:
        return False
    with sock:
        if sock.family != family:
            return False
        name = sock.getsockname()
        if port and name[1] != port:
            return False
        if flowinfo and family == socket.AF_INET6 and name[2] != flowinfo:
            return False
        return bool(ipaddress.ip_address(name[0].split("%")[0]) == ipaddress.ip_address(host))


def is_mq(fileobj: FileLike, path: str | None = None) -> bool:
    """Whether the fd is a POSIX message queue (named ``path``, if given) — sd_is_mq(3)."""
    fd = _fd(fileobj)
    sd = _delegate()
    if sd is not None:
        return bool(sd.is_mq(fd, path))
    if fd < 0:
        raise _oserror(_errno.EBADF, path)
    import ctypes  # only here: message queues are rare and ctypes costs import time

    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_long * 8)()
    if libc.mq_getattr(fd, attr) < 0:
        err = ctypes.get_errno()
        if err == _errno.EBADF:
            os.fstat(fd)  # a closed fd raises EBADF as libsystemd does; an open non-queue is just "no"
            return False
        raise _oserror(err, path)
    if path is None:
        return True
    if not path.startswith("/"):
        raise _oserror(_errno.EINVAL, path)
    try:
        st_path = os.stat(os.path.join("/dev/mqueue", path.lstrip("/")))
    except FileNotFoundError:
        return False
    st_fd = os.fstat(fd)
    return (st_path.st_dev, st_path.st_ino) == (st_fd.st_dev, st_fd.st_ino)
