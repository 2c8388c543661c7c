"""The manager's side of sd_notify: a socket that plays systemd for a child (sd_notify(3), systemd.exec(5)).

``NotifyReceiver`` binds a fresh AF_UNIX datagram socket — by default a path in a private 0700
directory, so only this uid can connect (abstract names are not protected by file permissions;
opt in with ``abstract=True`` and rely on the pid check) — turns on SO_PASSCRED and yields each
datagram as a :class:`Message` with the sender's kernel-verified pid and any fds it carried.
"""

from __future__ import annotations

import array
import errno
import logging
import os
import socket
import struct
from collections.abc import Iterable, Iterator
from types import TracebackType

from ._errors import NotifyError
from ._message import MAX_MESSAGE, parse_message
from ._poll import readable_async
from ._spawn import parent_of

TYPE_CHECKING = False  # not typing's: a successor imports this on its way to READY=1
if TYPE_CHECKING:
    import asyncio

__all__ = ["Message", "NotifyReceiver"]

log = logging.getLogger("sockact.receiver")
_SCM_MAX_FD = 253
_UCRED = struct.Struct("iII")
_ANC_SPACE = socket.CMSG_SPACE(_UCRED.size) + socket.CMSG_SPACE(_SCM_MAX_FD * 4)


class Message:
    """One received notification: ``fields`` (``{"READY": "1", …}``), sender ``pid``/``uid``/``gid``, ``fds``.

    The receiver owns ``fds`` until :meth:`take_fds` hands them over; :meth:`close` closes whatever
    was not taken (the receiver calls it after yielding, so nothing leaks).
    """

    __slots__ = ("fds", "fields", "gid", "pid", "raw", "uid")

    def __init__(self, raw: bytes, pid: int | None, uid: int | None, gid: int | None, fds: list[int]) -> None:
        self.raw = raw
        self.fields = parse_message(raw)
        self.pid, self.uid, self.gid = pid, uid, gid
        self.fds = fds

    def __repr__(self) -> str:
        return f"<Message pid={self.pid} fields={self.fields!r} fds={self.fds}>"

    def __contains__(self, key: str) -> bool:
        return key in self.fields

    def __getitem__(self, key: str) -> str:
        return self.fields[key]

    def get(self, key: str, default: str | None = None) -> str | None:
        """The value of ``key``, or ``default``."""
        return self.fields.get(key, default)

    def take_fds(self) -> list[int]:
        """Take ownership of the received fds (close-on-exec); the receiver will not close them."""
        fds, self.fds = self.fds, []
        return fds

    def close(self) -> None:
        """Close every fd not taken. Idempotent."""
        while self.fds:
            try:
                os.close(self.fds.pop())
            except OSError:
                pass


class NotifyReceiver:
    """A NOTIFY_SOCKET to give a child: receives, checks senders, collects fds. A context manager.

    ``allowed_pids``: when not None, datagrams from any other pid (or without credentials) are
    logged and dropped, their fds closed. ``address`` is the value for the child's NOTIFY_SOCKET.
    A BARRIER=1 is acknowledged at once (its fd closed) unless ``hold_barriers``: then the message
    keeps its fd and its sender waits until the caller closes it.
    """

    def __init__(
        self,
        *,
        abstract: bool = False,
        directory: str | None = None,
        allowed_pids: Iterable[int] | None = None,
        hold_barriers: bool = False,
    ) -> None:
        self.allowed_pids: set[int] | None = set(allowed_pids) if allowed_pids is not None else None
        #: Pids whose children may send too (checked at receipt in /proc, only for senders not allowed).
        self.allowed_parents: set[int] = set()
        self.hold_barriers = hold_barriers
        self._dir: str | None = None
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            if abstract:
                name = f"sockact/notify/{os.getpid()}/{os.urandom(8).hex()}"  # secrets.token_hex, without its imports
                self._sock.bind("\0" + name)
                self.address = "@" + name
            else:
                self._dir = _private_dir([directory] if directory else _runtime_dirs())
                path = os.path.join(self._dir, "notify")
                self._sock.bind(path)
                self.address = path
            self._sock.setblocking(False)
        except OSError as exc:
            self.close()
            raise NotifyError(f"cannot create a notify receiver: {exc.strerror}", errno=exc.errno) from exc
        self._closed = False

    def __repr__(self) -> str:
        return f"<NotifyReceiver {self.address} allowed={self.allowed_pids}>"

    def fileno(self) -> int:
        """The socket's fd, for ``selectors``/``select``."""
        return self._sock.fileno()

    def allow(self, pid: int, *, children: bool = False) -> None:
        """Accept messages from ``pid`` too (restricts the receiver if it was open to all); with
        ``children``, from any child of ``pid`` as well (a relaying shell's: ``spawn(relay=True)``)."""
        if self.allowed_pids is None:
            self.allowed_pids = set()
        (self.allowed_parents if children else self.allowed_pids).add(pid)

    def receive_nowait(self) -> Message | None:
        """One accepted message if one is queued, else None. Drops and logs rejected ones."""
        while True:
            try:
                data, ancdata, flags, _ = self._sock.recvmsg(MAX_MESSAGE + 1, _ANC_SPACE, socket.MSG_CMSG_CLOEXEC)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as exc:
                raise NotifyError(f"receiving on {self.address} failed: {exc.strerror}", errno=exc.errno) from exc
            message = self._decode(data, ancdata, flags)
            if message is not None:
                return message

    def _decode(self, data: bytes, ancdata: list[tuple[int, int, bytes]], flags: int) -> Message | None:
        pid = uid = gid = None
        fds: list[int] = []
        for level, kind, payload in ancdata:
            if level != socket.SOL_SOCKET:
                continue
            if kind == socket.SCM_RIGHTS:
                arr = array.array("i")
                arr.frombytes(payload[: len(payload) - len(payload) % arr.itemsize])
                fds.extend(arr)
            elif kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
                pid, uid, gid = _UCRED.unpack(payload[: _UCRED.size])
        message = Message(data[:MAX_MESSAGE], pid, uid, gid, fds)
        reason = None
        if flags & socket.MSG_CTRUNC:
            reason = "control data truncated (too many fds)"
        elif flags & socket.MSG_TRUNC or len(data) > MAX_MESSAGE:
            reason = f"message longer than {MAX_MESSAGE} bytes"
        elif (
            self.allowed_pids is not None
            and pid not in self.allowed_pids
            and not (pid is not None and self.allowed_parents and parent_of(pid) in self.allowed_parents)
        ):
            children = f" or a child of {sorted(self.allowed_parents)}" if self.allowed_parents else ""
            reason = f"sender pid {pid} is not allowed (expected one of {sorted(self.allowed_pids)}{children})"
        if reason is not None:
            log.warning("notify receiver %s: dropped a message from pid %s: %s", self.address, pid, reason)
            message.close()
            return None
        if message.get("BARRIER") == "1" and not self.hold_barriers:
            message.close()  # a barrier is acknowledged by closing its fd (sd_notify_barrier(3))
        return message

    def receive(self, timeout: float | None = None) -> Message | None:
        """Wait up to ``timeout`` seconds (None: forever) for one accepted message; None on timeout."""
        import selectors
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(self._sock, selectors.EVENT_READ)
            while True:
                message = self.receive_nowait()
                if message is not None:
                    return message
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                sel.select(remaining)

    def __iter__(self) -> Iterator[Message]:
        """Blocking iteration over accepted messages, each closed after the loop body (take fds to keep them)."""
        while not self._closed:
            message = self.receive()
            if message is None:
                continue
            try:
                yield message
            finally:
                message.close()

    async def receive_async(self, loop: asyncio.AbstractEventLoop | None = None) -> Message:
        """Await one accepted message (asyncio, via add_reader)."""
        import asyncio

        loop = loop or asyncio.get_running_loop()
        while True:
            message = self.receive_nowait()
            if message is not None:
                return message
            await readable_async(loop, self.fileno())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` ran."""
        return getattr(self, "_closed", True)

    def close(self) -> None:
        """Close the socket and remove its private directory. Idempotent."""
        self._closed = True
        self._sock.close()
        if self._dir is not None:
            try:  # it holds the socket only
                for name in os.listdir(self._dir):
                    os.unlink(os.path.join(self._dir, name))
                os.rmdir(self._dir)
            except OSError:
                pass
            self._dir = None

    def __enter__(self) -> NotifyReceiver:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _runtime_dirs() -> list[str]:
    """Where a receiver's directory may go, best first: $XDG_RUNTIME_DIR or /run when writable (tmpfs,
    cleaned at boot), then $TMPDIR, $TEMP, $TMP, /tmp, /var/tmp and /usr/tmp (tempfile.gettempdir()'s
    list, without its last resort, the current directory)."""
    runtime = [d for d in (os.environ.get("XDG_RUNTIME_DIR"), "/run") if d and os.access(d, os.W_OK | os.X_OK)]
    temp = [os.environ.get(var) for var in ("TMPDIR", "TEMP", "TMP")]
    return [d for d in (*runtime, *temp, "/tmp", "/var/tmp", "/usr/tmp") if d]


def _private_dir(parents: list[str]) -> str:
    """A new 0700 directory with an unguessable name in the first of ``parents`` that takes one:
    tempfile.mkdtemp without importing tempfile (with shutil, random and the compressors: ~4 ms of
    CPU for a uvicorn app), which a serving process would do at its reload signal, in the reload window.

    Raises:
        OSError: no parent took a directory; the message names them, with the first error that is not
            a missing directory (EACCES, EROFS, ENOSPC: the one to fix).
    """
    errors: list[OSError] = []
    for parent in parents:
        for _ in range(100):  # a name taken: try another (48 random bits: never, in practice)
            path = os.path.abspath(os.path.join(parent, f"sockact-notify-{os.urandom(6).hex()}"))
            try:
                os.mkdir(path, 0o700)
                return path
            except FileExistsError:
                continue
            except OSError as exc:  # not writable, not there: the next parent
                errors.append(exc)
                break
    cause = next((e for e in errors if e.errno != errno.ENOENT), errors[0] if errors else None)
    code = cause.errno if cause is not None else errno.ENOENT
    reason = cause.strerror if cause is not None else "no directory to try"
    tried = ", ".join(parents) or "none"
    raise OSError(code, f"{reason} (tried {tried}; set XDG_RUNTIME_DIR or TMPDIR to a writable directory)")
