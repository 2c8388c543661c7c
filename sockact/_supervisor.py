"""``sockact run``: a process that holds the sockets and swaps the program behind them.

The supervisor stays the service's main process for good — systemd's MainPID never moves — and
starts each child through the one spawn path, exactly as systemd would start it (LISTEN_FDS,
LISTEN_PID, NOTIFY_SOCKET = the supervisor's receiver). The child may be written in any language; it
needs no sockact, only LISTEN_FDS and, ideally, sd_notify READY=1.

One select loop, one state (``current`` serving, ``pending`` starting, ``draining`` old ones), events:

* pending ready (READY=1, at once, or after N seconds) → it becomes current; the old one gets SIGTERM
  and, after the drain timeout, SIGKILL; READY=1 upstream.
* pending dies or times out → killed and reaped; during a reload the current child keeps serving.
* current dies unexpectedly → restarted after a capped exponential backoff; STATUS= explains.
* reload signal → RELOADING=1 upstream, a new pending child (coalesced while one is starting).
* stop signal → STOPPING=1, SIGTERM to every child, SIGKILL after the drain timeout; a second stop
  signal kills at once. The exit code is the last child's (0 if it exited cleanly or on our SIGTERM).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass

from ._errors import NotifyError, UpgradeError
from ._listeners import Listeners
from ._notify import notify
from ._poll import readable
from ._procenv import process_environ
from ._receiver import NotifyReceiver
from ._signals import SignalPipe
from ._spawn import Child, spawn
from ._upgrade import write_pidfile

__all__ = ["Supervisor", "parse_ready"]

log = logging.getLogger("sockact.supervisor")
BACKOFF_START, BACKOFF_CAP = 0.1, 30.0


def parse_ready(text: str) -> str | float:
    """``notify``, ``spawn`` or a number of seconds (``--ready``); raises ValueError otherwise."""
    if text in ("notify", "spawn"):
        return text
    seconds = float(text)
    if not 0 <= seconds < 3600:
        raise ValueError(f"--ready {text}: seconds must be between 0 and 3600")
    return seconds


@dataclass
class _Pending:
    child: Child
    deadline: float
    ready_at: float | None  # for --ready SECONDS / spawn


def _describe(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"


class Supervisor:
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
    ) -> None:
        self.listeners = listeners
        self.command = list(command)
        self.ready = ready
        self.ready_timeout = ready_timeout
        self.drain_timeout = drain_timeout
        self.reload_signal = reload_signal
        self.stop_signals = tuple(stop_signals)
        self.pidfile = pidfile
        self.environ: MutableMapping[str, str] = process_environ() if environ is None else environ
        self.upstream = {"NOTIFY_SOCKET": self.environ["NOTIFY_SOCKET"]} if self.environ.get("NOTIFY_SOCKET") else {}
        self.current: Child | None = None
        self.pending: _Pending | None = None
        self.draining: dict[Child, float] = {}
        self.restart_at: float | None = None
        self.backoff = BACKOFF_START
        self.stopping = False
        self.reload_again = False
        self.announced = False
        self.exit_code = 0
        self.generation = 0

    # -- upstream --------------------------------------------------------------------------------

    def _tell(self, **fields: object) -> None:
        try:
            notify(fields, environ=self.upstream)
        except NotifyError as exc:
            log.error("could not notify the service manager: %s", exc)

    # -- children --------------------------------------------------------------------------------

    def _start(self, receiver: NotifyReceiver) -> None:
        names = [self.listeners.fdnames[key] for key in self.listeners]
        fds = [sock.fileno() for sock in self.listeners.values()]
        env = dict(self.environ)
        env.pop("NOTIFY_SOCKET", None)
        try:
            child = spawn(self.command, fds, names, environ=env, notify_socket=receiver.address)
        except UpgradeError as exc:
            self._failed_start(str(exc))
            return
        receiver.allow(child.pid)
        self.generation += 1
        now = time.monotonic()
        ready_at = now if self.ready == "spawn" else (now + self.ready if isinstance(self.ready, float) else None)
        self.pending = _Pending(child, now + self.ready_timeout, ready_at)
        log.info("started child pid %d: %s", child.pid, " ".join(self.command))

    def _failed_start(self, reason: str) -> None:
        """A pending child could not become ready: keep the current one, or retry with backoff."""
        if self.current is not None:
            log.error("new child failed, old pid %d keeps serving: %s", self.current.pid, reason)
            self._tell(READY=1, STATUS=f"reload failed, pid {self.current.pid} still serving: {reason}"[:400])
        else:
            self._schedule_restart(reason)

    def _schedule_restart(self, reason: str) -> None:
        if self.stopping:
            return
        self.restart_at = time.monotonic() + self.backoff
        log.error("%s; restarting in %.1f s", reason, self.backoff)
        self._tell(STATUS=f"{reason}; restarting in {self.backoff:.1f} s"[:400])
        self.backoff = min(self.backoff * 2, BACKOFF_CAP)

    def _promote(self) -> None:
        assert self.pending is not None
        new = self.pending.child
        self.pending = None
        old = self.current
        self.current = new
        self.backoff = BACKOFF_START
        if old is not None:
            old.send_signal(signal.SIGTERM)
            self.draining[old] = time.monotonic() + self.drain_timeout
        status = f"serving: child pid {new.pid}" + (f" replaced pid {old.pid}" if old is not None else "")
        log.info("%s", status)
        self._tell(READY=1, STATUS=status)
        self.announced = True

    def _kill_pending(self, reason: str) -> None:
        assert self.pending is not None
        child = self.pending.child
        self.pending = None
        if child.poll() is None:
            child.terminate(5)
        child.close()
        self._failed_start(reason)

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until stopped; returns the process exit code."""
        with SignalPipe([self.reload_signal, *self.stop_signals]) as signals, NotifyReceiver() as receiver:
            if self.pidfile is not None:
                write_pidfile(self.pidfile, os.getpid())
            self._start(receiver)
            while not (self.stopping and self.current is None and self.pending is None and not self.draining):
                self._wait(signals, receiver)
                for sig in signals.read(0):
                    self._on_signal(sig, receiver)
                self._on_messages(receiver)
                self._on_children(receiver)
                self._on_timers(receiver)
        return self.exit_code

    def _children(self) -> list[Child]:
        kids = list(self.draining)
        if self.current is not None:
            kids.append(self.current)
        if self.pending is not None:
            kids.append(self.pending.child)
        return kids

    def _wait(self, signals: SignalPipe, receiver: NotifyReceiver) -> None:
        fds = [signals.fileno(), receiver.fileno()] + [c.pidfd for c in self._children() if c.pidfd is not None]
        deadlines = list(self.draining.values())
        if self.restart_at is not None:
            deadlines.append(self.restart_at)
        if self.pending is not None:
            deadlines.append(self.pending.deadline)
            if self.pending.ready_at is not None:
                deadlines.append(self.pending.ready_at)
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        if any(c.pidfd is None for c in self._children()):
            timeout = 0.05 if timeout is None else min(timeout, 0.05)  # no pidfd: poll
        readable(fds, timeout)

    def _on_signal(self, sig: int, receiver: NotifyReceiver) -> None:
        if sig in self.stop_signals:
            if self.stopping:
                log.warning("second stop signal: killing every child now")
                for child in self._children():
                    child.send_signal(signal.SIGKILL)
                return
            self.stopping = True
            self.restart_at = None
            self._tell(STOPPING=1, STATUS="stopping: draining children")
            deadline = time.monotonic() + self.drain_timeout
            for child in self._children():
                child.send_signal(signal.SIGTERM)
            if self.current is not None:
                self.draining[self.current] = deadline
                self.current = None
            if self.pending is not None:
                self.draining[self.pending.child] = deadline
                self.pending = None
        elif sig == self.reload_signal and not self.stopping:
            if self.pending is not None:
                self.reload_again = True  # coalesced: one more once this one settles
                return
            self._tell(
                RELOADING=1,
                MONOTONIC_USEC=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000,
                STATUS="reloading: starting a new child",
            )
            self._start(receiver)

    def _on_messages(self, receiver: NotifyReceiver) -> None:
        while (message := receiver.receive_nowait()) is not None:
            message.close()
            if self.pending is not None and message.pid == self.pending.child.pid:
                if message.get("READY") == "1" and self.ready == "notify":
                    self._promote()
                    self._reload_if_asked(receiver)
                elif "STATUS" in message:
                    log.info("child pid %d: %s", message.pid, message["STATUS"])
            elif self.current is not None and message.pid == self.current.pid:
                forwarded = {k: v for k, v in message.fields.items() if k in ("STATUS", "WATCHDOG", "ERRNO")}
                if message.get("WATCHDOG") not in (None, "1"):
                    forwarded.pop("WATCHDOG")  # WATCHDOG=trigger from a child is its own business
                if forwarded:
                    self._tell(**forwarded)

    def _reload_if_asked(self, receiver: NotifyReceiver) -> None:
        if self.reload_again and not self.stopping:
            self.reload_again = False
            self._on_signal(self.reload_signal, receiver)

    def _on_children(self, receiver: NotifyReceiver) -> None:
        for child, _ in list(self.draining.items()):
            code = child.poll()
            if code is not None:
                del self.draining[child]
                child.close()
                log.info("child pid %d exited with %s", child.pid, _describe(code))
                if self.stopping and self.current is None and self.pending is None and not self.draining:
                    self.exit_code = 0 if code in (0, -signal.SIGTERM) else (128 - code if code < 0 else code)
        if self.pending is not None:
            code = self.pending.child.poll()
            if code is not None:
                pid = self.pending.child.pid
                self._kill_pending(f"child pid {pid} exited with {_describe(code)} before it was ready")
                self._reload_if_asked(receiver)
        if self.current is not None:
            code = self.current.poll()
            if code is not None:
                dead, self.current = self.current, None
                dead.close()
                if self.pending is None:
                    self._schedule_restart(f"child pid {dead.pid} exited unexpectedly with {_describe(code)}")

    def _on_timers(self, receiver: NotifyReceiver) -> None:
        now = time.monotonic()
        for child, deadline in self.draining.items():
            if now >= deadline:
                child.send_signal(signal.SIGKILL)
        if self.pending is not None:
            if self.pending.ready_at is not None and now >= self.pending.ready_at:
                self._promote()
                self._reload_if_asked(receiver)
            elif now >= self.pending.deadline:
                self._kill_pending(f"child pid {self.pending.child.pid} was not ready within {self.ready_timeout} s")
                self._reload_if_asked(receiver)
        if self.restart_at is not None and now >= self.restart_at and self.pending is None and not self.stopping:
            self.restart_at = None
            self._start(receiver)
