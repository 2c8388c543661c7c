"""`sockact reload` against real servers: it returns once the new code serves, fails when the deploy failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from sockact._ask import parse_reply, request_reload
from sockact._loadgen import Load, get
from sockact._spawn import parent_of

from helpers import ROOT, FakeSystemd, child_env, free_port
from reloads import become_subreaper, children_of, reap, serving_pid, sleep_on_owned_connection, start

PY = sys.executable
SOCKACT = [PY, "-m", "sockact"]
HTTP = os.path.join(ROOT, "examples", "http_server.py")


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()  # predecessors' successors come back to us when they exit


def sockact_reload(control: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SOCKACT, "reload", "--control", control, "--timeout", str(timeout)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout + 10,
    )


def stop(pids: list[int]) -> None:
    for pid in pids[-1:]:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    reap(pids)


@pytest.mark.parametrize("mode", ["inprocess", "supervisor"])
def test_back_to_back_reloads_return_when_the_new_code_serves(tmp_path: object, mode: str) -> None:
    """Each `sockact reload` exits 0 only once the new pid serves: the very next connection, made right
    after it returns, is answered by a new pid — every time, under load, with 0 failed requests."""
    port = free_port()
    control = os.path.join(str(tmp_path), "app.control")
    server = [PY, HTTP, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "5"]
    argv = server if mode == "inprocess" else [*SOCKACT, "run", f"--listen=http=127.0.0.1:{port}", "--", *server]
    env = child_env({"SOCKACT_CONTROL": control})
    with FakeSystemd() as systemd:
        env["NOTIFY_SOCKET"] = systemd.address
        proc, first = start(argv, port, env, os.path.join(str(tmp_path), "log"))
        pids = [first]
        try:
            with Load("127.0.0.1", port, workers=2, max_seconds=120) as load:
                for _ in range(8):
                    out = sockact_reload(control)
                    assert out.returncode == 0, out.stderr
                    new = get("127.0.0.1", port)[1]  # right after the return, no waiting
                    assert new not in pids, (new, pids, out.stdout)
                    assert out.stdout.strip() == f"sockact reload: pid {new} serving"
                    pids.append(new)
                result = load.stop()
            assert result.failed == 0, result.errors
        finally:
            stop([proc.pid] if mode == "supervisor" else pids)
            proc.wait(30)
    assert children_of(os.getpid()) == [] or all(p not in children_of(os.getpid()) for p in pids)


@pytest.mark.parametrize(
    ("successor", "reason"),
    [
        (["/bin/sh", "-c", "exit 3"], "exited with status 3 before READY=1"),
        (["/nonexistent/python"], "no such executable"),
        (["/bin/sleep", "60"], "not ready within 1.0 s"),
    ],
)
def test_a_broken_deploy_fails_the_reload_and_the_old_code_serves(
    tmp_path: object, successor: list[str], reason: str
) -> None:
    port = free_port()
    control = os.path.join(str(tmp_path), "app.control")
    argv = [PY, os.path.join(ROOT, "tests", "fault_server.py"), f"127.0.0.1:{port}", json.dumps(successor), "1"]
    with FakeSystemd() as systemd:
        env = child_env({"SOCKACT_CONTROL": control, "NOTIFY_SOCKET": systemd.address})
        proc, old = start(argv, port, env, os.path.join(str(tmp_path), "log"))
        try:
            out = sockact_reload(control)
            assert out.returncode == 1 and reason in out.stderr and "upgrade failed" in out.stderr, out.stderr
            assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
            assert serving_pid(port) == old  # the old code keeps serving
            status = systemd.wait_for(lambda m: "upgrade failed" in (m.get("STATUS") or ""))
            assert status["READY"] == "1" and reason in status["STATUS"]  # StatusText says why
            # …and the channel still works: the next reload is attempted (and fails the same way)
            assert sockact_reload(control).returncode == 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_reloads_asked_for_while_one_starts_get_its_outcome(tmp_path: object) -> None:
    """Three `sockact reload` at once: they join one upgrade and all report its new pid."""
    port = free_port()
    control = os.path.join(str(tmp_path), "app.control")
    env = child_env({"SOCKACT_CONTROL": control})
    proc, old = start([PY, HTTP, "--listen", f"127.0.0.1:{port}"], port, env, os.path.join(str(tmp_path), "log"))
    pids = [old]
    try:
        asks = [
            subprocess.Popen(
                [*SOCKACT, "reload", "--control", control], env=child_env(), stdout=subprocess.PIPE, text=True
            )
            for _ in range(3)
        ]
        outs = [a.communicate(timeout=60)[0].strip() for a in asks]
        assert all(a.returncode == 0 for a in asks), outs
        named = {int(o.removeprefix("sockact reload: pid ").split()[0]) for o in outs}
        assert old not in named and len(named) <= 2, outs  # one upgrade for all (or one more right after)
        pids += sorted(named)
    finally:
        stop(pids)
        proc.wait(30)


def test_no_channel_is_a_clear_failure(tmp_path: object) -> None:
    out = sockact_reload(os.path.join(str(tmp_path), "nothing"), timeout=0.5)
    assert out.returncode == 1 and "nothing serves the reload channel" in out.stderr, out.stderr
    out = sockact_reload(os.path.join(str(tmp_path), "x" * 120), timeout=0.5)  # longer than sun_path
    assert out.returncode == 1 and "path too long" in out.stderr and "None" not in out.stderr, out.stderr
    out = subprocess.run([*SOCKACT, "reload"], env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--control PATH or set SOCKACT_CONTROL" in out.stderr, out.stderr


@pytest.mark.parametrize("appears_at", [None, 2.0])
def test_a_missing_channel_fails_after_the_grace_not_the_timeout(tmp_path: object, appears_at: float | None) -> None:
    """No channel at the path: the reload fails after ABSENT_GRACE (5 s of a clock seam), not after
    its 120 s timeout; one that a starting server binds 2 s in is still reached and answered."""
    import socket

    from sockact._ask import ABSENT_GRACE

    path = os.path.join(str(tmp_path), "control")
    now = [0.0]
    server: list[socket.socket] = []

    def answer_once(listener: socket.socket) -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"ok 42\n")

    def sleep(seconds: float) -> None:  # the seam: time passes only here
        now[0] += seconds
        if appears_at is not None and now[0] >= appears_at and not server:
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(path)
            listener.listen()
            server.append(listener)
            threading.Thread(target=answer_once, args=(listener,), daemon=True).start()

    try:
        ok, text = request_reload(path, 120, clock=lambda: now[0], sleep=sleep)
    finally:
        for listener in server:
            listener.close()
    if appears_at is None:
        assert not ok and f"nothing serves the reload channel {path}" in text and "waited 5 s" in text, text
        assert ABSENT_GRACE <= now[0] < ABSENT_GRACE + 0.1
    else:
        assert (ok, text) == (True, "pid 42 serving")
        assert appears_at <= now[0] < appears_at + 0.1


def test_reply_parsing() -> None:
    assert parse_reply("ok 42\n") == ("ok", "42")
    assert parse_reply("failed upgrade failed: x y") == ("failed", "upgrade failed: x y")
    assert parse_reply("retry\n") == ("retry", "")
    assert parse_reply("gibberish")[0] == "failed"


def test_a_stranger_on_the_path_is_not_a_server(tmp_path: object) -> None:
    """A unix socket at the path that answers nothing sensible: the client fails within its timeout."""
    import socket

    path = os.path.join(str(tmp_path), "ctl")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(path)
        s.listen()
        began = time.monotonic()
        ok, text = request_reload(path, timeout=0.5)
        assert not ok and "no outcome within 0.5 s" in text and time.monotonic() - began < 5


def test_pidfile_mode_returns_while_the_predecessor_drains_and_stop_waits_for_it(tmp_path: object) -> None:
    """PID-file mode: `sockact reload` returns once the new code serves, while the predecessor still
    drains an in-flight request; the PID file names the successor at once, and the successor is the
    manager's child (this test process plays systemd as subreaper) already. A second reload in that
    drain works as well, and a stop of the newest main process waits for every older one to finish:
    with KillMode=mixed systemd would kill what is left once the main process exits."""
    port = free_port()
    control = os.path.join(str(tmp_path), "app.control")
    pidfile = os.path.join(str(tmp_path), "app.pid")
    server = [PY, HTTP, "--listen", f"127.0.0.1:{port}", "--drain-timeout", "30"]
    env = child_env({"SOCKACT_CONTROL": control, "SOCKACT_PIDFILE": pidfile})

    def named() -> int:
        with open(pidfile) as f:
            return int(f.read())

    with FakeSystemd() as systemd:
        env["NOTIFY_SOCKET"] = systemd.address
        proc, first = start(server, port, env, os.path.join(str(tmp_path), "log"))
        pids = [first]
        held: dict[str, object] = {}
        sent = threading.Event()
        holder = threading.Thread(target=sleep_on_owned_connection, args=(port, held, sent), kwargs={"seconds": 6})
        holder.start()
        try:
            assert sent.wait(10) and held.get("owner") == first, held
            for _ in range(2):  # the second while the first predecessor still drains its /sleep
                out = sockact_reload(control)
                assert out.returncode == 0, out.stderr
                new = int(out.stdout.split()[3])
                assert proc.poll() is None, "the reload waited for the first predecessor's exit"
                assert named() == new and parent_of(new) == os.getpid(), (named(), new, parent_of(new))
                told = systemd.wait_for(lambda m, new=new: m.get("MAINPID") == str(new))
                assert told.get("READY") == "1"
                pids.append(new)
            os.kill(pids[-1], signal.SIGTERM)  # systemctl stop: KillMode=mixed signals the main process only
            _, status = os.waitpid(pids[-1], 0)
            assert os.waitstatus_to_exitcode(status) == 0
            assert proc.poll() is not None  # the newest exited only after the first had finished
            holder.join(30)
            assert held.get("status") == 200 and held.get("pid") == first, held
        finally:
            holder.join(30)
            stop(pids)
            proc.wait(30)


@pytest.mark.parametrize("how", ["closes its listeners", "says it stopped accepting"])
def test_ok_comes_once_the_old_generation_lets_go(how: str) -> None:
    """A `sockact reload` past the hand-over is answered `ok` only once this process (the old
    generation, in-process) holds no listening socket, read from /proc, or has said it stopped
    accepting on them (an asyncio server, whose shutdown closes them later)."""
    import socket

    import sockact
    from sockact._control import Request
    from sockact._upgrade import Upgrader

    with sockact.get_listeners({"http": "127.0.0.1:0"}, environ={}) as ls:
        up = Upgrader(ls, environ={}, command=["true"])
        asker, server = socket.socketpair()
        with asker:
            up.askers.confirming.append((Request(server, os.getpid()), None, 4242))
            up._confirm()
            asker.setblocking(False)
            with pytest.raises(BlockingIOError):
                asker.recv(100)  # still accepting: no answer yet
            if how == "closes its listeners":
                ls.close()
            else:
                up.stopped_accepting()
            up._confirm()
            asker.setblocking(True)
            asker.settimeout(5)
            assert asker.recv(100) == b"ok 4242\n"
        up.close()
