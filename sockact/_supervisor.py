"""``sockact run``: a process that holds the sockets and swaps the program behind them.

The supervisor stays the service's main process for good — systemd's MainPID never moves — and
starts each child through the one spawn path, exactly as systemd would start it (LISTEN_FDS,
LISTEN_PID, NOTIFY_SOCKET = the supervisor's receiver). The child may be written in any language; it
needs no sockact, only LISTEN_FDS and, ideally, sd_notify READY=1.

A thin driver of the one hand-over machine (``sockact._handoff``) in supervisor mode:

* a new child ready (READY=1, at once with ``--ready spawn``, or after N seconds) → it serves; the
  old one gets SIGTERM and, after the drain timeout, SIGKILL; READY=1 upstream.
* a new child that dies or times out before it is ready → killed and reaped; the current child
  keeps serving. (With ``--ready spawn`` it is ready the moment it starts: a crash after that is
  the serving child's, below.)
* the current child dies → restarted after a back-off that grows while children die young
  (< ``quick`` s), whether or not they said READY=1; after ``give_up_after`` such failures in a
  row the supervisor exits 1, so systemd's ``Restart=``/``StartLimitBurst=`` take over.
* reload signal → RELOADING=1 upstream, a new child (coalesced while one is starting), started
  ``start_nice`` nicer while the old one serves and given the supervisor's priority back once it is
  ready or nothing else serves (``_priority``).
* stop signal → STOPPING=1, SIGTERM to every child, SIGKILL after the drain timeout; a second stop
  signal kills at once. The exit code is the last child's (0 if it exited cleanly or on our SIGTERM).
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
from collections.abc import MutableMapping, Sequence

from . import __version__
from . import _handoff as h
from ._control import CONTROL_VAR, ControlServer
from ._drive import Driver
from ._errors import UsageError
from ._listeners import Listeners
from ._pidfile import PIDFILE_VAR, write_pidfile
from ._priority import START_NICE
from ._procenv import process_environ
from ._receiver import NotifyReceiver
from ._signals import SignalPipe
from ._spawn import Child, spawn
from ._startline import describe_sockets, start_line
from ._upstream import Upstream

__all__ = ["Supervisor", "parse_ready"]

log = logging.getLogger("sockact.supervisor")

#: Without READY=1 this soon, the supervisor warns that the child may not speak sd_notify.
WARN_AFTER = 5.0


def parse_ready(text: str) -> str | float:
    """``notify``, ``spawn`` or a number of seconds (``--ready``; 0 is ``spawn``); raises UsageError otherwise."""
    if text in ("notify", "spawn"):
        return text
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not 0 <= seconds < 3600:
        raise UsageError(f"--ready {text}: use notify, spawn or a number of seconds from 0 to 3600")
    return "spawn" if seconds == 0 else seconds


class Supervisor(Driver):
    """Runs ``command`` on ``listeners`` and replaces it on the reload signal. See the module doc."""

    def __init__(
        self,
        listeners: Listeners,
        command: Sequence[str],
        *,
        ready: str | float = "notify",
        ready_timeout: float = 60.0,
        drain_timeout: float = 30.0,
        reload_signal: int = signal.SIGHUP,
        stop_signals: Sequence[int] = (signal.SIGTERM, signal.SIGINT),
        pidfile: str | None = None,
        environ: MutableMapping[str, str] | None = None,
        give_up_after: int = 5,
        quick: float = 10.0,
        control: str | None = None,
        start_nice: int = START_NICE,
    ) -> None:
        self.listeners = listeners
        self.command = list(command)
        self.reload_signal = reload_signal
        self.pidfile = pidfile
        self.environ: MutableMapping[str, str] = process_environ() if environ is None else environ
        hint = "if it does not send sd_notify READY=1, use --ready spawn or --ready SECONDS"
        policy = h.Policy(
            ready_timeout=ready_timeout,
            ready=ready,
            drain_timeout=drain_timeout,
            reload_signal=reload_signal,
            not_ready_hint=hint,
            warn_after=min(WARN_AFTER, ready_timeout / 2),
            give_up_after=give_up_after,
            quick=quick,
        )
        self.handoff = h.SupervisorHandoff(policy)
        self._announced = False
        super().__init__(
            self.handoff,
            Upstream(self.environ),
            stop_signals=tuple(stop_signals),
            listeners=listeners,
            control_path=control if control is not None else (self.environ.get(CONTROL_VAR) or None),
            start_nice=start_nice,
        )

    @property
    def current(self) -> Child | None:
        """The child that serves now."""
        return self.current_child

    def run(self) -> int:
        """Supervise until stopped; returns the process exit code (1 after giving up)."""
        with SignalPipe([self.reload_signal, *self.stop_signals]) as self.signals, NotifyReceiver() as self.receiver:
            try:
                if self.pidfile is not None:
                    write_pidfile(self.pidfile, os.getpid())
                if self.control_path is not None:
                    self.control = ControlServer(self.control_path)
                log.debug(
                    "holding %s; starting %s", describe_sockets(self.listeners.origins()), shlex.join(self.command)
                )
                self.feed(h.Start())
                self.run_until(lambda: self.machine.state is h.State.DONE)
            finally:
                self.close_control()
                self.close_children()
        return self.handoff.exit_code

    def _spawn(self) -> Child:
        assert self.receiver is not None
        fds, names = self.listeners.passed_on()
        env = dict(self.environ)
        for own in ("NOTIFY_SOCKET", CONTROL_VAR, PIDFILE_VAR):  # ours, not the child's
            env.pop(own, None)
        child = spawn(
            self.command, fds, names, environ=env, notify_socket=self.receiver.address, nice=self._successor_nice()
        )
        return child

    def _reported(self, outcome: h.Outcome) -> None:
        """The first child is ready: the start line (later ones get the machine's "upgraded"/"restarted")."""
        if isinstance(outcome, h.Upgraded) and outcome.replaced is None and not self._announced:
            self._announced = True
            line = start_line(
                __version__, os.getpid(), self.listeners.origins(), child=outcome.pid, ready_in=outcome.seconds
            )
            log.info("%s", line)

    def _hand_over(self, pid: int, status: str) -> None:
        self.upstream.hand_over(pid, status, mainpid=False, confirm=False)  # the supervisor stays main
