"""Fallback binding: create the sockets nothing was handed over for — all of them, or none."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Sequence

from ._address import Address
from ._errors import AddressError

__all__ = ["bind_all", "bind_one"]


def _reclaim_stale_unix(addr: Address, path: str) -> None:
    """Remove ``path`` only if it is a socket file nobody listens on (systemd leaves such files).

    The probe connects without blocking: ECONNREFUSED means stale; success or EAGAIN (a live
    listener whose backlog is full) means in use, raised as AddressError at once.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise AddressError(
            f"cannot bind {addr.text!r}: {path} exists and is not a socket; remove it or choose another path"
        )
    probe = socket.socket(socket.AF_UNIX, addr.type)
    probe.setblocking(False)  # a live listener with a full backlog would block a blocking connect forever
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: a socket file with no listener behind it
        return
    except BlockingIOError:  # EAGAIN: a listener is there, its backlog is full — alive, so in use
        pass
    except OSError as exc:  # e.g. EACCES or another socket type: not ours to remove
        raise AddressError(
            f"cannot bind {addr.text!r}: {path} exists and could not be checked ({exc.strerror}); "
            "remove it if no process uses it"
        ) from exc
    finally:
        probe.close()
    raise AddressError(f"cannot bind {addr.text!r}: another process is already listening on {path}")


def unix_ids(owner: str | int | None, group: str | int | None) -> tuple[int, int]:
    """(uid, gid) for chown() of unix sockets, -1 for "unchanged": ids as given, names looked up
    (SocketUser=/SocketGroup= in systemd.socket(5)). Raises AddressError for an unknown name.

    grp and pwd are imported only for a name: get_listeners() calls this on every start, and the
    import (a shared library) costs more than the rest of adopting a socket."""

    def lookup(value: str | int | None, kind: str) -> int:
        if value is None:
            return -1
        if isinstance(value, int) or value.isdigit():
            return int(value)
        import grp
        import pwd

        try:
            return pwd.getpwnam(value).pw_uid if kind == "user" else grp.getgrnam(value).gr_gid
        except KeyError:
            raise AddressError(f"unix socket {kind} {value!r} does not exist; give a known name or a number") from None

    return lookup(owner, "user"), lookup(group, "group")


def _protocol(family: int, sock_type: int) -> int:
    """IPPROTO_TCP for a TCP socket, else 0 (the default). Naming it matters: a socket made with
    protocol 0 reports ``proto == 0``, and so do the connections it accepts — asyncio then does not
    set TCP_NODELAY on them (it checks ``proto == IPPROTO_TCP``), and every keep-alive response
    written in two parts waits ~40 ms for the client's delayed ACK (found by ``bench overhead``)."""
    if family in (socket.AF_INET, socket.AF_INET6) and sock_type == socket.SOCK_STREAM:
        return socket.IPPROTO_TCP
    return 0


# One sequence, kept whole (socket, options, bind, ownership, listen), each step with its own error text.
def bind_one(
    addr: Address, *, backlog: int, unix_mode: int | None = None, unix_ids: tuple[int, int] = (-1, -1)
) -> socket.socket:
    """Create, bind and (for stream/seqpacket) listen one socket; raises AddressError naming ``addr``.

    A unix socket file gets ``unix_mode`` (chmod) and ``unix_ids`` (chown uid, gid; -1 unchanged)
    after bind() and before listen(), so nobody can connect while it is still open to everyone.
    """
    family = addr.family
    sockaddr = addr.sockaddr
    if addr.dual_stack and not socket.has_ipv6:
        family, sockaddr = socket.AF_INET, ("0.0.0.0", addr.port or 0)
    try:
        sock = socket.socket(family, addr.type, _protocol(family, addr.type))
    except OSError as exc:
        if addr.dual_stack and exc.errno == errno.EAFNOSUPPORT:
            family, sockaddr = socket.AF_INET, ("0.0.0.0", addr.port or 0)
            sock = socket.socket(family, addr.type, _protocol(family, addr.type))
        else:
            raise AddressError(f"cannot create a socket for {addr.text!r}: {exc.strerror}") from exc
    bound_path: str | None = None
    try:
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if addr.dual_stack else 1)
        elif isinstance(sockaddr, str):
            parent = os.path.dirname(sockaddr) or "."
            try:
                if not stat.S_ISDIR(os.stat(parent).st_mode):
                    raise AddressError(f"cannot bind {addr.text!r}: {parent} is not a directory")
            except FileNotFoundError:
                raise AddressError(
                    f"cannot bind {addr.text!r}: directory {parent} does not exist; create it first"
                ) from None
            except OSError as exc:
                raise AddressError(f"cannot bind {addr.text!r}: directory {parent}: {exc.strerror}") from exc
            _reclaim_stale_unix(addr, sockaddr)
        sock.bind(sockaddr)
        bound_path = sockaddr if isinstance(sockaddr, str) and not sockaddr.startswith("\0") else None
        if isinstance(sockaddr, str) and sockaddr:
            if unix_ids != (-1, -1):
                try:
                    os.chown(sockaddr, *unix_ids)
                except OSError as exc:
                    raise AddressError(
                        f"cannot give unix socket {sockaddr} to uid:gid {unix_ids[0]}:{unix_ids[1]}: "
                        f"{exc.strerror}; changing the owner needs root (or CAP_CHOWN)"
                    ) from exc
            if unix_mode is not None:
                os.chmod(sockaddr, unix_mode)  # before listen(): nobody can connect yet
        if addr.type != socket.SOCK_DGRAM:
            sock.listen(backlog)
    except (AddressError, OSError) as exc:
        sock.close()
        if bound_path is not None:  # bound by us, then refused (chown, listen): leave no file behind
            with contextlib.suppress(OSError):
                os.unlink(bound_path)
        if isinstance(exc, AddressError):
            raise
        hint = {
            errno.EADDRINUSE: "the address is in use; stop the other process or pick another address",
            errno.EACCES: "permission denied; ports below 1024 need CAP_NET_BIND_SERVICE, paths need write access",
            errno.EADDRNOTAVAIL: "no local interface has this address",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        raise AddressError(f"cannot bind {addr.text!r}: {hint}", errno=exc.errno) from exc
    return sock


def bind_all(
    items: Sequence[tuple[str, Address]],
    *,
    backlog: int,
    unix_mode: int | None = None,
    unix_ids: tuple[int, int] = (-1, -1),
) -> dict[str, socket.socket]:
    """Bind every address, or close all that were made and raise the first failure (all-or-nothing)."""
    made: dict[str, socket.socket] = {}
    try:
        for name, addr in items:
            made[name] = bind_one(addr, backlog=backlog, unix_mode=unix_mode, unix_ids=unix_ids)
    except BaseException:
        for sock in made.values():
            with contextlib.suppress(OSError):
                if sock.family == socket.AF_UNIX and isinstance(sock.getsockname(), str) and sock.getsockname():
                    os.unlink(sock.getsockname())
            sock.close()
        raise
    return made
