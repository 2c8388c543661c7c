"""The one hand-over machine: a successor is starting — who serves once it is ready, or if it is not.

Pure: no I/O, no clock reads, no threads. A driver (``Upgrader`` in-process, ``sockact run``'s
``Supervisor``, the demo's launcher) feeds it :data:`Event` values with the current
``time.monotonic()`` and carries out the :data:`Effect` values it returns, in order. Drivers differ
only in how they carry out ``Spawn`` and ``HandOver``. docs/PROTOCOL.md draws the diagram::

    SERVING ──Reload──▶ STARTING ──READY=1──▶ CONFIRMING ──BARRIER=1──▶ HANDING_OVER ──HandedOver──▶ DRAINING
       ▲  ▲                │  (in-process waits       │ (or its wait passes)     │          (in-process)
       │  │                │   for the barrier that    │                          │
       │  └── failed ──────┴── exit / deadline / ──────┴── exit ◀──HandOverFailed─┘──▶ SERVING (supervisor:
       │                       spawn failed                                             new child is current)
    RESTARTING ◀── (supervisor) a failure with no child serving: back off, then STARTING again
    STARTING ──Spawned──▶ HANDING_OVER  (supervisor with ready="spawn": ready the moment it exists)
    any ──Stop──▶ STOPPING ──(supervisor: last child gone)──▶ DONE

A reload asked for while STARTING…HANDING_OVER is coalesced into one more, served after the
outcome (in-process after a hand-over: forwarded to the successor). Every outcome is reported once,
as a typed :data:`Outcome`.
"""

from __future__ import annotations

import enum
import logging
import signal
from collections.abc import Mapping

from ._record import Record

__all__ = [
    "State",
    "Cause",
    "Policy",
    "Handoff",
    "SupervisorHandoff",
    "Upgraded",
    "Failed",
    "Stopped",
    "GaveUp",
    "Outcome",
    "Event",
    "Effect",
    "describe_exit",
]


class State(enum.Enum):
    SERVING = "serving"  #: the current generation serves; nothing is starting
    STARTING = "starting"  #: a successor is spawned (or being spawned); waiting for READY=1
    CONFIRMING = "confirming"  #: READY=1 came; waiting briefly for the BARRIER=1 that sockact.ready() sends
    HANDING_OVER = "handing_over"  #: the manager above is being told who serves now
    RESTARTING = "restarting"  #: supervisor: nothing serves; the next child starts after a back-off
    DRAINING = "draining"  #: in-process: handed over; this process finishes its requests, then exits
    STOPPING = "stopping"  #: a stop was asked for: drain, then exit
    DONE = "done"  #: supervisor: stopped and every child gone


class Cause(enum.Enum):
    """Why an upgrade failed; each maps to an exception class in the drivers."""

    SPAWN = "spawn"  #: the successor could not be started
    EXITED = "exited"  #: it exited (or crashed) before taking over
    NOT_READY = "not_ready"  #: no READY=1 within the ready timeout
    STOP = "stop"  #: a stop was asked for while it was starting
    HANDOVER = "handover"  #: the manager could not be told (PID file, notify socket)


class Upgraded(Record):
    pid: int
    replaced: int | None = None  #: supervisor: the child it replaced (in-process: this process itself)
    seconds: float = 0.0  #: from the reload (or the start) to the hand-over


class Failed(Record):
    cause: Cause
    reason: str  #: one line for logs and STATUS=, e.g. "successor pid 7 exited with status 1 before READY=1"


class Stopped(Record):
    """A stop was asked for (STOPPING=1 is sent); drain, then exit."""


class GaveUp(Record):
    """Supervisor: children kept failing quickly; exit non-zero so the manager's restart policy acts."""

    reason: str


Outcome = Upgraded | Failed | Stopped | GaveUp


# -- events: what happened (the driver saw it) --------------------------------------------------------


class Start(Record):
    """Supervisor: start the first child (nothing serves yet)."""


class Reload(Record):
    """A reload was asked for (the reload signal, ``Upgrader.upgrade()``)."""


class Stop(Record):
    """A stop was asked for (SIGTERM/SIGINT)."""

    signal: int = signal.SIGTERM


class Spawned(Record):
    pid: int


class Identified(Record):
    """The successor spawned as ``relay`` (a shell that waits for it: PID-file mode) is ``pid``: /proc
    or its first message told. Its exit still comes as the relay's, reported under ``pid`` from here on."""

    relay: int
    pid: int


class SpawnFailed(Record):
    reason: str


class Notified(Record):
    """An sd_notify message from ``pid`` (the receiver checked the sender's credentials)."""

    pid: int
    fields: Mapping[str, str]


class Exited(Record):
    pid: int
    code: int  #: exit status, or the negative signal number


class Tick(Record):
    """Time passed: check the deadlines (the driver waits until :meth:`Handoff.next_deadline`)."""


class HandedOver(Record):
    """The manager above was told (and, in-process, acknowledged with a barrier)."""


class HandOverFailed(Record):
    reason: str


Event = (
    Start | Reload | Stop | Spawned | Identified | SpawnFailed | Notified | Exited | Tick | HandedOver | HandOverFailed
)


# -- effects: what the driver must do now, in order ---------------------------------------------------


class Spawn(Record):
    """Start a successor through the one spawn path; answer with Spawned or SpawnFailed."""


class Allow(Record):
    """Accept notify messages from ``pid`` on the receiver."""

    pid: int


class Tell(Record):
    """Send ``fields`` to the manager above (retried while the failure is transient, logged if lost)."""

    fields: Mapping[str, object]


class HandOver(Record):
    """Tell the manager ``pid`` serves now (in-process: MAINPID=, READY=1, barrier, after the PID file
    in PID-file mode; supervisor: READY=1);
    answer with HandedOver or HandOverFailed."""

    pid: int
    status: str


class Hold(Record):
    """Keep the fd of ``pid``'s BARRIER=1 open: the successor waits until :class:`Release`."""

    pid: int


class Release(Record):
    """Close a held barrier fd: the successor now talks to the manager itself."""


class SendSignal(Record):
    pid: int
    signal: int


class Terminate(Record):
    """SIGTERM, SIGKILL after a grace period, reap: ``pid`` never served and is forgotten."""

    pid: int


class Hammer(Record):
    """A second stop: the drain must end now."""


class Log(Record):
    level: int
    text: str


class Report(Record):
    outcome: Outcome


Effect = Spawn | Allow | Tell | HandOver | Hold | Release | SendSignal | Terminate | Hammer | Log | Report


class Policy(Record):
    """How a driver wants its successors handled. Times are seconds."""

    ready_timeout: float = 60.0
    #: After READY=1, how long to wait for the BARRIER=1 that sockact.ready() sends next (0: don't).
    confirm: float = 0.0
    #: "notify" (READY=1), "spawn" (at once) or seconds after the spawn (supervisor's --ready)
    ready: str | float = "notify"
    drain_timeout: float = 30.0  #: supervisor: an old child is SIGKILLed this long after its SIGTERM
    reload_signal: int = signal.SIGHUP
    not_ready_hint: str = "it must call sockact.ready() once it serves (or raise ready_timeout)"
    warn_after: float | None = None  #: supervisor: log a warning when no READY=1 came this soon
    backoff_start: float = 0.1
    backoff_cap: float = 30.0
    quick: float = 10.0  #: a child that lived less than this and failed is a quick failure…
    give_up_after: int = 0  #: …and this many in a row make the supervisor give up (0: never)
    pid: int | None = None  #: in-process: this process's pid, named in the "upgraded" log line


def _signame(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def describe_exit(code: int) -> str:
    """``status 1`` or ``signal SIGKILL`` for an exit code (negative: killed by that signal)."""
    if code >= 0:
        return f"status {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class Restarts:
    """Supervisor restart policy: back off by how long the child lived, give up after quick failures.

    A child that lived at least ``policy.quick`` seconds resets the back-off, whether or not it ever
    said READY=1 (a crash loop right after READY=1 backs off too).
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.quick_failures = 0
        self.backoff = policy.backoff_start

    def failed(self, lived: float) -> float | None:
        """The delay before the next start, or None: give up."""
        if lived >= self.policy.quick:
            self.quick_failures, self.backoff = 0, self.policy.backoff_start
        self.quick_failures += 1
        if self.policy.give_up_after and self.quick_failures >= self.policy.give_up_after:
            return None
        delay, self.backoff = self.backoff, min(self.backoff * 2, self.policy.backoff_cap)
        return delay


class _Pending:
    """The successor being started: its pid (None until Spawned) and its deadlines."""

    def __init__(
        self, pid: int | None, deadline: float, ready_at: float | None, warn_at: float | None, *, began: float
    ) -> None:
        self.pid = pid
        self.deadline = deadline  #: no READY=1 by then: not ready
        self.ready_at = ready_at  #: --ready SECONDS: ready by then without READY=1
        self.warn_at = warn_at
        self.confirm_until: float | None = None  #: set by READY=1 while waiting for its barrier
        self.began = began  #: when the reload (or start) asked for it


class Handoff:
    """The machine, as the in-process upgrader runs it: this process serves; after a hand-over it
    drains and exits. :class:`SupervisorHandoff` is the same machine where children serve.

    ``state`` and the pids are read-only for drivers; change them through :meth:`handle`.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.state = State.SERVING
        #: who serves besides us: the successor after a hand-over (supervisor: the child)
        self.current: int | None = None
        self.pending: _Pending | None = None
        self.reload_again = False
        self._started: dict[int, float] = {}  #: pid → when it was spawned

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.name} current={self.current} pending={self.pending_pid}>"

    # -- queries --------------------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """A successor is being started or handed over to."""
        return self.state in (State.STARTING, State.CONFIRMING, State.HANDING_OVER)

    @property
    def serves_meanwhile(self) -> bool:
        """Whether another generation serves while the successor being spawned starts (in-process:
        this process, always; not with ``ready="spawn"``, which hands over at once). The driver then
        starts it at a lower CPU priority, given back at the hand-over (``_priority``)."""
        return self.policy.ready != "spawn"

    @property
    def pending_pid(self) -> int | None:
        return self.pending.pid if self.pending is not None else None

    def children(self) -> list[int]:
        """Every pid the driver must watch for exit."""
        return [self.pending_pid] if self.pending_pid is not None else []

    def next_deadline(self) -> float | None:
        """When the driver must feed :class:`Tick` at the latest (None: no deadline)."""
        p = self.pending
        if p is None or not self.busy:
            return None
        return min((t for t in (p.deadline, p.ready_at, p.warn_at, p.confirm_until) if t is not None), default=None)

    # -- the transitions: one dispatch, one method per event ------------------------------------------

    def handle(self, event: Event, now: float) -> list[Effect]:
        """Apply ``event`` at time ``now``; return what the driver must do, in order."""
        out: list[Effect] = []
        match event:
            case Start() if self.state is State.SERVING and self.current is None:
                self._start(out, now)
            case Reload():
                self._on_reload(out, now)
            case Stop(sig):
                self._on_stop(out, now, sig)
            case Spawned(pid):
                self._on_spawned(out, now, pid)
            case Identified(relay, pid) if self.busy and self.pending is not None and self.pending.pid == relay:
                self.pending.pid = pid
                self._started[pid] = self._started.pop(relay, now)
                out.append(Allow(pid))
            case SpawnFailed(reason) if self.state is State.STARTING:
                self._fail(out, now, Cause.SPAWN, reason)
            case Notified(pid, fields):
                self._on_message(out, now, pid, fields)
            case Exited(pid, code):
                self._on_exit(out, now, pid, code)
            case Tick():
                self._on_tick(out, now)
            case HandedOver() if self.state is State.HANDING_OVER:
                self._handed_over(out, now)
            case HandOverFailed(reason) if self.state is State.HANDING_OVER:
                assert self.pending is not None and self.pending.pid is not None
                out += [Release(), Terminate(self.pending.pid)]
                self._fail(out, now, Cause.HANDOVER, reason)
        return out

    def _start(self, out: list[Effect], now: float) -> None:
        p = self.policy
        warn_at = now + p.warn_after if p.warn_after is not None and p.ready == "notify" else None
        self.pending = _Pending(None, now + p.ready_timeout, None, warn_at, began=now)
        self.state = State.STARTING
        out.append(Spawn())

    def _on_reload(self, out: list[Effect], now: float) -> None:
        if self.state is State.SERVING:
            status = "reloading: starting successor"
            out.append(Tell({"RELOADING": 1, "MONOTONIC_USEC": int(now * 1_000_000), "STATUS": status}))
            self._start(out, now)
        elif self.busy:
            self.reload_again = True
            out.append(Log(logging.INFO, "reload asked for while a successor is starting: one more follows it"))
        elif self.state is State.DRAINING and self.current is not None:
            out.append(SendSignal(self.current, self.policy.reload_signal))
            name = signal.Signals(self.policy.reload_signal).name
            out.append(Log(logging.INFO, f"forwarded {name} to successor pid {self.current}"))

    def _on_stop(self, out: list[Effect], now: float, sig: int) -> None:
        if self.state is State.STOPPING:
            out.append(Hammer())
        elif self.state is State.DRAINING:
            out.append(Log(logging.INFO, "stop signal after hand-over: the manager signals the successor itself"))
        elif self.state is not State.DONE:
            self._stopping(out, now, sig)

    def _stopping(self, out: list[Effect], now: float, sig: int) -> None:
        if self.busy and self.pending is not None:
            pid = self.pending.pid
            if pid is not None:
                out.append(Terminate(pid))
                self._started.pop(pid, None)
            what = f"successor pid {pid}" if pid is not None else "a successor"
            self._fail(out, now, Cause.STOP, f"stop requested while {what} was starting", retry=False)
        self.state = State.STOPPING
        out.append(Tell({"STOPPING": 1, "STATUS": "stopping: draining"}))
        out.append(Report(Stopped()))
        out.append(Log(logging.INFO, f"stopping on {_signame(sig)}: {self._draining_what()}"))

    def _draining_what(self) -> str:
        """What the stop drains, for its log line."""
        return "draining"

    def _on_spawned(self, out: list[Effect], now: float, pid: int) -> None:
        if self.state is not State.STARTING or self.pending is None or self.pending.pid is not None:
            out.append(Terminate(pid))  # nobody asked for it
            return
        self.pending.pid = pid
        self._started[pid] = now
        ready = self.policy.ready
        if not isinstance(ready, str):
            self.pending.ready_at = now + ready
        out += [Allow(pid), Log(logging.DEBUG, f"started successor pid {pid}")]

    def _on_message(self, out: list[Effect], now: float, pid: int, fields: Mapping[str, str]) -> None:
        p = self.pending
        if p is not None and pid == p.pid and self.state is State.STARTING:
            if fields.get("READY") == "1" and self.policy.ready == "notify":
                if self.policy.confirm > 0:
                    self.state = State.CONFIRMING
                    p.confirm_until = now + self.policy.confirm
                else:
                    self._hand_over(out)
            elif "STATUS" in fields:
                out.append(Log(logging.DEBUG, f"successor pid {pid}: {fields['STATUS']}"))
        elif p is not None and pid == p.pid and self.state is State.CONFIRMING and fields.get("BARRIER") == "1":
            out.append(Hold(pid))
            self._hand_over(out)

    def _on_exit(self, out: list[Effect], now: float, pid: int, code: int) -> None:
        lived = now - self._started.pop(pid, now)
        if pid == self.pending_pid and self.busy:
            when = "right after READY=1" if self.state is State.CONFIRMING else "before READY=1"
            self._fail(out, now, Cause.EXITED, f"successor pid {pid} exited with {describe_exit(code)} {when}", lived)

    def _on_tick(self, out: list[Effect], now: float) -> None:
        p = self.pending
        if p is None or not self.busy or p.pid is None:
            return
        if self.state is State.CONFIRMING and p.confirm_until is not None and now >= p.confirm_until:
            self._hand_over(out)  # READY=1 without a barrier: not sockact, trust READY=1
        elif self.state is State.STARTING and p.ready_at is not None and now >= p.ready_at:
            self._hand_over(out)
        elif self.state is State.STARTING and now >= p.deadline:
            out.append(Terminate(p.pid))
            self._started.pop(p.pid, None)
            limit = self.policy.ready_timeout
            reason = f"successor pid {p.pid} was not ready within {limit} s (no READY=1) and was stopped"
            self._fail(out, now, Cause.NOT_READY, f"{reason}; {self.policy.not_ready_hint}")
        elif self.state is State.STARTING and p.warn_at is not None and now >= p.warn_at:
            p.warn_at = None
            out.append(
                Log(logging.WARNING, f"successor pid {p.pid} has sent no READY=1 yet; {self.policy.not_ready_hint}")
            )

    # -- shared steps ---------------------------------------------------------------------------------

    def _hand_over(self, out: list[Effect]) -> None:
        assert self.pending is not None and self.pending.pid is not None
        self.state = State.HANDING_OVER
        out.append(HandOver(self.pending.pid, self._serving_status(self.pending.pid)))

    def _serving_status(self, pid: int) -> str:
        return f"serving: pid {pid} took over"

    def _handed_over(self, out: list[Effect], now: float) -> None:
        assert self.pending is not None and self.pending.pid is not None
        new = self.pending.pid
        seconds = now - self.pending.began
        self.pending = None
        self.current = new
        self.state = State.DRAINING
        me = f"pid {self.policy.pid}" if self.policy.pid is not None else "this process"
        line = f"upgraded: {me} → pid {new} in {seconds:.2f} s; draining"
        out += [Release(), Report(Upgraded(new, seconds=seconds)), Log(logging.INFO, line)]
        if self.reload_again:
            self.reload_again = False
            out.append(SendSignal(new, self.policy.reload_signal))  # coalesced during the upgrade

    def _still_serving(self) -> str | None:
        """Who keeps serving when an upgrade fails (None: nobody)."""
        return "still serving"

    def _fail(
        self, out: list[Effect], now: float, cause: Cause, reason: str, lived: float = 0.0, retry: bool = True
    ) -> None:
        self.pending = None
        out.append(Report(Failed(cause, reason)))
        still = self._still_serving()
        if still is not None:
            self.state = State.SERVING
            # a stop asked for while starting is no error; every other failure is
            level = logging.WARNING if cause is Cause.STOP else logging.ERROR
            out.append(Log(level, f"upgrade failed, {still}: {reason}"))
            # READY=1 is owed after RELOADING=1, else the unit stays "reloading".
            out.append(Tell({"READY": 1, "STATUS": f"upgrade failed, {still}: {reason}"[:400]}))
            if retry and self.reload_again:
                self.reload_again = False
                self._on_reload(out, now)
        elif retry:
            self._no_child(out, now, reason, lived)

    def _no_child(self, out: list[Effect], now: float, reason: str, lived: float) -> None:
        """A failure while nothing serves (only a supervisor gets here)."""


class SupervisorHandoff(Handoff):
    """The same machine where children serve (``sockact run``, the demo's launcher): the new child
    becomes current and the old one is retired (SIGTERM, SIGKILL after the drain timeout); a failure
    with no child serving restarts after a back-off (:class:`Restarts`), or gives up."""

    def __init__(self, policy: Policy) -> None:
        super().__init__(policy)
        self.draining: dict[int, float] = {}  #: old child → SIGKILL deadline
        self.restart_at: float | None = None
        self.exit_code = 0
        self.gave_up = False
        self.served = False  #: a child has been ready once: later readies without a predecessor are restarts
        self.restarts = Restarts(policy)

    @property
    def serves_meanwhile(self) -> bool:
        return self.current is not None and super().serves_meanwhile  # a first start or a restart: nobody

    def children(self) -> list[int]:
        return [*self.draining, *([self.current] if self.current is not None else []), *super().children()]

    def next_deadline(self) -> float | None:
        times = [t for t in self.draining.values() if t != float("inf")]
        times += [t for t in (self.restart_at, super().next_deadline()) if t is not None]
        return min(times, default=None)

    def _on_reload(self, out: list[Effect], now: float) -> None:
        if (self.state is State.SERVING and self.current is None) or self.state is State.RESTARTING:
            self.restart_at = None
            self._start(out, now)  # nothing serves: a start, not a reload
        else:
            super()._on_reload(out, now)

    def _on_stop(self, out: list[Effect], now: float, sig: int) -> None:
        if self.state is State.STOPPING:
            out.append(Log(logging.WARNING, "second stop signal: killing every child now"))
            out += [SendSignal(pid, signal.SIGKILL) for pid in self.children()]
        elif self.state is not State.DONE:
            self._stopping(out, now, sig)
            self.restart_at = None
            if self.current is not None:
                out.append(SendSignal(self.current, signal.SIGTERM))
                self.draining[self.current] = now + self.policy.drain_timeout
                self.current = None
            self._maybe_done()

    def _on_spawned(self, out: list[Effect], now: float, pid: int) -> None:
        super()._on_spawned(out, now, pid)
        taken = self.state is State.STARTING and self.pending is not None and self.pending.pid == pid
        if taken and self.policy.ready == "spawn":
            self._hand_over(out)  # ready the moment it exists: its exit is then always a crash, never a failed start

    def _on_message(self, out: list[Effect], now: float, pid: int, fields: Mapping[str, str]) -> None:
        if pid == self.current and self.state is not State.STOPPING:
            forwarded = {k: v for k, v in fields.items() if k in ("STATUS", "ERRNO") or (k, v) == ("WATCHDOG", "1")}
            if forwarded:
                out.append(Tell(forwarded))  # WATCHDOG=trigger from a child is its own business
        else:
            super()._on_message(out, now, pid, fields)

    def _on_exit(self, out: list[Effect], now: float, pid: int, code: int) -> None:
        if pid in self.draining:
            self._started.pop(pid, None)
            killed = self.draining.pop(pid) == float("inf")
            out.append(self._drained(pid, code, killed))
            if self.state is State.STOPPING and not self.gave_up:
                self.exit_code = 0 if code in (0, -signal.SIGTERM) else (128 - code if code < 0 else code)
            self._maybe_done()
        elif pid == self.current:
            lived = now - self._started.pop(pid, now)
            self.current = None
            if self.state is State.SERVING:
                self._no_child(out, now, f"child pid {pid} exited unexpectedly with {describe_exit(code)}", lived)
        else:
            super()._on_exit(out, now, pid, code)

    def _on_tick(self, out: list[Effect], now: float) -> None:
        for pid, deadline in self.draining.items():
            if now >= deadline:
                out.append(SendSignal(pid, signal.SIGKILL))
                self.draining[pid] = float("inf")  # once
        super()._on_tick(out, now)
        if self.state is State.RESTARTING and self.restart_at is not None and now >= self.restart_at:
            self.restart_at = None
            self._start(out, now)

    def _drained(self, pid: int, code: int, killed: bool) -> Log:
        """The line for an old child's exit: DEBUG when it finished its drain, WARNING otherwise."""
        if killed:
            limit = self.policy.drain_timeout
            return Log(logging.WARNING, f"child pid {pid} was still draining after {limit} s and was killed")
        if code in (0, -signal.SIGTERM):
            return Log(logging.DEBUG, f"child pid {pid} drained and exited with {describe_exit(code)}")
        return Log(logging.WARNING, f"child pid {pid} exited with {describe_exit(code)} while draining")

    def _draining_what(self) -> str:
        if self.current is None:
            return "no child serving"
        return f"child pid {self.current} has {self.policy.drain_timeout} s to drain"

    def _serving_status(self, pid: int) -> str:
        return f"serving: child pid {pid}" + (f" replaced pid {self.current}" if self.current is not None else "")

    def _handed_over(self, out: list[Effect], now: float) -> None:
        assert self.pending is not None and self.pending.pid is not None
        new, old = self.pending.pid, self.current
        seconds = now - self.pending.began
        self.pending = None
        self.current = new
        self.state = State.SERVING
        if old is not None:
            line = Log(logging.INFO, f"upgraded: child pid {old} → pid {new} in {seconds:.2f} s")
        elif self.served:
            line = Log(logging.INFO, f"restarted: child pid {new} ready in {seconds:.2f} s")
        else:  # the driver's start line (addresses, version) announces the first child
            line = Log(logging.DEBUG, f"child pid {new} ready in {seconds:.2f} s")
        self.served = True
        out += [Release(), Report(Upgraded(new, old, seconds)), line]
        if old is not None:
            out.append(SendSignal(old, signal.SIGTERM))
            self.draining[old] = now + self.policy.drain_timeout
        if self.reload_again:
            self.reload_again = False
            self._on_reload(out, now)

    def _still_serving(self) -> str | None:
        return f"pid {self.current} still serving" if self.current is not None else None

    def _no_child(self, out: list[Effect], now: float, reason: str, lived: float) -> None:
        """Nothing serves: restart after a back-off, or give up."""
        self.reload_again = False
        delay = self.restarts.failed(lived)
        if delay is None:
            text = f"{reason}; {self.restarts.quick_failures} quick failures in a row, giving up"
            self.state = State.STOPPING
            self.exit_code, self.gave_up = 1, True
            out += [Log(logging.ERROR, text), Tell({"STATUS": text[:400]}), Report(GaveUp(text))]
            self._maybe_done()
            return
        self.state = State.RESTARTING
        self.restart_at = now + delay
        text = f"{reason}; restarting in {delay:.1f} s"
        out += [Log(logging.ERROR, text), Tell({"STATUS": text[:400]})]

    def _maybe_done(self) -> None:
        if self.state is State.STOPPING and self.current is None and self.pending is None and not self.draining:
            self.state = State.DONE
