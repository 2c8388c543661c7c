"""The in-place upgrader: start a successor exactly as systemd would, wait for its READY=1, hand over.

States (one transition table, ``_TRANSITIONS``)::

    idle ──upgrade()──▶ spawning ──READY=1──▶ handed_over
      ▲                    │
      └──child died / timed out (old process keeps serving)

The successor is launched through the one spawn path (``_spawn.spawn``) with NOTIFY_SOCKET pointing
at a fresh, pid-restricted :class:`NotifyReceiver`; the real manager's socket travels in
``SOCKACT_UPSTREAM_NOTIFY_SOCKET``. On READY=1 the upgrader tells the manager who is main now —
``MAINPID=<child>`` + READY=1, or, with ``pidfile=``, the PID file (atomically written, never
following a symlink) and READY=1 without MAINPID — then BARRIER=1 so the manager has processed that
before the successor (whose ``sockact.ready()`` waits on a barrier of its own) speaks to it directly.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable, MutableMapping, Sequence

from ._env import UPSTREAM_NOTIFY_VAR
from ._errors import NotifyError, UpgradeError
from ._listeners import Listeners
from ._notify import barrier, notify, reloading
from ._receiver import NotifyReceiver
from ._spawn import Child, default_command, spawn

__all__ = ["Upgrader", "write_pidfile"]

log = logging.getLogger("sockact.upgrade")

_TRANSITIONS = {
    ("idle", "spawn"): "spawning",
    ("spawning", "ready"): "handed_over",
    ("spawning", "failed"): "idle",
}


def write_pidfile(path: str, pid: int) -> None:
    """Write ``pid`` to ``path`` atomically: a new file beside it, then rename over it.

    The temporary file is created with O_EXCL|O_NOFOLLOW, and rename() replaces a symlink at ``path``
    rather than writing through it, so a link planted there cannot redirect the write.
    """
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, f"{pid}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UpgradeError(f"cannot write PID file {path}: {exc.strerror}; check PIDFile= and its directory") from exc


class Upgrader:
    """Launches successors for a :class:`Listeners` and hands the service over to them.

    ``command`` defaults to this process's own command line; ``environ`` (default ``os.environ``)
    is where NOTIFY_SOCKET is read from and what the successor's environment is built from.
    Only one upgrade runs at a time: ``upgrade()`` during another raises UpgradeError.
    """

    def __init__(
        self,
        listeners: Listeners,
        *,
        command: Sequence[str] | None = None,
        ready_timeout: float = 60.0,
        pidfile: str | None = None,
        environ: MutableMapping[str, str] | None = None,
        before_spawn: Callable[[], None] | None = None,
    ) -> None:
        self.listeners = listeners
        self.command = list(command) if command is not None else default_command()
        self.ready_timeout = ready_timeout
        self.pidfile = pidfile
        self.environ: MutableMapping[str, str] = os.environ if environ is None else environ
        self.before_spawn = before_spawn
        self.state = "idle"
        self.successor: Child | None = None

    def _move(self, event: str) -> None:
        key = (self.state, event)
        if key not in _TRANSITIONS:
            raise UpgradeError(f"cannot {event} while {self.state}: one upgrade at a time")
        self.state = _TRANSITIONS[key]

    def _upstream(self) -> dict[str, str]:
        target = self.environ.get("NOTIFY_SOCKET")
        return {"NOTIFY_SOCKET": target} if target else {}

    def upgrade(self) -> Child:
        """Start a successor and hand over once it sends READY=1; return it.

        Raises:
            UpgradeError: it could not start, exited, or was not ready within ``ready_timeout``
                (it is then terminated; this process keeps serving and the manager gets READY=1
                with STATUS= naming the reason).
        """
        self._move("spawn")
        upstream = self._upstream()
        child: Child | None = None
        try:
            reloading("upgrading: starting successor", environ=upstream)
            if self.before_spawn is not None:
                self.before_spawn()
            with NotifyReceiver() as receiver:
                names = [self.listeners.fdnames[key] for key in self.listeners]
                fds = [sock.fileno() for sock in self.listeners.values()]
                child = spawn(
                    self.command,
                    fds,
                    names,
                    environ=self.environ,
                    notify_socket=receiver.address,
                    upstream_notify_socket=upstream.get("NOTIFY_SOCKET"),
                )
                receiver.allow(child.pid)
                self._await_ready(receiver, child)
                self._hand_over(child, upstream)
                receiver.receive(timeout=0)  # its BARRIER, if already queued: closing its fd releases it
        except BaseException as exc:
            self._move("failed")
            if child is not None:
                if child.poll() is None:
                    child.terminate(5)
                child.close()
            reason = str(exc) if isinstance(exc, UpgradeError) else f"{type(exc).__name__}: {exc}"
            log.error("upgrade failed, still serving: %s", reason)
            try:  # READY=1 is owed after RELOADING=1; a failure here must not hide the upgrade's own error
                notify({"READY": 1, "STATUS": f"upgrade failed, still serving: {reason}"[:400]}, environ=upstream)
            except NotifyError as notify_exc:
                log.error("could not tell the manager either: %s", notify_exc)
            raise
        self._move("ready")
        self.successor = child
        return child

    def _await_ready(self, receiver: NotifyReceiver, child: Child) -> None:
        deadline = time.monotonic() + self.ready_timeout
        watched = [receiver.fileno()] + ([child.pidfd] if child.pidfd is not None else [])
        while True:
            message = receiver.receive_nowait()
            if message is not None:
                message.close()
                if message.get("READY") == "1":
                    return
                continue
            code = child.poll()
            if code is not None:
                raise UpgradeError(f"successor pid {child.pid} exited with {_describe(code)} before READY=1")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                child.terminate(5)
                raise UpgradeError(f"successor pid {child.pid} sent no READY=1 within {self.ready_timeout} s")
            select.select(watched, [], [], min(remaining, 0.5))

    def _hand_over(self, child: Child, upstream: MutableMapping[str, str]) -> None:
        status = f"serving: pid {child.pid} took over from pid {os.getpid()}"
        if self.pidfile is not None:
            write_pidfile(self.pidfile, child.pid)
            notify({"READY": 1, "STATUS": status}, environ=upstream)
        else:
            notify({"MAINPID": child.pid, "READY": 1, "STATUS": status}, environ=upstream)
        if upstream:
            barrier(5.0, environ=upstream)


def _describe(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"


def successor_handshake(environ: MutableMapping[str, str] | None = None, timeout: float = 10.0) -> bool:
    """For a successor that just sent READY=1 to its predecessor: wait until the hand-over is done,
    then talk to the real manager directly (NOTIFY_SOCKET := SOCKACT_UPSTREAM_NOTIFY_SOCKET).

    Returns True when it switched. Called by :func:`sockact.ready`.
    """
    env: MutableMapping[str, str] = os.environ if environ is None else environ
    upstream = env.get(UPSTREAM_NOTIFY_VAR)
    if upstream is None:
        return False
    try:
        barrier(timeout, environ=env)
    except NotifyError as exc:  # the predecessor closed its receiver first: the hand-over is over either way
        log.info("hand-over barrier on %s: %s; talking to the manager directly now", env.get("NOTIFY_SOCKET"), exc)
    env["NOTIFY_SOCKET"] = upstream
    del env[UPSTREAM_NOTIFY_VAR]
    return True
