"""The I/O half of the hand-over machine: one loop that feeds it events and carries out its effects.

``Driver`` owns the children it spawned, the notify receiver they speak to and the held barrier.
Its :meth:`Driver.step` waits (``poll``) on the signal pipe, the receiver and the children's pidfds
until the machine's next deadline, and turns what happened into events — the only place that
does. The in-process :class:`~sockact.Upgrader`, ``sockact run``'s ``Supervisor`` and the demo's
launcher are subclasses that differ only in how they spawn and how they tell the manager.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from . import _handoff as h
from ._control import Askers, ControlServer, holds_sockets
from ._errors import SockactError, SpawnError, UsageError
from ._poll import readable
from ._priority import NICE_MAX, START_NICE
from ._receiver import Message, NotifyReceiver
from ._signals import SignalPipe
from ._spawn import Child, children_of, parent_of
from ._upstream import Upstream

__all__ = ["Driver"]

log = logging.getLogger("sockact.handoff")

#: How long a successor that never served gets between SIGTERM and SIGKILL.
TERMINATE_GRACE = 5.0


class Driver:
    """Runs a :class:`~sockact._handoff.Handoff`. Subclasses implement :meth:`_spawn` and :meth:`_hand_over`.

    ``clock`` is a seam for tests (default ``time.monotonic``, the clock of MONOTONIC_USEC=).
    """

    def __init__(
        self,
        machine: h.Handoff,
        upstream: Upstream,
        *,
        stop_signals: tuple[int, ...],
        listeners: Mapping[str, socket.socket] | None = None,
        control_path: str | None = None,
        start_nice: int = START_NICE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(start_nice, bool) or not isinstance(start_nice, int) or not 0 <= start_nice <= NICE_MAX:
            raise UsageError(f"start_nice is a nice increment from 0 (none) to {NICE_MAX}, not {start_nice!r}")
        self.machine = machine
        self.start_nice = start_nice
        self.upstream = upstream
        self.stop_signals = stop_signals
        self.clock = clock
        self.children: dict[int, Child] = {}
        self.outcomes: list[h.Outcome] = []
        self.signals: SignalPipe | None = None
        self.receiver: NotifyReceiver | None = None
        self._message: Message | None = None  #: the message being fed (a Hold keeps it)
        self._held: Message | None = None
        #: The reload channel's path (``sockact reload``), the channel once bound, and its askers: those
        #: waiting for the upgrade under way, then for the old generation (pid None: us) to let go of
        #: the listening sockets.
        self.control_path = control_path
        self.control: ControlServer | None = None
        self.askers = Askers()
        #: The listening sockets, by inode: the old generation has stopped accepting once it holds none.
        self.listener_inodes = {os.fstat(sock.fileno()).st_ino for sock in (listeners or {}).values()}
        #: In-process: the app said it stopped accepting, though it still holds the sockets (see Upgrader).
        self.not_accepting = False

    @property
    def current_child(self) -> Child | None:
        """The child the machine says serves now (in-process: the successor after a hand-over)."""
        pid = self.machine.current
        return self.children.get(pid) if pid is not None else None

    # -- what subclasses provide ----------------------------------------------------------------------

    def _spawn(self) -> Child:
        """Start a successor on the receiver; raise SpawnError when it cannot start."""
        raise NotImplementedError

    def _hand_over(self, pid: int, status: str) -> None:
        """Tell the manager ``pid`` serves now; raise SockactError/OSError when that failed."""
        raise NotImplementedError

    def _successor_nice(self) -> int:
        """``spawn(nice=)`` for the successor :meth:`_spawn` starts now: :attr:`start_nice` while
        another generation serves, else 0."""
        return self.start_nice if self.machine.serves_meanwhile else 0

    def _hammer(self) -> None:
        """A second stop arrived while draining (in-process)."""

    def _reported(self, outcome: h.Outcome) -> None:
        """An outcome, as the machine reported it (``sockact run`` logs its start line on the first)."""

    # -- feeding the machine --------------------------------------------------------------------------

    def feed(self, event: h.Event) -> None:
        """Hand ``event`` to the machine and carry out every effect it returns (which may feed more)."""
        for effect in self.machine.handle(event, self.clock()):
            self._apply(effect)
        pending = self.machine.pending_pid
        if pending is not None and not self.machine.serves_meanwhile:  # the serving child died meanwhile
            self._give_priority_back(pending)

    def _apply(self, effect: h.Effect) -> None:  # one case per effect: a table, not a sequence
        match effect:
            case h.Spawn():
                try:
                    child = self._spawn()
                except SpawnError as exc:
                    self.feed(h.SpawnFailed(str(exc)))
                else:
                    self.children[child.pid] = child
                    self.feed(h.Spawned(child.pid))
            case h.Allow(pid):
                assert self.receiver is not None
                known = self.children.get(pid)
                self.receiver.allow(pid, children=known is not None and known.relay == pid)
            case h.Tell(fields):
                self.upstream.tell(fields)
            case h.HandOver(pid, status):
                self._give_priority_back(pid)
                try:
                    self._hand_over(pid, status)
                except (SockactError, OSError) as exc:
                    self.feed(h.HandOverFailed(str(exc)))
                else:
                    self.feed(h.HandedOver())
            case h.Hold():
                self._held, self._message = self._message, None
            case h.Release():
                if self._held is not None:
                    self._held.close()  # the successor's barrier returns: it talks to the manager now
                    self._held = None
            case h.SendSignal(pid, sig):
                if pid in self.children:
                    self.children[pid].send_signal(sig)
            case h.Terminate(pid):
                if pid in self.children:
                    doomed = self.children.pop(pid)
                    doomed.terminate(TERMINATE_GRACE)
                    doomed.close()
            case h.Hammer():
                self._hammer()
            case h.Log(level, text):
                log.log(level, "%s", text)
            case h.Report(outcome):
                self.outcomes.append(outcome)
                self._reported(outcome)
                self.askers.outcome(outcome)
                self._confirm()

    def _give_priority_back(self, pid: int) -> None:
        """The successor ``pid`` started nicer (``spawn(nice=)``) gets this process's value back, once:
        at the hand-over, or as soon as nothing else serves. A WARNING names what could not be changed."""
        child = self.children.get(pid)
        failures = child.restore_priority() if child is not None else []
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            log.warning(
                "successor pid %d keeps the nice value it started with: %s%s; it changed its user or lowered "
                "its RLIMIT_NICE since (start_nice=0 / --start-nice 0 starts successors at full priority)",
                pid,
                failures[0],
                more,
            )

    # -- the loop -------------------------------------------------------------------------------------

    def step(self, timeout: float | None) -> None:
        """Wait up to ``timeout`` seconds (None: until something happens, bounded by the machine's next
        deadline) and feed everything that happened: signals, messages, exits, deadlines."""
        deadline = self.machine.next_deadline()
        if deadline is not None:
            wait = max(0.0, deadline - self.clock())
            timeout = wait if timeout is None else min(timeout, wait)
        watched = [
            c.wait_fd for pid in self.machine.children() if (c := self.children.get(pid)) and c.wait_fd is not None
        ]
        if len(watched) < len(self.machine.children()):
            timeout = 0.05 if timeout is None else min(timeout, 0.05)  # no pidfd: poll for the exit
        for owner in (self.signals, self.receiver, self.control):
            if owner is not None:
                watched.append(owner.fileno())
        if self.askers.confirming or self._name_relayed():
            timeout = 0.002 if timeout is None else min(timeout, 0.002)  # poll /proc: listeners, a relay's child
        if timeout != 0:
            readable(watched, timeout)
        self._take_signals()
        self._take_messages()
        self._take_exits()
        self._take_requests()
        self._confirm()
        deadline = self.machine.next_deadline()
        if deadline is not None and self.clock() >= deadline:
            self.feed(h.Tick())

    def _take_signals(self) -> None:
        if self.signals is None:
            return
        for sig in self.signals.read(0):
            if sig == self.machine.policy.reload_signal:
                self.feed(h.Reload())
            elif sig in self.stop_signals:
                self.feed(h.Stop(sig))
            # 0 wakes the loop (close()); anything else is not ours

    def _take_messages(self) -> None:
        while self.receiver is not None and not self.receiver.closed:
            message = self.receiver.receive_nowait()
            if message is None:
                return
            self._take_signals()  # a signal sent before this message is handled before it
            self._message = message
            try:
                if message.pid is not None:
                    self._identify(message.pid)
                    self.feed(h.Notified(message.pid, message.fields))
            finally:
                if self._message is not None:  # not held
                    self._message.close()
                    self._message = None

    def _name_relayed(self) -> bool:
        """Name each relayed child whose relay has started it (/proc), so that its messages are taken
        from its own pid (even one sent just before it exits) and a failure names it. True while one
        is still unnamed and /proc can tell (the relay forks within milliseconds of its start)."""
        waiting = False
        for child in list(self.children.values()):
            if child.relay is not None and child.pid == child.relay:
                started = children_of(child.relay)
                if started:
                    self._identify(started[0])
                elif started is not None:
                    waiting = True
        return waiting

    def _identify(self, pid: int) -> None:
        """``pid`` is the child of a relay (/proc says, or its message came): if that relay's child is
        the successor the machine waits for and has no name yet, name it; from then on it is known
        (and kept) by its own pid, and the machine takes the same name (it is pending and busy)."""
        if pid in self.children:
            return
        relay = parent_of(pid)
        child = self.children.get(relay) if relay is not None else None
        if child is None or child.relay != relay or child.pid != relay or self.machine.pending_pid != relay:
            return
        if child.identify(pid):
            self.children[pid] = self.children.pop(relay)
            self.feed(h.Identified(relay, pid))

    def _take_exits(self) -> None:
        for pid in self.machine.children():
            child = self.children.get(pid)
            code = child.poll() if child is not None else None
            if child is not None and code is not None:
                del self.children[pid]
                child.close()
                self.feed(h.Exited(pid, code))

    # -- the reload channel ---------------------------------------------------------------------------

    def _take_requests(self) -> None:
        while self.control is not None and (request := self.control.accept()) is not None:
            state = self.machine.state
            if state in (h.State.SERVING, h.State.RESTARTING):
                self.askers.waiting.append(request)  # before feeding: the outcome may come at once
                self.feed(h.Reload())
            elif self.machine.busy:
                self.askers.waiting.append(request)  # joins the upgrade under way and gets its outcome
            elif state is h.State.DRAINING:
                request.reply("retry")  # the successor serves (and owns the channel's path) now
            else:
                request.reply("failed", "the service is stopping")

    def _confirm(self) -> None:
        self.askers.confirm(
            lambda pid: not (pid is None and self.not_accepting) and holds_sockets(pid, self.listener_inodes)
        )

    def close_control(self) -> None:
        """Answer every asker (ok if the hand-over happened: this generation is done serving) and
        close the channel. Idempotent."""
        self.askers.close()
        if self.control is not None:
            self.control.close()
            self.control = None

    def run_until(self, done: Callable[[], bool], timeout: float | None = None) -> bool:
        """:meth:`step` until ``done()`` (True) or ``timeout`` seconds passed (False)."""
        end = None if timeout is None else self.clock() + timeout
        while not done():
            remaining = None if end is None else end - self.clock()
            if remaining is not None and remaining <= 0:
                return False
            self.step(remaining)
        return True

    def close_receiver(self) -> None:
        """Close the notify receiver (a BARRIER fd still queued in it is closed, and so released). Idempotent."""
        if self.receiver is not None:
            self.receiver.close()
            self.receiver = None

    def close_children(self) -> None:
        """Terminate a successor still starting, release held barriers and every pidfd. Idempotent;
        a child that served is left running (a successor must outlive its predecessor)."""
        pending = self.machine.pending_pid
        if self.machine.busy and pending is not None:
            self._apply(h.Terminate(pending))
        self._apply(h.Release())
        for child in self.children.values():
            child.close()
