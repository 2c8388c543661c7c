"""The reload channel's serving side: ``sockact reload`` (``_ask``) asks for an upgrade and waits for its outcome.

``ExecReload=sockact reload --control PATH`` makes ``systemctl reload`` return only when the new code
serves — the successor sent READY=1, the manager was told, and the old process no longer holds the
listening sockets — and fail (exit 1, the reason on stderr and in StatusText) when the upgrade failed.
It names no pid, so it never signals a predecessor that just exited (``$MAINPID`` lags in PID-file
mode, systemd.service(5)).

The channel is a unix stream socket at PATH. Each serving process binds it (a fresh socket renamed
over PATH: atomic) once it serves, so PATH always leads to the serving generation; a predecessor
still draining answers ``retry``. One request per connection, one line each way (``_ask`` has the
client and the words).

Only root and the service's own uid may ask (SO_PEERCRED); the socket file is mode 0600.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Callable

from ._ask import CONTROL_VAR, MAX_LINE
from ._errors import SockactError
from ._poll import readable

__all__ = ["CONTROL_VAR", "Askers", "ControlServer", "Request", "holds_sockets"]

_UCRED = struct.Struct("iII")


class Request:
    """One ``reload`` asked for on the channel; :meth:`reply` answers it once and closes it."""

    def __init__(self, conn: socket.socket, pid: int) -> None:
        self.conn = conn
        self.pid = pid  #: the asking process (SO_PEERCRED)

    def reply(self, word: str, text: str = "") -> None:
        """Send one line and close. The asker may be gone: that is its business, not ours."""
        if self.conn.fileno() < 0:
            return
        try:
            self.conn.settimeout(1.0)
            self.conn.sendall(f"{word} {text}".strip().replace("\n", " ").encode()[:MAX_LINE] + b"\n")
        except OSError:
            pass
        finally:
            self.conn.close()


class ControlServer:
    """The serving side of the channel at ``path``. A context manager; ``close()`` is idempotent and
    removes the path only while it still leads to this socket (a successor may own it by then)."""

    def __init__(self, path: str) -> None:
        if not os.path.isabs(path):
            raise SockactError(f"reload channel {path!r} must be an absolute path (--control, ${CONTROL_VAR})")
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            self._sock.bind(tmp)
            os.chmod(tmp, 0o600)
            self._sock.listen(16)
            self._sock.setblocking(False)
            os.rename(tmp, path)  # atomic: PATH leads to the old owner or to us, never to nothing
            self._ino: int | None = os.stat(path).st_ino
        except OSError as exc:
            self._sock.close()
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise SockactError(
                f"cannot create the reload channel {path}: {exc.strerror}; check that its directory exists and "
                "is writable (RuntimeDirectory=)"
            ) from exc

    def fileno(self) -> int:
        return self._sock.fileno()

    def accept(self, timeout: float = 1.0) -> Request | None:
        """One pending request, or None (none pending, a stranger, or garbage: those are closed)."""
        try:
            conn, _ = self._sock.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return None  # EMFILE and friends: the asker retries
        pid, uid, _ = _UCRED.unpack(conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
        if uid not in (0, os.getuid()):
            conn.close()
            return None
        data = b""
        deadline = time.monotonic() + timeout
        conn.setblocking(False)
        while b"\n" not in data and len(data) < MAX_LINE:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not readable([conn.fileno()], remaining):
                break
            try:
                chunk = conn.recv(MAX_LINE)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
        if data.strip() != b"reload":
            request = Request(conn, pid)
            request.reply("failed", "the reload channel understands one request: reload")
            return None
        return Request(conn, pid)

    def close(self) -> None:
        if self._sock.fileno() >= 0:
            self._sock.close()
        if self._ino is not None:
            try:
                if os.stat(self.path).st_ino == self._ino:
                    os.unlink(self.path)
            except OSError:
                pass
            self._ino = None

    def __enter__(self) -> ControlServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Askers:
    """The requests a driver owes an answer: ``waiting`` for the upgrade under way, then
    ``confirming`` until the old generation (a pid; None: this process) lets go of the sockets."""

    def __init__(self) -> None:
        self.waiting: list[Request] = []
        self.confirming: list[tuple[Request, int | None, int]] = []

    def outcome(self, outcome: object) -> None:
        """The upgrade's outcome (``sockact._handoff`` types): failures are answered now."""
        from ._handoff import Failed, Upgraded

        waiting, self.waiting = self.waiting, []
        for request in waiting:
            if isinstance(outcome, Upgraded):
                self.confirming.append((request, outcome.replaced, outcome.pid))
            elif isinstance(outcome, Failed):
                request.reply("failed", f"upgrade failed, the old code keeps serving: {outcome.reason}")
            else:
                request.reply("failed", "the service is stopping")

    def confirm(self, holds: Callable[[int | None], bool], force: bool = False) -> None:
        """Answer ``ok`` to each asker whose old generation no longer ``holds`` a listening socket:
        every connection made after `systemctl reload` returns reaches the new code."""
        still = []
        for request, old, new in self.confirming:
            if force or not holds(old):
                request.reply("ok", str(new))
            else:
                still.append((request, old, new))
        self.confirming = still

    def close(self) -> None:
        """This generation is done: ok to those past the hand-over, failed to those before it."""
        self.confirm(lambda pid: False, force=True)
        for request in self.waiting:
            request.reply("failed", "the service stopped before the upgrade finished")
        self.waiting = []


def holds_sockets(pid: int | None, inodes: set[int]) -> bool:
    """Whether ``pid`` (None: this process) has an fd on a socket with one of ``inodes`` (/proc)."""
    directory = f"/proc/{'self' if pid is None else pid}/fd"
    try:
        entries = os.listdir(directory)
    except OSError:
        return False  # gone
    for entry in entries:
        try:
            link = os.readlink(f"{directory}/{entry}")
        except OSError:
            continue
        if link.startswith("socket:[") and int(link[8:-1]) in inodes:
            return True
    return False
