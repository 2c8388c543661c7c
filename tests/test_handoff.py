"""The hand-over machine, table-driven: (how we got here, event) → (state, effects). Pure: no processes."""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence

import pytest

from sockact import _handoff as h
from sockact._errors import UsageError
from sockact._handoff import State
from sockact._supervisor import parse_ready

INPROC = h.Policy(ready_timeout=60.0, confirm=1.0)
SUPER = h.Policy(ready_timeout=60.0, drain_timeout=30.0, warn_after=5.0, give_up_after=3)

# Paths into each state, as (event, time) pairs fed from t=0.
IN_STARTING = [(h.Reload(), 0.0)]
IN_SPAWNED = [*IN_STARTING, (h.Spawned(7), 0.0)]
IDENTIFIED = [*IN_SPAWNED, (h.Identified(7, 70), 0.5)]
IN_CONFIRMING = [*IN_SPAWNED, (h.Notified(7, {"READY": "1"}), 1.0)]
IN_HANDING = [*IN_CONFIRMING, (h.Notified(7, {"BARRIER": "1"}), 1.1)]
IN_DRAINING = [*IN_HANDING, (h.HandedOver(), 1.2)]
IN_STOPPING = [(h.Stop(), 0.0)]
SUP_FIRST = [(h.Start(), 0.0), (h.Spawned(10), 0.0)]
SUP_SERVING = [*SUP_FIRST, (h.Notified(10, {"READY": "1"}), 0.5), (h.HandedOver(), 0.5)]
SUP_STARTING = [*SUP_SERVING, (h.Reload(), 20.0), (h.Spawned(11), 20.0)]


def machine(policy: h.Policy, path: Sequence[tuple[h.Event, float]]) -> h.Handoff:
    m = h.SupervisorHandoff(policy) if policy is SUPER or policy.ready != "notify" else h.Handoff(policy)
    for event, now in path:
        m.handle(event, now)
    return m


def kinds(effects: list[h.Effect]) -> list[str]:
    """Effects without their log lines, as short strings: the table's right-hand side."""
    out = []
    for e in effects:
        match e:
            case h.Log():
                continue
            case h.Tell(fields):
                out.append("Tell(" + ",".join(f"{k}" for k in fields if k != "STATUS") + ")")
            case h.Report(outcome):
                out.append(f"Report({type(outcome).__name__})")
            case h.SendSignal(pid, sig):
                out.append(f"Signal({pid},{signal.Signals(sig).name})")
            case h.Allow(pid) | h.Hold(pid) | h.Terminate(pid):
                out.append(f"{type(e).__name__}({pid})")
            case h.HandOver(pid, _):
                out.append(f"HandOver({pid})")
            case _:
                out.append(type(e).__name__)
    return out


TABLE = [
    # in-process: the happy path, one edge at a time
    ("serving+reload", INPROC, [], h.Reload(), 0.0, State.STARTING, ["Tell(RELOADING,MONOTONIC_USEC)", "Spawn"]),
    ("starting+spawned", INPROC, IN_STARTING, h.Spawned(7), 0.0, State.STARTING, ["Allow(7)"]),
    ("starting+READY", INPROC, IN_SPAWNED, h.Notified(7, {"READY": "1"}), 1.0, State.CONFIRMING, []),
    ("starting+STATUS", INPROC, IN_SPAWNED, h.Notified(7, {"STATUS": "x"}), 1.0, State.STARTING, []),
    ("starting+other pid", INPROC, IN_SPAWNED, h.Notified(8, {"READY": "1"}), 1.0, State.STARTING, []),
    (
        "confirming+BARRIER",
        INPROC,
        IN_CONFIRMING,
        h.Notified(7, {"BARRIER": "1"}),
        1.1,
        State.HANDING_OVER,
        ["Hold(7)", "HandOver(7)"],
    ),
    ("confirming+no barrier in time", INPROC, IN_CONFIRMING, h.Tick(), 2.0, State.HANDING_OVER, ["HandOver(7)"]),
    ("confirming+tick early", INPROC, IN_CONFIRMING, h.Tick(), 1.5, State.CONFIRMING, []),
    ("handing over+done", INPROC, IN_HANDING, h.HandedOver(), 1.2, State.DRAINING, ["Release", "Report(Upgraded)"]),
    # in-process failures: the old process keeps serving and owes READY=1 after RELOADING=1
    (
        "starting+spawn failed",
        INPROC,
        IN_STARTING,
        h.SpawnFailed("no such executable"),
        0.0,
        State.SERVING,
        ["Report(Failed)", "Tell(READY)"],
    ),
    ("starting+exited", INPROC, IN_SPAWNED, h.Exited(7, 1), 0.5, State.SERVING, ["Report(Failed)", "Tell(READY)"]),
    (
        "confirming+died after READY",
        INPROC,
        IN_CONFIRMING,
        h.Exited(7, -9),
        1.05,
        State.SERVING,
        ["Report(Failed)", "Tell(READY)"],
    ),
    (
        "starting+deadline",
        INPROC,
        IN_SPAWNED,
        h.Tick(),
        60.0,
        State.SERVING,
        ["Terminate(7)", "Report(Failed)", "Tell(READY)"],
    ),
    ("starting+tick early", INPROC, IN_SPAWNED, h.Tick(), 59.9, State.STARTING, []),
    (
        "handing over+failed",
        INPROC,
        IN_HANDING,
        h.HandOverFailed("EMFILE"),
        1.2,
        State.SERVING,
        ["Release", "Terminate(7)", "Report(Failed)", "Tell(READY)"],
    ),
    # stops and reloads at every moment
    ("starting+reload coalesced", INPROC, IN_SPAWNED, h.Reload(), 0.5, State.STARTING, []),
    (
        "starting+stop",
        INPROC,
        IN_SPAWNED,
        h.Stop(),
        0.5,
        State.STOPPING,
        ["Terminate(7)", "Report(Failed)", "Tell(READY)", "Tell(STOPPING)", "Report(Stopped)"],
    ),
    (
        "confirming+stop",
        INPROC,
        IN_CONFIRMING,
        h.Stop(),
        1.05,
        State.STOPPING,
        ["Terminate(7)", "Report(Failed)", "Tell(READY)", "Tell(STOPPING)", "Report(Stopped)"],
    ),
    ("serving+stop", INPROC, [], h.Stop(), 0.0, State.STOPPING, ["Tell(STOPPING)", "Report(Stopped)"]),
    ("stopping+stop (hammer)", INPROC, IN_STOPPING, h.Stop(), 1.0, State.STOPPING, ["Hammer"]),
    ("stopping+reload ignored", INPROC, IN_STOPPING, h.Reload(), 1.0, State.STOPPING, []),
    ("draining+reload forwarded", INPROC, IN_DRAINING, h.Reload(), 2.0, State.DRAINING, ["Signal(7,SIGHUP)"]),
    ("draining+stop (the manager's to the successor)", INPROC, IN_DRAINING, h.Stop(), 2.0, State.DRAINING, []),
    # a relayed successor (PID-file mode) is named by its first message; its exit comes as the relay's
    ("starting+identified", INPROC, IN_SPAWNED, h.Identified(7, 70), 0.5, State.STARTING, ["Allow(70)"]),
    ("identified+READY", INPROC, IDENTIFIED, h.Notified(70, {"READY": "1"}), 1.0, State.CONFIRMING, []),
    ("identified+old pid", INPROC, IDENTIFIED, h.Notified(7, {"READY": "1"}), 1.0, State.STARTING, []),
    ("identified+exited", INPROC, IDENTIFIED, h.Exited(70, 1), 1.0, State.SERVING, ["Report(Failed)", "Tell(READY)"]),
    ("identified twice", INPROC, IDENTIFIED, h.Identified(7, 71), 1.0, State.STARTING, []),
    ("identified when idle", INPROC, [], h.Identified(7, 70), 0.0, State.SERVING, []),
    ("spawned nobody asked for", INPROC, [], h.Spawned(9), 0.0, State.SERVING, ["Terminate(9)"]),
    # supervisor
    ("sup start", SUPER, [], h.Start(), 0.0, State.STARTING, ["Spawn"]),
    ("sup first READY", SUPER, SUP_FIRST, h.Notified(10, {"READY": "1"}), 0.5, State.HANDING_OVER, ["HandOver(10)"]),
    (
        "sup promote",
        SUPER,
        [*SUP_STARTING, (h.Notified(11, {"READY": "1"}), 21.0)],
        h.HandedOver(),
        21.0,
        State.SERVING,
        ["Release", "Report(Upgraded)", "Signal(10,SIGTERM)"],
    ),
    (
        "sup child STATUS forwarded",
        SUPER,
        SUP_SERVING,
        h.Notified(10, {"STATUS": "hi", "WATCHDOG": "trigger"}),
        1.0,
        State.SERVING,
        ["Tell()"],
    ),
    ("sup reload while first starts", SUPER, SUP_FIRST, h.Reload(), 0.1, State.STARTING, []),
    (
        "sup new child never ready",
        SUPER,
        SUP_STARTING,
        h.Tick(),
        80.0,
        State.SERVING,
        ["Terminate(11)", "Report(Failed)", "Tell(READY)"],
    ),
    ("sup current crashes (lived long)", SUPER, SUP_SERVING, h.Exited(10, -9), 15.0, State.RESTARTING, ["Tell()"]),
    ("sup first child fails", SUPER, SUP_FIRST, h.Exited(10, 1), 0.2, State.RESTARTING, ["Report(Failed)", "Tell()"]),
    (
        "sup stop",
        SUPER,
        SUP_SERVING,
        h.Stop(),
        1.0,
        State.STOPPING,
        ["Tell(STOPPING)", "Report(Stopped)", "Signal(10,SIGTERM)"],
    ),
    (
        "sup stop while starting",
        SUPER,
        SUP_STARTING,
        h.Stop(),
        20.5,
        State.STOPPING,
        ["Terminate(11)", "Report(Failed)", "Tell(READY)", "Tell(STOPPING)", "Report(Stopped)", "Signal(10,SIGTERM)"],
    ),
    (
        "sup second stop kills",
        SUPER,
        [*SUP_SERVING, (h.Stop(), 1.0)],
        h.Stop(),
        1.5,
        State.STOPPING,
        ["Signal(10,SIGKILL)"],
    ),
    ("sup last child gone", SUPER, [*SUP_SERVING, (h.Stop(), 1.0)], h.Exited(10, -15), 1.5, State.DONE, []),
    (
        "sup drain deadline",
        SUPER,
        [*SUP_SERVING, (h.Stop(), 1.0)],
        h.Tick(),
        31.0,
        State.STOPPING,
        ["Signal(10,SIGKILL)"],
    ),
]


@pytest.mark.parametrize(
    ("policy", "path", "event", "now", "state", "effects"), [row[1:] for row in TABLE], ids=[row[0] for row in TABLE]
)
def test_transition(
    policy: h.Policy, path: list[tuple[h.Event, float]], event: h.Event, now: float, state: State, effects: list[str]
) -> None:
    m = machine(policy, path)
    assert kinds(m.handle(event, now)) == effects
    assert m.state is state


@pytest.mark.parametrize(("policy", "path", "event", "now"), [row[1:5] for row in TABLE], ids=[row[0] for row in TABLE])
def test_each_outcome_is_one_log_line(
    policy: h.Policy, path: list[tuple[h.Event, float]], event: h.Event, now: float
) -> None:
    """At the default level (INFO) an operator sees one line per outcome — a failure at WARNING (a stop
    cut it short) or ERROR — and at most one line for any other event. The supervisor's first child
    is the exception: the driver's start line (addresses, version) announces it, so the machine's is DEBUG."""
    effects = machine(policy, path).handle(event, now)
    reports = [e.outcome for e in effects if isinstance(e, h.Report)]
    shown = [e for e in effects if isinstance(e, h.Log) and e.level >= logging.INFO]
    first_child = [o for o in reports if isinstance(o, h.Upgraded) and o.replaced is None and policy is SUPER]
    if reports:
        assert len(shown) == len(reports) - len(first_child), effects
    else:
        assert len(shown) <= 1, effects
    if any(isinstance(o, h.Failed) for o in reports):
        assert max(e.level for e in shown) >= logging.WARNING, effects


def test_upgraded_says_who_replaced_whom_and_how_long_it_took() -> None:
    m = h.Handoff(h.Policy(confirm=1.0, pid=5))
    logs = [e for ev, t in IN_DRAINING for e in m.handle(ev, t) if isinstance(e, h.Log) and e.level >= logging.INFO]
    assert [e.text for e in logs] == ["upgraded: pid 5 → pid 7 in 1.20 s; draining"]
    s = machine(SUPER, SUP_SERVING)
    effects = [
        e
        for ev, t in [(h.Reload(), 20.0), (h.Spawned(11), 20.0), (h.Notified(11, {"READY": "1"}), 20.25)]
        for e in s.handle(ev, t)
    ] + s.handle(h.HandedOver(), 20.3)
    assert h.Report(h.Upgraded(11, 10, pytest.approx(0.3))) in effects
    assert [e.text for e in effects if isinstance(e, h.Log) and e.level >= logging.INFO] == [
        "upgraded: child pid 10 → pid 11 in 0.30 s"
    ]


def test_every_state_is_reached_by_the_table() -> None:
    reached = set()
    for _, policy, path, event, now, _, _ in TABLE:
        m = machine(policy, path)
        reached.add(m.state)
        m.handle(event, now)
        reached.add(m.state)
    assert reached == set(State)


def outcome_of(effects: list[h.Effect]) -> h.Outcome:
    return next(e.outcome for e in effects if isinstance(e, h.Report))


@pytest.mark.parametrize(
    ("path", "event", "now", "cause", "reason"),
    [
        (IN_STARTING, h.SpawnFailed("cannot start 'x': no such executable"), 0.0, h.Cause.SPAWN, "no such executable"),
        (IN_SPAWNED, h.Exited(7, 1), 0.5, h.Cause.EXITED, "successor pid 7 exited with status 1 before READY=1"),
        (IN_CONFIRMING, h.Exited(7, -9), 1.05, h.Cause.EXITED, "exited with signal SIGKILL right after READY=1"),
        (IN_SPAWNED, h.Tick(), 60.0, h.Cause.NOT_READY, "was not ready within 60.0 s"),
        (IN_SPAWNED, h.Stop(), 1.0, h.Cause.STOP, "stop requested while successor pid 7 was starting"),
        (IN_HANDING, h.HandOverFailed("cannot write PID file /run/x.pid"), 1.2, h.Cause.HANDOVER, "PID file"),
    ],
)
def test_failures_are_typed_and_say_why(
    path: list[tuple[h.Event, float]], event: h.Event, now: float, cause: h.Cause, reason: str
) -> None:
    effects = machine(INPROC, path).handle(event, now)
    outcome = outcome_of(effects)
    assert isinstance(outcome, h.Failed) and outcome.cause is cause and reason in outcome.reason
    ready = next(e for e in effects if isinstance(e, h.Tell) and "READY" in e.fields)
    assert "upgrade failed, still serving" in str(ready.fields["STATUS"]) and reason in str(ready.fields["STATUS"])


def test_reloading_carries_monotonic_usec_from_the_drivers_clock() -> None:
    tell = h.Handoff(INPROC).handle(h.Reload(), 12.3456789)[0]
    assert isinstance(tell, h.Tell) and tell.fields["MONOTONIC_USEC"] == 12345678  # Type=notify-reload needs it


def test_a_coalesced_reload_is_forwarded_after_a_hand_over() -> None:
    m = machine(INPROC, [*IN_SPAWNED, (h.Reload(), 0.5), (h.Reload(), 0.6), *IN_CONFIRMING[2:], *IN_HANDING[3:]])
    assert kinds(m.handle(h.HandedOver(), 1.2)) == [
        "Release",
        "Report(Upgraded)",
        "Signal(7,SIGHUP)",
    ]  # once, not twice


def test_a_coalesced_reload_retries_after_a_failure() -> None:
    m = machine(INPROC, [*IN_SPAWNED, (h.Reload(), 0.5)])
    effects = kinds(m.handle(h.Exited(7, 1), 0.7))
    assert effects == ["Report(Failed)", "Tell(READY)", "Tell(RELOADING,MONOTONIC_USEC)", "Spawn"]
    assert m.state is State.STARTING and not m.reload_again


def test_a_coalesced_reload_starts_another_child_after_a_supervisor_promotion() -> None:
    m = machine(SUPER, [*SUP_STARTING, (h.Reload(), 20.1), (h.Notified(11, {"READY": "1"}), 21.0)])
    effects = kinds(m.handle(h.HandedOver(), 21.0))
    assert effects[-2:] == ["Tell(RELOADING,MONOTONIC_USEC)", "Spawn"] and m.state is State.STARTING


def test_deadlines_the_driver_must_wait_for() -> None:
    m = machine(INPROC, IN_SPAWNED)
    assert m.next_deadline() == 60.0
    m.handle(h.Notified(7, {"READY": "1"}), 1.0)
    assert m.next_deadline() == 2.0  # the barrier wait
    assert machine(INPROC, []).next_deadline() is None
    sup = machine(SUPER, SUP_FIRST)
    assert sup.next_deadline() == 5.0  # the no-READY=1 warning comes first


def test_supervisor_warns_once_when_no_ready_came() -> None:
    m = machine(SUPER, SUP_FIRST)
    warnings = [e for e in m.handle(h.Tick(), 5.0) if isinstance(e, h.Log) and e.level == logging.WARNING]
    assert len(warnings) == 1 and "--ready spawn" not in warnings[0].text  # the default hint is sockact's
    assert not [e for e in m.handle(h.Tick(), 6.0) if isinstance(e, h.Log)]


def test_supervisor_ready_after_seconds_without_notify() -> None:
    m = machine(h.Policy(ready=2.5), [(h.Start(), 0.0), (h.Spawned(10), 0.0)])
    assert m.next_deadline() == 2.5
    assert kinds(m.handle(h.Tick(), 2.5)) == ["HandOver(10)"]


def test_supervisor_ready_at_spawn_hands_over_in_the_same_step() -> None:
    """--ready spawn: no tick between the spawn and the hand-over, so a child that exits at once is
    always a crash of the serving child, never a successor that failed to start."""
    m = machine(h.Policy(ready="spawn"), [(h.Start(), 0.0)])
    assert kinds(m.handle(h.Spawned(10), 0.0)) == ["Allow(10)", "HandOver(10)"]
    m.handle(h.HandedOver(), 0.0)
    assert m.state is State.SERVING and m.current == 10 and m.next_deadline() is None
    lines = [e.text for e in m.handle(h.Exited(10, 3), 0.001) if isinstance(e, h.Log)]
    assert lines and "child pid 10 exited unexpectedly with status 3" in lines[0], lines


def test_supervisor_ready_at_spawn_on_a_reload_retires_the_old_child_at_once() -> None:
    m = machine(h.Policy(ready="spawn"), [(h.Start(), 0.0), (h.Spawned(10), 0.0), (h.HandedOver(), 0.0)])
    m.handle(h.Reload(), 5.0)
    assert kinds(m.handle(h.Spawned(11), 5.0)) == ["Allow(11)", "HandOver(11)"]
    assert "Signal(10,SIGTERM)" in kinds(m.handle(h.HandedOver(), 5.0))
    assert m.current == 11 and 10 in m.children()  # draining


def test_the_in_process_machine_never_hands_over_at_spawn() -> None:
    """ready="spawn" is the supervisor's: in-process, Spawned may name a relay, and READY=1 is owed."""
    m = h.Handoff(h.Policy(ready="spawn"))
    m.handle(h.Reload(), 0.0)
    assert kinds(m.handle(h.Spawned(7), 0.0)) == ["Allow(7)"] and m.state is State.STARTING


def test_supervisor_backs_off_while_children_die_young_and_gives_up() -> None:
    m = machine(SUPER, SUP_FIRST)
    delays = []
    now = 0.2
    for pid in (10, 11, 12):
        effects = m.handle(h.Exited(pid, 1), now)
        if m.state is State.RESTARTING:
            assert m.restart_at is not None
            delays.append(round(m.restart_at - now, 3))
            now = m.restart_at
            assert kinds(m.handle(h.Tick(), now)) == ["Spawn"]
            m.handle(h.Spawned(pid + 1), now)
            now += 0.5  # dies half a second later: a quick failure
    assert delays == [0.1, 0.2]
    reports = [e.outcome for e in effects if isinstance(e, h.Report)]
    assert [type(r) for r in reports] == [h.Failed, h.GaveUp] and "3 quick failures in a row" in reports[1].reason
    assert m.state is State.DONE and m.exit_code == 1


def test_a_crash_loop_right_after_ready_backs_off_too() -> None:
    """Back-off follows how long a child lived, not whether it said READY=1 (it used to reset on READY=1)."""
    m = machine(SUPER, SUP_SERVING)
    m.handle(h.Exited(10, -11), 1.0)  # lived 1 s after READY=1
    assert m.restart_at == pytest.approx(1.1)
    m.handle(h.Tick(), 1.1)
    for event in (h.Spawned(11), h.Notified(11, {"READY": "1"}), h.HandedOver()):
        m.handle(event, 1.2)
    m.handle(h.Exited(11, -11), 1.5)
    assert m.restart_at == pytest.approx(1.7)  # doubled, though pid 11 had said READY=1


def test_a_child_that_lived_long_resets_the_back_off() -> None:
    m = machine(SUPER, SUP_SERVING)
    m.handle(h.Exited(10, 1), 1.0)
    m.handle(h.Tick(), 1.1)
    for event in (h.Spawned(11), h.Notified(11, {"READY": "1"}), h.HandedOver()):
        m.handle(event, 1.1)
    m.handle(h.Exited(11, 1), 100.0)  # served for 99 s
    assert m.restart_at == pytest.approx(100.1)


def test_exit_code_is_the_last_childs() -> None:
    m = machine(SUPER, [*SUP_SERVING, (h.Stop(), 1.0)])
    m.handle(h.Exited(10, 3), 1.5)
    assert m.state is State.DONE and m.exit_code == 3
    m = machine(SUPER, [*SUP_SERVING, (h.Stop(), 1.0)])
    m.handle(h.Exited(10, -signal.SIGTERM), 1.5)
    assert m.exit_code == 0  # stopped by our own SIGTERM


def test_describe_exit() -> None:
    assert h.describe_exit(0) == "status 0"
    assert h.describe_exit(-9) == "signal SIGKILL"
    assert h.describe_exit(-200) == "signal 200"


@pytest.mark.parametrize(
    ("extra", "code", "level", "text"),
    [
        ([], -signal.SIGTERM, logging.DEBUG, "child pid 10 drained and exited with signal SIGTERM"),
        ([], 0, logging.DEBUG, "child pid 10 drained and exited with status 0"),
        (
            [(h.Tick(), 31.0)],
            -signal.SIGKILL,
            logging.WARNING,
            "child pid 10 was still draining after 30.0 s and was killed",
        ),
        ([], 3, logging.WARNING, "child pid 10 exited with status 3 while draining"),
    ],
)
def test_an_old_childs_exit_is_quiet_unless_its_drain_went_wrong(
    extra: list[tuple[h.Event, float]], code: int, level: int, text: str
) -> None:
    m = machine(SUPER, [*SUP_SERVING, (h.Stop(), 1.0), *extra])
    assert [(e.level, e.text) for e in m.handle(h.Exited(10, code), 32.0) if isinstance(e, h.Log)] == [(level, text)]


@pytest.mark.parametrize(
    ("text", "ready"), [("notify", "notify"), ("spawn", "spawn"), ("0", "spawn"), ("0.5", 0.5), ("2", 2.0)]
)
def test_parse_ready(text: str, ready: str | float) -> None:
    assert parse_ready(text) == ready


@pytest.mark.parametrize("text", ["", "soon", "-1", "3600", "nan", "inf"])
def test_parse_ready_refuses_with_a_usage_error(text: str) -> None:
    with pytest.raises(UsageError, match=r"--ready .*: use notify, spawn or a number of seconds"):
        parse_ready(text)


SPAWN_AT_ONCE = h.Policy(ready_timeout=60.0, ready="spawn", drain_timeout=30.0)


@pytest.mark.parametrize(
    ("policy", "path", "expected"),
    [
        (INPROC, IN_STARTING, True),  # this process serves while its successor starts
        (SUPER, [(h.Start(), 0.0)], False),  # the first child: nothing else serves
        (SUPER, [*SUP_SERVING, (h.Reload(), 20.0)], True),  # a reload: the old child serves meanwhile
        (SUPER, [*SUP_FIRST, (h.Exited(10, 1), 1.0)], False),  # a first child that failed: nobody serves
        (SUPER, [*SUP_SERVING, (h.Exited(10, 1), 20.0)], False),  # the serving child crashed: a restart
        (SUPER, [*SUP_STARTING, (h.Exited(10, 1), 21.0)], False),  # it crashed while a reload's child starts
        (SPAWN_AT_ONCE, [(h.Start(), 0.0), (h.Spawned(10), 0.0), (h.HandedOver(), 0.0), (h.Reload(), 20.0)], False),
    ],
)
def test_a_successor_starts_nicer_only_while_another_generation_serves(
    policy: h.Policy, path: list[tuple[h.Event, float]], expected: bool
) -> None:
    assert machine(policy, path).serves_meanwhile is expected
