"""The in-place upgrader: start a successor exactly as systemd would, wait for its READY=1, hand over.

States (one transition table, ``_TRANSITIONS``)::

    idle ──upgrade()──▶ spawning ──READY=1──▶ handed_over
      ▲                    │
      └──child died / timed out / stop signal (old process keeps serving)

As a context manager it also owns the signals: handlers only record (``SignalPipe``) and
:meth:`Upgrader.wait` acts — the reload signal runs :meth:`upgrade`, a stop signal sends STOPPING=1.
Once ``wait`` returns, a thread keeps listening while the caller drains: a reload signal that
reaches this process after the hand-over is forwarded to the successor, and a second stop signal
sets :attr:`Upgrader.hammer` (drain no longer waits).

The successor is launched through the one spawn path (``_spawn.spawn``) with NOTIFY_SOCKET pointing
at a fresh, pid-restricted :class:`NotifyReceiver`; the real manager's socket travels in
``SOCKACT_UPSTREAM_NOTIFY_SOCKET``. On READY=1 the upgrader tells the manager who is main now —
``MAINPID=<child>`` + READY=1, or, with ``pidfile=``, the PID file (atomically written, never
following a symlink) and READY=1 without MAINPID — then BARRIER=1 so the manager has processed that
before the successor (whose ``sockact.ready()`` waits on a barrier of its own) speaks to it directly.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, MutableMapping, Sequence
from types import TracebackType

from ._env import UPSTREAM_NOTIFY_VAR
from ._errors import NotifyError, UpgradeError
from ._listeners import Listeners
from ._notify import barrier, notify, reloading, stopping
from ._poll import readable
from ._procenv import process_environ
from ._receiver import Message, NotifyReceiver, _readable
from ._signals import SignalPipe
from ._spawn import Child, default_command, spawn

__all__ = ["PIDFILE_VAR", "Upgrader", "write_pidfile"]

#: Where an app started by a sockact-generated unit learns its PID file (the unit's PIDFile=).
PIDFILE_VAR = "SOCKACT_PIDFILE"

#: After a successor's READY=1, how long to wait for the BARRIER=1 that sockact.ready() sends next.
BARRIER_WAIT = 1.0

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


class _StopRequested(UpgradeError):
    """A stop signal arrived while a successor was starting."""


class Upgrader:
    """Launches successors for a :class:`Listeners` and hands the service over to them.

    ``command`` defaults to this process's own command line; ``environ`` (default ``os.environ``)
    is where NOTIFY_SOCKET is read from and what the successor's environment is built from.
    Only one upgrade runs at a time: ``upgrade()`` during another raises UpgradeError; reload
    signals that arrive during an upgrade are coalesced into one, handled after it (forwarded to
    the successor if it took over, another attempt if it failed).

    ``pidfile`` (default: ``$SOCKACT_PIDFILE``, which units from ``sockact units`` set next to
    ``PIDFile=``): hand over by PID file (this process's pid is written on ``__enter__``, the
    successor's before READY=1) instead of MAINPID=; pair it with ``PIDFile=`` and ``KillMode=mixed``
    in the unit. systemd then adopts the successor when this process exits — by then its child — and
    supervises it fully. Until then systemd signals this process, so stop signals are forwarded to
    the successor too, and :meth:`close` waits (up to ``drain_timeout``) for the successor to finish
    before this main process exits, lest systemd kill it mid-drain (docs/PROTOCOL.md).

    Hooks: ``before_spawn()``, ``after_handover(child)``, ``before_shutdown()``.
    """

    def __init__(
        self,
        listeners: Listeners,
        *,
        command: Sequence[str] | None = None,
        ready_timeout: float = 60.0,
        pidfile: str | None = None,
        environ: MutableMapping[str, str] | None = None,
        reload_signal: int = signal.SIGHUP,
        stop_signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
        before_spawn: Callable[[], None] | None = None,
        after_handover: Callable[[Child], None] | None = None,
        before_shutdown: Callable[[], None] | None = None,
        drain_timeout: float = 30.0,
    ) -> None:
        self.listeners = listeners
        self.command = list(command) if command is not None else default_command()
        self.ready_timeout = ready_timeout
        self.environ: MutableMapping[str, str] = process_environ() if environ is None else environ
        self.pidfile = pidfile if pidfile is not None else (self.environ.get(PIDFILE_VAR) or None)
        self.reload_signal = reload_signal
        self.stop_signals = tuple(stop_signals)
        self.before_spawn = before_spawn
        self.after_handover = after_handover
        self.before_shutdown = before_shutdown
        self.drain_timeout = drain_timeout
        self._successor_stopping = False
        self.state = "idle"
        self.successor: Child | None = None
        #: Set by a second stop signal: draining should end now.
        self.hammer = threading.Event()
        self._signals: SignalPipe | None = None
        self._reload_pending = False
        self._stop_requested = False
        self._forwarder: threading.Thread | None = None
        self._closing = threading.Event()

    # -- signals and the loop -------------------------------------------------------------------

    def __enter__(self) -> Upgrader:
        self._signals = SignalPipe([self.reload_signal, *self.stop_signals])
        if self.pidfile is not None:
            write_pidfile(self.pidfile, os.getpid())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop forwarding signals and restore their handlers. Idempotent; never signals the successor.

        If a stop was forwarded to the successor (PID-file mode), first wait for it to exit.
        """
        if self._successor_stopping and self.successor is not None:
            if self.successor.wait(self.drain_timeout) is None:
                log.warning("successor pid %d still draining after %s s", self.successor.pid, self.drain_timeout)
            self._successor_stopping = False
        self._closing.set()
        if self._forwarder is not None:
            if self._signals is not None:
                self._signals.raise_(0)  # wakes the forwarder now, not at its next poll (0 is no signal)
            self._forwarder.join()
            self._forwarder = None
        if self._signals is not None:
            self._signals.close()
            self._signals = None
        if self.successor is not None:
            self.successor.close()

    def reload(self) -> None:
        """Ask for an upgrade as the reload signal would (handled by :meth:`wait`)."""
        self._pipe().raise_(self.reload_signal)

    def _pipe(self) -> SignalPipe:
        if self._signals is None:
            raise UpgradeError("use the Upgrader as a context manager (with Upgrader(...) as u:) to handle signals")
        return self._signals

    def _take_signals(self, timeout: float | None) -> None:
        for sig in self._pipe().read(timeout):
            if sig == self.reload_signal:
                self._reload_pending = True
            elif sig in self.stop_signals:
                if self._stop_requested:
                    self.hammer.set()
                self._stop_requested = True

    def wait(self, timeout: float | None = None) -> str | None:
        """Run the signal loop until there is something to drain for.

        Returns ``"upgraded"`` once a successor took over, ``"stop"`` after a stop signal (STOPPING=1
        sent), or None when ``timeout`` passed. Failed upgrades are logged and reported upstream;
        the loop goes on serving.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            outcome = self._step()
            if outcome is not None:
                return outcome
            if self._reload_pending or self._stop_requested:
                continue  # arrived during a failed upgrade: act on it now
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return None
            self._take_signals(remaining)

    async def wait_async(self) -> str:
        """:meth:`wait` for asyncio: the upgrade runs in an executor thread, the loop keeps serving."""
        import asyncio

        loop = asyncio.get_running_loop()
        while True:
            if self._reload_pending and not self._stop_requested:
                self._reload_pending = False
                try:
                    await loop.run_in_executor(None, self.upgrade)
                except UpgradeError:
                    continue
                return self._finish("upgraded")
            outcome = self._step(upgrade=False)
            if outcome is not None:
                return outcome
            await _readable(loop, self._pipe().fileno())
            self._take_signals(0)

    def _step(self, upgrade: bool = True) -> str | None:
        if self._stop_requested:
            return self._finish("stop")
        if upgrade and self._reload_pending:
            self._reload_pending = False
            try:
                self.upgrade()
            except UpgradeError:
                return None
            return self._finish("upgraded")
        return None

    def _finish(self, outcome: str) -> str:
        if outcome == "upgraded":
            assert self.successor is not None
            if self.after_handover is not None:
                self.after_handover(self.successor)
        else:
            try:
                stopping(environ=self._upstream())
            except NotifyError as exc:
                log.error("could not send STOPPING=1: %s", exc)
            if self.before_shutdown is not None:
                self.before_shutdown()
        self._forwarder = threading.Thread(target=self._forward, name="sockact-forwarder", daemon=True)
        self._forwarder.start()
        return outcome

    def _forward(self) -> None:
        """While draining: forward reloads (and, in PID-file mode, stops) to the successor; 2nd stop → hammer."""
        handed_over = self.successor is not None
        if handed_over and self._reload_pending:
            self._send_successor(self.reload_signal)  # coalesced during the upgrade
        while not self._closing.is_set():
            signals = self._pipe().read(0.2) if self._signals is not None else []
            if self.reload_signal in signals and handed_over:
                self._send_successor(self.reload_signal)
            for sig in dict.fromkeys(s for s in signals if s in self.stop_signals):
                if handed_over and self.pidfile is not None:
                    self._successor_stopping = True
                    self._send_successor(sig)  # systemd still thinks we are main
                elif handed_over:
                    log.info("stop signal after hand-over: the manager signals the successor itself")
                else:
                    self.hammer.set()

    def _send_successor(self, sig: int) -> None:
        assert self.successor is not None
        if self.successor.send_signal(sig):
            log.info("forwarded %s to successor pid %d", signal.Signals(sig).name, self.successor.pid)

    # -- the upgrade ----------------------------------------------------------------------------

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
            with NotifyReceiver(hold_barriers=True) as receiver:
                names = [self.listeners.fdnames[key] for key in self.listeners]
                fds = [sock.fileno() for sock in self.listeners.values()]
                child = spawn(
                    self.command,
                    fds,
                    names,
                    environ=self.environ,
                    notify_socket=receiver.address,
                    upstream_notify_socket=upstream.get("NOTIFY_SOCKET", ""),  # "": no manager above us
                )
                receiver.allow(child.pid)
                held = self._await_ready(receiver, child)
                try:
                    self._hand_over(child, upstream)
                finally:
                    if held is not None:
                        held.close()  # releases the successor's barrier: it now talks to the manager
                late = receiver.receive(timeout=0)  # a BARRIER that came late: closing its fd releases it
                if late is not None:
                    late.close()
        except BaseException as exc:
            self._move("failed")
            if child is not None:
                if child.poll() is None:
                    child.terminate(5)
                child.close()
            reason = str(exc) if isinstance(exc, UpgradeError) else f"{type(exc).__name__}: {exc}"
            log.error("upgrade failed, still serving: %s", reason)
            # READY=1 is owed after RELOADING=1 (else the unit stays "reloading"); a failure here must
            # not hide the upgrade's own error.
            _notify_soon({"READY": 1, "STATUS": f"upgrade failed, still serving: {reason}"[:400]}, upstream)
            if isinstance(exc, OSError):  # EMFILE, ENOMEM, a vanished PID file directory…
                raise UpgradeError(f"upgrade failed, still serving: {reason}") from exc
            raise
        self._move("ready")
        self.successor = child
        return child

    def _await_ready(self, receiver: NotifyReceiver, child: Child) -> Message | None:
        """Wait for the successor's READY=1, then (up to BARRIER_WAIT s) for the BARRIER=1 that
        ``sockact.ready()`` sends right after it. That message is returned unclosed — holding its fd
        keeps the successor waiting until the hand-over is done — and it proves the successor
        survived its READY=1: one that sends READY=1 and dies at once fails the upgrade here,
        before the manager is told anything. None: READY=1 came without a barrier (not sockact)."""
        deadline = time.monotonic() + self.ready_timeout
        watched = [receiver.fileno()] + ([child.pidfd] if child.pidfd is not None else [])
        if self._signals is not None:
            watched.append(self._signals.fileno())
        ready_at: float | None = None
        while True:
            if self._signals is not None:
                self._take_signals(0)
                if self._stop_requested:
                    raise _StopRequested(f"stop requested while successor pid {child.pid} was starting")
            message = receiver.receive_nowait()
            if message is not None:
                if ready_at is not None and message.get("BARRIER") == "1":
                    return message
                message.close()
                if message.get("READY") == "1" and ready_at is None:
                    ready_at = time.monotonic()
                continue
            code = child.poll()
            if code is not None:
                when = "right after READY=1" if ready_at is not None else "before READY=1"
                raise UpgradeError(
                    f"successor pid {child.pid} exited with {_describe(code)} {when}; its own output says why"
                )
            now = time.monotonic()
            if ready_at is not None and now - ready_at >= BARRIER_WAIT:
                return None
            remaining = deadline - now if ready_at is None else ready_at + BARRIER_WAIT - now
            if remaining <= 0:
                child.terminate(5)
                raise UpgradeError(
                    f"successor pid {child.pid} sent no READY=1 within {self.ready_timeout} s and was stopped; "
                    "it must call sockact.ready() once it serves (or raise ready_timeout)"
                )
            readable(watched, min(remaining, 0.5))

    def _hand_over(self, child: Child, upstream: MutableMapping[str, str]) -> None:
        status = f"serving: pid {child.pid} took over from pid {os.getpid()}"
        if self.pidfile is not None:
            write_pidfile(self.pidfile, child.pid)
            notify({"READY": 1, "STATUS": status}, environ=upstream)
        else:
            notify({"MAINPID": child.pid, "READY": 1, "STATUS": status}, environ=upstream)
        if upstream:
            try:
                barrier(5.0, environ=upstream)
            except NotifyError as exc:
                # The hand-over datagram was delivered; only its acknowledgement is late. Undoing the
                # hand-over now would kill a successor that is serving and may already be MainPID.
                log.warning("hand-over sent, but the manager did not confirm it: %s", exc)


#: errnos that a moment may cure (the fd table or kernel buffers are full)
_TRANSIENT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM, errno.EAGAIN}


def _notify_soon(fields: dict[str, object], upstream: MutableMapping[str, str], attempts: int = 20) -> None:
    """notify(), retried for up to ~2 s while the failure is transient (EMFILE…); logged if it never
    gets through — the caller is already on a failure path and must keep serving."""
    for attempt in range(attempts):
        try:
            notify(fields, environ=upstream)
            return
        except NotifyError as exc:
            if exc.errno in _TRANSIENT and attempt + 1 < attempts:
                time.sleep(0.1)
                continue
            log.error("could not tell the manager either: %s", exc)
            return


def _describe(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"status {code}"


def successor_handshake(environ: MutableMapping[str, str] | None = None, timeout: float = 10.0) -> bool:
    """For a successor that just sent READY=1 to its predecessor: wait until the hand-over is done,
    then talk to the real manager directly (NOTIFY_SOCKET := SOCKACT_UPSTREAM_NOTIFY_SOCKET; an empty
    value means there is no manager, and NOTIFY_SOCKET is removed).

    Returns True when it switched. Called by :func:`sockact.ready`.
    """
    env: MutableMapping[str, str] = process_environ() if environ is None else environ
    upstream = env.get(UPSTREAM_NOTIFY_VAR)
    if upstream is None:
        return False
    try:
        barrier(timeout, environ=env)
    except NotifyError as exc:  # the predecessor closed its receiver first: the hand-over is over either way
        log.info("hand-over barrier on %s: %s; talking to the manager directly now", env.get("NOTIFY_SOCKET"), exc)
    if upstream:
        env["NOTIFY_SOCKET"] = upstream
    else:
        env.pop("NOTIFY_SOCKET", None)
    del env[UPSTREAM_NOTIFY_VAR]
    return True
