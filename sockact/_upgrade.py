"""The in-process upgrader: start a successor exactly as systemd would, wait for its READY=1, hand over.

A thin driver of the one hand-over machine (``sockact._handoff.Handoff``, drawn in docs/PROTOCOL.md). As
a context manager it also owns the signals: handlers only record (``SignalPipe``) and
:meth:`Upgrader.wait` acts — the reload signal (or a ``sockact reload`` on the reload channel) starts an
upgrade, a stop signal sends STOPPING=1. Once ``wait`` returns, a thread runs the same loop while the
caller drains: a reload signal that reaches this process after the hand-over is forwarded to the
successor, and a second stop signal sets :attr:`Upgrader.hammer` (drain no longer waits).

The successor is launched through the one spawn path (``_spawn.spawn``) with NOTIFY_SOCKET pointing
at a fresh, pid-restricted :class:`NotifyReceiver`; the real manager's socket travels in
``SOCKACT_UPSTREAM_NOTIFY_SOCKET``. After its READY=1 the machine waits (up to ``BARRIER_WAIT``)
for the BARRIER=1 that ``sockact.ready()`` sends next and holds it; then the upgrader tells the
manager who is main now — ``MAINPID=<child>`` + READY=1, or, with ``pidfile=``, the PID file
(atomically written, never following a symlink) and READY=1 without MAINPID — then BARRIER=1 so the
manager has processed that before the successor (released from its barrier) speaks to it directly.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import threading
from collections.abc import Callable, MutableMapping, Sequence
from types import TracebackType

from . import _handoff as h
from ._control import CONTROL_VAR, ControlServer
from ._drive import Driver
from ._env import UPSTREAM_NOTIFY_VAR
from ._errors import SpawnError, StateError, SuccessorError, UpgradeError, UsageError
from ._listeners import Listeners
from ._pidfile import PIDFILE_VAR, PidFile, write_pidfile
from ._procenv import process_environ
from ._receiver import NotifyReceiver
from ._signals import SignalPipe
from ._spawn import Child, default_command, spawn
from ._upstream import Upstream

__all__ = ["PIDFILE_VAR", "Upgrader", "write_pidfile"]

#: After a successor's READY=1, how long to wait for the BARRIER=1 that sockact.ready() sends next.
BARRIER_WAIT = 1.0

log = logging.getLogger("sockact.upgrade")

_ERRORS: dict[h.Cause, type[UpgradeError]] = {
    h.Cause.SPAWN: SpawnError,
    h.Cause.EXITED: SuccessorError,
    h.Cause.NOT_READY: SuccessorError,
    h.Cause.STOP: UpgradeError,
    h.Cause.HANDOVER: UpgradeError,
}


class Upgrader(Driver):
    """Launches successors for a :class:`Listeners` and hands the service over to them.

    ``command`` defaults to this process's own command line; ``environ`` (default ``os.environ``)
    is where NOTIFY_SOCKET is read from and what the successor's environment is built from.
    Only one upgrade runs at a time: ``upgrade()`` during another raises StateError; reload
    signals that arrive during an upgrade are coalesced into one, handled after it (forwarded to
    the successor if it took over, another attempt if it failed).

    ``pidfile`` (default: ``$SOCKACT_PIDFILE``, which units from ``sockact units`` set next to
    ``PIDFile=``): hand over by PID file (this process's pid is written on ``__enter__`` of a cold start, the
    successor's as this process exits, in :meth:`close`) instead of MAINPID=; pair it with ``PIDFile=``
    and ``KillMode=mixed`` in the unit. systemd then adopts the successor when this process exits — by
    then its child — and supervises it fully. Until then systemd signals this process, so stop signals
    are forwarded to the successor too, and :meth:`close` waits (up to ``drain_timeout``) for the
    successor to finish before this main process exits, lest systemd kill it mid-drain
    (docs/PROTOCOL.md).

    ``control`` (default ``$SOCKACT_CONTROL``): the reload channel this process serves once it
    serves (:meth:`wait`), for ``ExecReload=sockact reload`` (docs/PROTOCOL.md §10).

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
        control: str | None = None,
    ) -> None:
        for what, value in (("ready_timeout", ready_timeout), ("drain_timeout", drain_timeout)):
            if not 0 <= value < float("inf"):
                raise UsageError(f"Upgrader {what} must be a finite number of seconds >= 0, not {value!r}")
        self.listeners = listeners
        self.command = list(command) if command is not None else default_command()
        self.ready_timeout = ready_timeout
        self.environ: MutableMapping[str, str] = process_environ() if environ is None else environ
        self.pidfile = pidfile if pidfile is not None else (self.environ.get(PIDFILE_VAR) or None)
        self.reload_signal = reload_signal
        self.before_spawn = before_spawn
        self.after_handover = after_handover
        self.before_shutdown = before_shutdown
        self.drain_timeout = drain_timeout
        policy = h.Policy(
            ready_timeout=ready_timeout,
            confirm=BARRIER_WAIT,
            reload_signal=reload_signal,
            forward_stop=self.pidfile is not None,
            pid=os.getpid(),
        )
        super().__init__(
            h.Handoff(policy),
            Upstream(self.environ),
            stop_signals=tuple(stop_signals),
            listeners=listeners,
            control_path=control if control is not None else (self.environ.get(CONTROL_VAR) or None),
        )
        self.askers.then_exit = self.pidfile is not None
        #: Set by a second stop signal: draining should end now.
        self.hammer = threading.Event()
        self._serving_signals: threading.Thread | None = None
        self._closing = False

    @property
    def state(self) -> str:
        """The hand-over machine's state: ``serving``, ``starting``, …, ``draining``, ``stopping``."""
        return self.machine.state.value

    @property
    def successor(self) -> Child | None:
        """The process that took over, once one did."""
        return self.current_child

    # -- ownership ------------------------------------------------------------------------------------

    def __enter__(self) -> Upgrader:
        self.signals = SignalPipe([self.reload_signal, *self.stop_signals])
        if self.pidfile is not None and UPSTREAM_NOTIFY_VAR not in self.environ:
            PidFile(self.pidfile).claim()  # a cold start; a successor is named by its predecessor
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving signals and restore their handlers (after a PID-file hand-over the reload
        signal stays ignored until this process exits). Idempotent; never signals a successor
        that took over. If a stop was forwarded to the successor (PID-file mode), first wait for it
        to exit; a successor still starting is terminated."""
        self._closing = True
        if self._serving_signals is not None:
            assert self.signals is not None
            self.signals.raise_(0)  # wakes the loop now (0 is no signal)
            self._serving_signals.join()
            self._serving_signals = None
            self.step(0)  # a signal that came as the thread ended
        successor = self.successor
        if self.machine.successor_stopping and successor is not None:
            if successor.wait(self.drain_timeout) is None:
                log.warning("successor pid %d still draining after %s s", successor.pid, self.drain_timeout)
            self.machine.successor_stopping = False
        handed_to = None
        if self.pidfile is not None and successor is not None and successor.poll() is None:
            PidFile(self.pidfile).hand_to(successor.pid)
            handed_to = successor.pid
        self.close_control()
        self.close_children()
        self.close_receiver()
        if self.signals is not None:
            # PID-file mode: systemd's MainPID (and $MAINPID in ExecReload=, and a script reading the
            # file a moment ago) names this process until it exits (systemd.service(5), PIDFile=). A
            # reload signal in that window must not kill it by the default action: it stays ignored.
            self.signals.close(ignore=[self.reload_signal] if handed_to is not None else [])
            self.signals = None

    def reload(self) -> None:
        """Ask for an upgrade as the reload signal would (handled by :meth:`wait`)."""
        if self.signals is None:
            raise StateError("use the Upgrader as a context manager (with Upgrader(...) as u:) to handle signals")
        self.signals.raise_(self.reload_signal)

    # -- the loop -------------------------------------------------------------------------------------

    def wait(self, timeout: float | None = None) -> str | None:
        """Run the signal loop until there is something to drain for.

        Returns ``"upgraded"`` once a successor took over, ``"stop"`` after a stop signal (STOPPING=1
        sent), or None when ``timeout`` passed (or :meth:`close` ran). Failed upgrades are logged and
        reported upstream; the loop goes on serving.
        """
        if self.signals is None:
            raise StateError("use the Upgrader as a context manager (with Upgrader(...) as u:) to handle signals")
        if self.control is None and self.control_path is not None and self.machine.state is h.State.SERVING:
            self.control = ControlServer(self.control_path)  # we serve: the channel's path leads here now
        stopped = (h.State.DRAINING, h.State.STOPPING)
        self.run_until(lambda: self.machine.state in stopped or self._closing, timeout)
        if self.machine.state not in stopped:
            return None
        return self._finish()

    async def wait_async(self) -> str:
        """:meth:`wait` for asyncio: the loop runs in an executor thread, the event loop keeps serving.

        Returns ``"upgraded"`` or ``"stop"`` (also when :meth:`close` ended the wait).
        """
        import asyncio

        outcome = await asyncio.get_running_loop().run_in_executor(None, self.wait)
        return outcome or "stop"

    def _finish(self) -> str:
        if self.machine.state is h.State.DRAINING:
            outcome = "upgraded"
            if self.after_handover is not None and self.successor is not None:
                self.after_handover(self.successor)
        else:
            outcome = "stop"
            if self.before_shutdown is not None:
                self.before_shutdown()
        self._serving_signals = threading.Thread(
            target=self.run_until, args=(lambda: self._closing,), name="sockact-signals", daemon=True
        )
        self._serving_signals.start()
        return outcome

    def _hammer(self) -> None:
        self.hammer.set()

    # -- the upgrade ----------------------------------------------------------------------------------

    def upgrade(self) -> Child:
        """Start a successor and hand over once it sends READY=1; return it.

        Raises:
            StateError: another upgrade is running, or one already took over.
            SpawnError: the successor could not be started.
            SuccessorError: it exited, or was not ready within ``ready_timeout`` (it is then
                terminated; this process keeps serving and the manager gets READY=1 with STATUS=
                naming the reason).
            UpgradeError: a stop was asked for meanwhile, or the manager could not be told.
        """
        if self.machine.state is not h.State.SERVING:
            raise StateError(f"cannot upgrade while {self.state}: one upgrade at a time")
        seen = len(self.outcomes)
        self.feed(h.Reload())
        self.run_until(lambda: any(not isinstance(o, h.Stopped) for o in self.outcomes[seen:]))
        outcome = next(o for o in self.outcomes[seen:] if not isinstance(o, h.Stopped))
        if isinstance(outcome, h.Upgraded):
            return self.children[outcome.pid]
        assert isinstance(outcome, h.Failed)
        raise _ERRORS[outcome.cause](f"upgrade failed, still serving: {outcome.reason}")

    def _spawn(self) -> Child:
        if self.before_spawn is not None:
            try:
                self.before_spawn()
            except Exception as exc:
                raise SpawnError(f"before_spawn hook raised {type(exc).__name__}: {exc}") from exc
        self.close_receiver()
        try:
            self.receiver = NotifyReceiver(hold_barriers=True)
        except OSError as exc:  # EMFILE and friends (NotifyError is one too)
            hint = " (raise LimitNOFILE= / ulimit -n)" if exc.errno in (errno.EMFILE, errno.ENFILE) else ""
            raise SpawnError(f"cannot create the successor's notify socket: {exc.strerror or exc}{hint}") from exc
        fds, names = self.listeners.passed_on()
        return spawn(
            self.command,
            fds,
            names,
            environ=self.environ,
            notify_socket=self.receiver.address,
            upstream_notify_socket=self.upstream.address,  # "": no manager above us
        )

    def _hand_over(self, pid: int, status: str) -> None:
        if self.pidfile is not None:  # READY=1 without MAINPID; the file names the successor as we exit
            PidFile(self.pidfile).check()
        self.upstream.hand_over(pid, f"{status} from pid {os.getpid()}", mainpid=self.pidfile is None)

    def feed(self, event: h.Event) -> None:
        super().feed(event)
        if not self.machine.busy and self.receiver is not None and self._held is None:
            self.close_receiver()  # one receiver per upgrade: a late BARRIER's fd is closed with it
