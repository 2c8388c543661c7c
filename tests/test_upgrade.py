"""The upgrader with real successor processes and a NotifyReceiver standing in for systemd."""

from __future__ import annotations

import os
import pathlib
import signal
import socket
import sys
import threading
import time

import pytest

import sockact
from sockact import NotifyReceiver, UpgradeError
from sockact._pidfile import write_pidfile
from sockact._priority import START_NICE, lowered_nice
from sockact._spawn import parent_of, spawn
from sockact._upgrade import Upgrader

from helpers import ROOT, FakeSystemd, child_env, until
from reloads import become_subreaper

SUCCESSOR = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import sockact
mode = sys.argv[2]
if mode == "exit":
    sys.exit(1)
if mode == "hang":
    import time; time.sleep(60)
ls = sockact.get_listeners({"http": "127.0.0.1:1"})
if mode.startswith("say-then-exit:"):  # a successor that speaks once and exits at once
    with open(mode.split(":", 1)[1], "w") as f:
        f.write(str(os.getpid()))
    sockact.status("about to exit")
    sys.exit(3)
if mode.startswith("fail-in-upgrader:"):  # a successor that fails between its Upgrader and READY=1
    with sockact.Upgrader(ls, pidfile=mode.split(":", 1)[1], drain_timeout=30):
        sys.exit(3)
if mode.startswith("nice:"):  # a successor that tells its nice value before and after READY=1
    import threading
    waiting = threading.Thread(target=threading.Event().wait, daemon=True)  # started before READY=1
    waiting.start()
    before = os.getpriority(os.PRIO_PROCESS, 0)
    sockact.ready()  # returns after the hand-over
    with open(mode.split(":", 1)[1], "w") as f:
        f.write(f"{before} {os.getpriority(os.PRIO_PROCESS, 0)} {os.getpriority(os.PRIO_PROCESS, waiting.native_id)}")
else:
    sockact.ready()
sockact.status(f"successor {os.getpid()} inherited={sorted(ls.inherited)} unclaimed={ls.unclaimed}")
conn, _ = ls["http"].accept()
conn.sendall(f"pid {os.getpid()}".encode())
conn.close()
"""


@pytest.fixture
def setup(tmp_path: object) -> tuple[sockact.Listeners, FakeSystemd, str]:
    script = os.path.join(str(tmp_path), "successor.py")
    with open(script, "w") as f:
        f.write(SUCCESSOR)
    with sockact.get_listeners({"http": "127.0.0.1:0"}, environ={}) as ls, FakeSystemd() as upstream:
        yield ls, upstream, script


def upgrader(ls: sockact.Listeners, upstream: NotifyReceiver, script: str, mode: str, **kw: object) -> Upgrader:
    env = {**child_env(), "NOTIFY_SOCKET": upstream.address}
    return Upgrader(ls, command=[sys.executable, script, ROOT, mode], environ=env, **kw)  # type: ignore[arg-type]


def drain(r: FakeSystemd, count: int = 0, timeout: float = 10) -> list[sockact.Message]:
    """The messages "systemd" got, once at least ``count`` arrived."""
    deadline = time.monotonic() + timeout
    while len(r.messages) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(r.messages)


def test_hand_over_to_a_successor(setup: tuple) -> None:
    ls, upstream, script = setup
    up = upgrader(ls, upstream, script, "serve")
    child = up.upgrade()
    assert up.state == "draining" and up.successor is child
    port = ls["http"].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        assert c.recv(100) == f"pid {child.pid}".encode()  # the successor serves the same socket
    assert child.wait(10) == 0
    messages = drain(upstream, 4)
    fields = [m.fields for m in messages]
    assert set(fields[0]) == {"RELOADING", "MONOTONIC_USEC", "STATUS"}
    assert fields[1]["MAINPID"] == str(child.pid) and fields[1]["READY"] == "1"
    assert fields[2] == {"BARRIER": "1"}
    hello = messages[3]  # after the barrier the successor talks to "systemd" directly
    assert hello.pid == child.pid and hello["STATUS"] == f"successor {child.pid} inherited=['http'] unclaimed={{}}"
    with pytest.raises(sockact.StateError, match="one upgrade at a time"):
        up.upgrade()


@pytest.mark.parametrize(("mode", "reason"), [("exit", "exited with status 1"), ("hang", "not ready within")])
def test_failed_successor_leaves_us_serving(setup: tuple, mode: str, reason: str) -> None:
    ls, upstream, script = setup
    up = upgrader(ls, upstream, script, mode, ready_timeout=1.0)
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(UpgradeError, match=reason) as info:
        up.upgrade()
    assert up.state == "serving" and up.successor is None
    assert set(os.listdir("/proc/self/fd")) == before  # receiver, pidfd and staged fds all closed
    child_pid = int(str(info.value).split("successor pid ")[1].split()[0])
    with pytest.raises(ChildProcessError):
        os.waitpid(child_pid, os.WNOHANG)  # already reaped: no zombie left behind
    last = drain(upstream, 2)[-1]
    assert last["READY"] == "1" and reason in last["STATUS"] and "still serving" in last["STATUS"]
    assert ls["http"].fileno() >= 0  # our listener is untouched


def test_pidfile_mode_makes_the_successor_the_managers_child_before_naming_it(setup: tuple, tmp_path: object) -> None:
    """PID-file mode: at the hand-over the successor's relaying shell is ended, so the kernel gives the
    successor to the nearest subreaper (systemd; this test process here), and only then do the PID
    file and MAINPID= name it: systemd supervises it as its own child at once."""
    become_subreaper()
    ls, upstream, script = setup
    pidfile = os.path.join(str(tmp_path), "app.pid")
    write_pidfile(pidfile, os.getpid())
    up = upgrader(ls, upstream, script, "serve", pidfile=pidfile)
    child = up.upgrade()
    assert pathlib.Path(pidfile).read_text() == f"{child.pid}\n"
    assert parent_of(child.pid) == os.getpid()  # ours ("systemd's"), not the upgrader's, already
    told = [m.fields for m in drain(upstream, 3)]
    assert told[1]["MAINPID"] == str(child.pid) and told[1]["READY"] == "1", told
    with socket.create_connection(("127.0.0.1", ls["http"].getsockname()[1]), timeout=10) as c:
        assert c.recv(100) == f"pid {child.pid}".encode()
    _, status = os.waitpid(child.pid, 0)  # the manager reaps it: its exit status is the manager's to see
    assert os.waitstatus_to_exitcode(status) == 0
    assert child.wait(10) == -255  # the upgrader sees the exit, not the status
    up.close()
    assert pathlib.Path(pidfile).read_text() == f"{child.pid}\n"  # nothing rewritten as we exit


@pytest.mark.parametrize("pidfile_mode", [False, True])
def test_a_successor_starts_nicer_and_gets_the_priority_back_at_the_hand_over(
    setup: tuple, tmp_path: object, pidfile_mode: bool
) -> None:
    """While this process serves, its successor starts START_NICE nicer (relayed or not); at the hand-over
    it gets this process's value back, on every thread, before its sockact.ready() returns."""
    if pidfile_mode:
        become_subreaper()
    ls, upstream, script = setup
    told = os.path.join(str(tmp_path), "nice")
    pidfile = os.path.join(str(tmp_path), "app.pid") if pidfile_mode else None
    if pidfile is not None:
        write_pidfile(pidfile, os.getpid())
    base, niced = os.getpriority(os.PRIO_PROCESS, 0), lowered_nice(START_NICE)
    if niced is None:
        pytest.skip("this runner could not give a raised nice value back (no CAP_SYS_NICE, RLIMIT_NICE < 20)")
    up = upgrader(ls, upstream, script, f"nice:{told}", pidfile=pidfile)
    child = up.upgrade()
    with socket.create_connection(("127.0.0.1", ls["http"].getsockname()[1]), timeout=10) as c:
        assert c.recv(100) == f"pid {child.pid}".encode()  # it wrote the file before it accepted
    assert pathlib.Path(told).read_text().split() == [str(niced[0]), str(base), str(base)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the spawning thread never changed
    if pidfile_mode:  # our child now ("the manager's"): it exits after its one answer
        until(lambda: os.waitpid(child.pid, os.WNOHANG)[0] == child.pid, 30)
    else:
        assert child.wait(30) == 0
    up.close()


def test_a_failing_successor_does_not_wait_for_its_predecessor(setup: tuple, tmp_path: object) -> None:
    """A PID-file successor waits for its predecessor before it exits only once it took over: one that
    fails before READY=1 exits at once (its predecessor, still serving, would not exit for it)."""
    ls, upstream, script = setup
    pidfile = os.path.join(str(tmp_path), "app.pid")
    write_pidfile(pidfile, os.getpid())
    up = upgrader(ls, upstream, script, f"fail-in-upgrader:{pidfile}", pidfile=pidfile, ready_timeout=10.0)
    with pytest.raises(UpgradeError, match="exited with status 3 before READY=1"):  # not "not ready within"
        up.upgrade()
    up.close()


def test_a_relayed_successor_is_named_by_its_own_pid(setup: tuple, tmp_path: object) -> None:
    """Under its relay (PID-file mode) the successor is named as soon as the relay has started it, so a
    message it sends just before it exits is taken and its failure names its own pid, not the shell's."""
    ls, upstream, script = setup
    pidfile, said = os.path.join(str(tmp_path), "app.pid"), os.path.join(str(tmp_path), "successor.pid")
    write_pidfile(pidfile, os.getpid())
    up = upgrader(ls, upstream, script, f"say-then-exit:{said}", pidfile=pidfile, ready_timeout=10.0)
    with pytest.raises(UpgradeError, match="exited with status 3 before READY=1") as info:
        up.upgrade()
    assert f"successor pid {pathlib.Path(said).read_text()} " in str(info.value)
    up.close()


def test_a_stop_that_came_during_the_hand_over_goes_on_to_the_successor(setup: tuple) -> None:
    """systemd sent it while this process was still main; once MAINPID= names the successor, nobody
    would stop the successor (KillMode=mixed signals the main process only). Other signals stay."""
    ls, _, _ = setup
    with Upgrader(ls, environ={}, command=["true"]) as up, spawn(["/bin/sleep", "30"]) as sleeper:
        assert up.signals is not None
        up.signals.raise_(signal.SIGTERM)
        up.signals.raise_(signal.SIGHUP)
        up._forward_pending_stop(sleeper)
        assert sleeper.wait(10) == -signal.SIGTERM
        assert up.signals.read(0) == [signal.SIGHUP]


def test_a_second_stop_ends_the_wait_for_the_predecessor(setup: tuple, tmp_path: object) -> None:
    """A successor that took over waits for its predecessor as it exits; a stop signal then cuts it."""
    ls, _, _ = setup
    pidfile = os.path.join(str(tmp_path), "app.pid")
    with spawn(["/bin/sleep", "30"]) as predecessor:
        up = Upgrader(ls, environ={}, command=["true"], pidfile=pidfile, drain_timeout=60).__enter__()
        assert predecessor.pidfd is not None
        # as a successor that took over finds itself: relay gone, the PID file no longer naming the predecessor
        up._predecessor, up._predecessor_pid, up._relay = os.dup(predecessor.pidfd), predecessor.pid, -1
        up.signals.raise_(signal.SIGTERM)  # type: ignore[union-attr]
        waited = []
        up._wait_for_predecessor = lambda fd, real=up._wait_for_predecessor: waited.append(fd) or real(fd)  # type: ignore[method-assign]
        up.close()  # returns: the stop cut the wait (else up to 60 s)
        assert waited and up._predecessor is None and predecessor.poll() is None
        predecessor.terminate(5)


@pytest.mark.parametrize("how", ["exit", "hang"])
def test_pidfile_mode_failures_leave_no_relay_or_successor(setup: tuple, tmp_path: object, how: str) -> None:
    """A relayed successor that exits (status relayed) or hangs (terminated through its relay's
    process group) fails the upgrade as a direct child would; nothing of it is left."""
    ls, upstream, script = setup
    pidfile = os.path.join(str(tmp_path), "app.pid")
    write_pidfile(pidfile, os.getpid())
    children = pathlib.Path(f"/proc/{os.getpid()}/task/{threading.get_native_id()}/children")
    before = set(children.read_text().split())  # other tests' servers may still be on their way out
    up = upgrader(ls, upstream, script, how, pidfile=pidfile, ready_timeout=1.0)
    with pytest.raises(UpgradeError, match="exited with status 1" if how == "exit" else "not ready within") as info:
        up.upgrade()
    assert pathlib.Path(pidfile).read_text() == f"{os.getpid()}\n"
    assert set(children.read_text().split()) <= before  # the relay was reaped
    relay = int(str(info.value).split("successor pid ")[1].split()[0])  # no message named the successor
    assert not os.path.exists(f"/proc/{relay}")
    assert not [pid for pid in os.listdir("/proc") if pid.isdigit() and script in _cmdline(pid)]  # nor the successor
    up.close()


def _cmdline(pid: str) -> str:
    try:
        return pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_pidfile_never_follows_a_symlink(tmp_path: object) -> None:
    victim = os.path.join(str(tmp_path), "victim")
    with open(victim, "w") as f:
        f.write("precious")
    link = os.path.join(str(tmp_path), "app.pid")
    os.symlink(victim, link)
    write_pidfile(link, 4242)
    assert pathlib.Path(victim).read_text() == "precious"
    assert not os.path.islink(link) and pathlib.Path(link).read_text() == "4242\n"
    with pytest.raises(UpgradeError, match="cannot write PID file"):
        write_pidfile(os.path.join(str(tmp_path), "missing-dir", "x.pid"), 1)


def test_missing_command_is_a_clear_error(setup: tuple) -> None:
    ls, upstream, _ = setup
    up = Upgrader(ls, command=["/nonexistent/python"], environ={"NOTIFY_SOCKET": upstream.address})
    with pytest.raises(UpgradeError, match="no such executable"):
        up.upgrade()
    assert up.state == "serving"


def test_successor_handshake_without_a_manager_drops_notify_socket() -> None:
    from sockact._notify import successor_handshake

    env = {"NOTIFY_SOCKET": "/nonexistent/predecessor", "SOCKACT_UPSTREAM_NOTIFY_SOCKET": ""}
    assert successor_handshake(env, timeout=0.1)
    assert env == {}  # later notify() calls return False instead of failing on a dead predecessor
    env = {"NOTIFY_SOCKET": "/nonexistent/predecessor", "SOCKACT_UPSTREAM_NOTIFY_SOCKET": "/run/systemd/notify"}
    assert successor_handshake(env, timeout=0.1)
    assert env == {"NOTIFY_SOCKET": "/run/systemd/notify"}
    assert not successor_handshake({"NOTIFY_SOCKET": "/x"})


CHANGING = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
import sockact
ls = sockact.get_listeners({"http": "127.0.0.1:1", "admin": "127.0.0.1:0"})  # keeps http, adds admin, drops old
sockact.ready()
ls.close_unclaimed()
sockact.status(f"http={ls['http'].getsockname()[1]} admin={ls['admin'].getsockname()[1]} "
               f"inherited={sorted(ls.inherited)} bound={sorted(ls.bound)}")
for name in ("http", "admin"):
    conn, _ = ls[name].accept()
    conn.sendall(name.encode())
    conn.close()
"""


def test_successor_changes_listeners_and_port_zero_travels(tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "changing.py")
    with open(script, "w") as f:
        f.write(CHANGING)
    with (
        sockact.get_listeners({"http": "127.0.0.1:0", "old": "127.0.0.1:0"}, environ={}) as ls,
        FakeSystemd() as upstream,
    ):
        http_port, old_port = ls["http"].getsockname()[1], ls["old"].getsockname()[1]
        up = Upgrader(
            ls, command=[sys.executable, script, ROOT], environ={**child_env(), "NOTIFY_SOCKET": upstream.address}
        )
        child = up.upgrade()
        ls.close()  # the predecessor lets go of its copies
        status = upstream.wait_for(lambda m: (m.get("STATUS") or "").startswith("http="))
        admin_port = int(status["STATUS"].split()[1].split("=")[1])
        assert status["STATUS"] == (
            f"http={http_port} admin={admin_port} inherited=['http'] bound=['admin']"
        )  # port 0 was resolved once, and the real port travelled by name
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", old_port), timeout=5)  # dropped: unclaimed, closed when ready
        for name, port in (("http", http_port), ("admin", admin_port)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                assert c.recv(10) == name.encode()
        assert child.wait(10) == 0


COALESCE = r"""
import os, signal, sys
sys.path.insert(0, sys.argv[1])
import sockact
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})  # waited for below: no pause() race
ls = sockact.get_listeners({"http": "127.0.0.1:1"})
os.kill(os.getppid(), signal.SIGHUP)  # two reloads asked for while this upgrade runs
os.kill(os.getppid(), signal.SIGHUP)
sockact.ready()
got = [info for info in (signal.sigtimedwait({signal.SIGHUP}, 20),) if info is not None]
if got and signal.sigtimedwait({signal.SIGHUP}, 0.5) is not None:  # a second one would be a bug
    got.append(1)
sockact.status(f"hups={len(got)}")
"""


def test_reloads_during_an_upgrade_are_coalesced_and_forwarded(tmp_path: object) -> None:
    script = os.path.join(str(tmp_path), "coalesce.py")
    with open(script, "w") as f:
        f.write(COALESCE)
    with sockact.get_listeners({"http": "127.0.0.1:0"}, environ={}) as ls, FakeSystemd() as upstream:
        env = {**child_env(), "NOTIFY_SOCKET": upstream.address}
        with Upgrader(ls, command=[sys.executable, script, ROOT], environ=env) as up:
            up.reload()
            assert up.wait(timeout=30) == "upgraded"
            status = upstream.wait_for(lambda m: (m.get("STATUS") or "").startswith("hups="))
            assert status["STATUS"] == "hups=1" and status.pid == up.successor.pid  # two coalesced into one
            assert up.successor.wait(10) == 0
        assert len([m for m in upstream.messages if "RELOADING" in m]) == 1  # one upgrade, not three


@pytest.mark.parametrize("attempt", range(5))  # a fault-matrix case: five times in CI
def test_stop_signal_aborts_a_starting_successor(tmp_path: object, attempt: int) -> None:
    with sockact.get_listeners({"http": "127.0.0.1:0"}, environ={}) as ls, FakeSystemd() as upstream:
        env = {**child_env(), "NOTIFY_SOCKET": upstream.address}
        command = ["/bin/sh", "-c", 'kill -TERM "$PPID"; exec sleep 60']  # asks its parent to stop, never ready
        with Upgrader(ls, command=command, environ=env, ready_timeout=30) as up:
            up.reload()
            began = time.monotonic()
            assert up.wait(timeout=30) == "stop"
            assert time.monotonic() - began < 20  # a behavioural bound: it did not sit out the 30 s timeout
            assert up.successor is None and up.state == "stopping"
        failed = upstream.wait_for(lambda m: "upgrade failed" in (m.get("STATUS") or ""))
        assert "stop requested" in failed["STATUS"]
        assert upstream.wait_for(lambda m: m.get("STOPPING") == "1")


def test_hooks_run_at_their_moments(setup: tuple) -> None:
    ls, upstream, script = setup
    calls: list[object] = []
    env = {**child_env(), "NOTIFY_SOCKET": upstream.address}
    with Upgrader(
        ls,
        command=[sys.executable, script, ROOT, "serve"],
        environ=env,
        before_spawn=lambda: calls.append("before_spawn"),
        after_handover=lambda child: calls.append(("after_handover", child.pid)),
    ) as up:
        up.reload()
        assert up.wait(timeout=30) == "upgraded"
        assert calls == ["before_spawn", ("after_handover", up.successor.pid)]
        with socket.create_connection(("127.0.0.1", ls["http"].getsockname()[1]), timeout=10) as c:
            c.recv(100)  # let the successor finish
        up.successor.wait(10)
    with Upgrader(ls, environ=env, before_shutdown=lambda: calls.append("before_shutdown")) as up:
        os.kill(os.getpid(), signal.SIGTERM)  # a real signal, recorded by the handler, acted on by wait()
        assert up.wait(timeout=30) == "stop"
    assert calls[-1] == "before_shutdown"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # restored


def test_unconfirmed_hand_over_is_kept(setup: tuple, caplog: pytest.LogCaptureFixture) -> None:
    """A manager that never reads (no barrier acknowledgement) must not make us kill a serving successor."""
    ls, _, script = setup
    with NotifyReceiver() as deaf:
        up = upgrader(ls, deaf, script, "serve")  # type: ignore[arg-type]
        child = up.upgrade()  # waits out the 5 s barrier, then keeps the hand-over
        assert up.state == "draining" and child.poll() is None
        assert "did not confirm" in caplog.text
        with socket.create_connection(("127.0.0.1", ls["http"].getsockname()[1]), timeout=10) as c:
            assert c.recv(100) == f"pid {child.pid}".encode()
        assert child.wait(10) == 0


def test_a_handed_over_process_is_not_killed_by_a_late_reload_signal() -> None:
    """SignalPipe.close(ignore=…): a signal whose default would kill is left ignored (the PID-file
    window in which systemd still names the predecessor); any other previous handler comes back."""
    from sockact._signals import SignalPipe

    before = signal.getsignal(signal.SIGUSR2)
    try:
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        SignalPipe([signal.SIGUSR2]).close(ignore=[signal.SIGUSR2])
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGUSR2)  # ignored: we are still here

        def mine(signum: int, frame: object) -> None:
            pass

        signal.signal(signal.SIGUSR2, mine)
        SignalPipe([signal.SIGUSR2]).close(ignore=[signal.SIGUSR2])
        assert signal.getsignal(signal.SIGUSR2) is mine  # not the default: restored as it was
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        SignalPipe([signal.SIGUSR2]).close()
        assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGUSR2, before)
