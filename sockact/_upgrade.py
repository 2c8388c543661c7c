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
manager who is main now — ``MAINPID=<child>`` + READY=1 — then BARRIER=1 so the manager has
processed that before the successor (released from its barrier) speaks to it directly.

With ``pidfile=`` the successor becomes systemd's own child first, so that systemd supervises it
fully from the hand-over on (systemd.service(5): it follows only its children; a MAINPID= naming
another's child gets "not our child"). It runs under a relaying shell (``spawn(relay=True)``); at
the hand-over the upgrader writes its pid to the PID file (atomically, never through a symlink),
ends the shell, so the kernel re-parents the successor to systemd, and only then sends MAINPID=.
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

from . import _handoff as h
from ._control import CONTROL_VAR, ControlServer
from ._drive import Driver
from ._env import UPSTREAM_NOTIFY_VAR
from ._errors import SpawnError, StateError, SuccessorError, UpgradeError, UsageError
from ._listeners import Listeners
from ._pidfile import PIDFILE_VAR, PidFile, read_pidfile, write_pidfile
from ._poll import readable
from ._priority import START_NICE
from ._procenv import process_environ
from ._receiver import NotifyReceiver
from ._signals import SignalPipe
from ._spawn import Child, default_command, parent_of, spawn
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
    ``PIDFile=``): the hand-over that keeps systemd supervising the successor. A cold start writes its
    own pid there on ``__enter__``; at a hand-over the successor's pid is written and the successor
    is made systemd's own child before MAINPID= names it (the module docstring). Pair it with
    ``PIDFile=`` and ``KillMode=mixed``: on stop systemd then signals the successor alone and kills
    what is left once it exits, so a successor waits in :meth:`close` (up to ``drain_timeout``) for
    a predecessor still draining (docs/PROTOCOL.md §5).

    ``control`` (default ``$SOCKACT_CONTROL``): the reload channel this process serves once it
    serves (:meth:`wait`), for ``ExecReload=sockact reload`` (docs/PROTOCOL.md §10).

    ``start_nice``: a successor starts this much nicer (setpriority(2)) and gets this process's
    priority back at the hand-over, so that its start-up takes CPU the serving threads leave; 0 starts
    it at full priority. Only when the value can be given back (CAP_SYS_NICE, or ``LimitNICE=+0``,
    which ``sockact units`` writes); see ``_priority``. Raises UsageError (a ValueError) for a
    ``start_nice`` outside 0–19 and for a negative timeout.

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
        start_nice: int = START_NICE,
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
            pid=os.getpid(),
        )
        super().__init__(
            h.Handoff(policy),
            Upstream(self.environ),
            stop_signals=tuple(stop_signals),
            listeners=listeners,
            control_path=control if control is not None else (self.environ.get(CONTROL_VAR) or None),
            start_nice=start_nice,
        )
        #: PID-file mode, in a successor: a pidfd on the predecessor, which may still drain, and the relay
        #: that started us (our parent until the hand-over ends it; see close()).
        self._predecessor: int | None = None
        self._predecessor_pid = self._relay = 0
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
        elif self.pidfile is not None:
            self._relay = os.getppid()
            self._predecessor_pid, self._predecessor = _predecessor_pidfd(self.pidfile)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop serving signals and restore their handlers (after a hand-over the reload signal stays
        ignored until this process exits: a stale ``kill -HUP $MAINPID`` may still reach it).
        Idempotent; never signals a successor that took over. A successor in PID-file mode that took
        over first waits (up to ``drain_timeout``) for its predecessor, if that still drains: with
        KillMode=mixed, systemd kills what is left of the unit once its main process exits."""
        self._closing = True
        if self._serving_signals is not None:
            assert self.signals is not None
            self.signals.raise_(0)  # wakes the loop now (0 is no signal)
            self._serving_signals.join()
            self._serving_signals = None
            self.step(0)  # a signal that came as the thread ended
        if self._predecessor is not None:
            # Only once the hand-over to us happened — our relay ended, and the PID file no longer naming
            # the predecessor (it is put back when MAINPID= fails): a successor whose hand-over failed
            # must exit at once, its predecessor serving on.
            took_over = self.pidfile is not None and read_pidfile(self.pidfile) != self._predecessor_pid
            if os.getppid() != self._relay and took_over:
                self._wait_for_predecessor(self._predecessor)
            os.close(self._predecessor)
            self._predecessor = None
        handed_over = self.successor is not None
        self.close_control()
        self.close_children()
        self.close_receiver()
        if self.signals is not None:
            self.signals.close(ignore=[self.reload_signal] if handed_over else [])
            self.signals = None

    def _wait_for_predecessor(self, pidfd: int) -> None:
        """Up to ``drain_timeout`` for the predecessor to exit; a stop signal now (a second one, the
        hammer) ends the wait."""
        deadline = time.monotonic() + self.drain_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            ready = readable([pidfd] + ([self.signals.fileno()] if self.signals is not None else []), remaining)
            if pidfd in ready:
                return
            if self.signals is not None and any(sig in self.stop_signals for sig in self.signals.read(0)):
                log.warning("stop signal: not waiting for the predecessor to finish draining")
                return
        log.warning("predecessor still draining after %s s; exiting anyway", self.drain_timeout)

    def stopped_accepting(self) -> None:
        """Say that this process no longer accepts on the listeners though it still holds them (an
        asyncio server whose own shutdown closes them later): ``sockact reload`` is answered now
        rather than when the sockets are closed. Thread-safe."""
        self.not_accepting = True
        if self.signals is not None:
            self.signals.raise_(0)  # wakes the loop (0 is no signal)

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
            relay=self.pidfile is not None,
            nice=self._successor_nice(),
        )

    def _hand_over(self, pid: int, status: str) -> None:
        child = self.children[pid]
        if self.pidfile is not None:
            PidFile(self.pidfile).name(pid)  # first: if it cannot be written, the successor is still ours
            try:
                if not child.orphan():  # systemd's child from here on (the relay is gone)
                    raise UpgradeError(f"successor pid {pid} exited during the hand-over")
                self.upstream.hand_over(pid, f"{status} from pid {os.getpid()}", mainpid=True)
            except BaseException:
                PidFile(self.pidfile).name(os.getpid())  # we serve on: the file must not name a process gone
                raise
        else:
            self.upstream.hand_over(pid, f"{status} from pid {os.getpid()}", mainpid=True)
        try:  # MAINPID= was delivered: from here on nothing may fail the hand-over
            self._forward_pending_stop(child)
        except OSError as exc:
            log.error("could not pass on a stop signal to pid %d: %s", pid, exc)

    def _forward_pending_stop(self, child: Child) -> None:
        """A stop signal that reached this process during the hand-over was sent while systemd still
        had it as main: pass it on to the successor, main now, which systemd will not signal again
        (KillMode=mixed). Other signals stay pending for the loop."""
        if self.signals is None:
            return
        for sig in self.signals.read(0):
            if sig in self.stop_signals:
                child.send_signal(sig)
                log.info(
                    "forwarded %s, which came during the hand-over, to pid %d", signal.Signals(sig).name, child.pid
                )
            else:
                self.signals.raise_(sig)

    def feed(self, event: h.Event) -> None:
        super().feed(event)
        if not self.machine.busy and self.receiver is not None and self._held is None:
            self.close_receiver()  # one receiver per upgrade: a late BARRIER's fd is closed with it


def _predecessor_pidfd(pidfile: str) -> tuple[int, int | None]:
    """In a successor of a PID-file hand-over, before READY=1: the predecessor, which the PID file still
    names and which started us through a relaying shell (our parent's parent), and a pidfd on it.
    ``(0, None)`` when that chain does not hold (a predecessor of an older sockact, or one gone)."""
    named = read_pidfile(pidfile) or 0
    relay = os.getppid()
    if named <= 1 or parent_of(relay) != named:
        return 0, None
    try:
        pidfd = os.pidfd_open(named)
    except OSError:
        return 0, None
    if parent_of(relay) != named or os.getppid() != relay:  # it exited meanwhile: the pid may be reused
        os.close(pidfd)
        return 0, None
    return named, pidfd
