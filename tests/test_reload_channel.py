"""`sockact reload` against real servers: it returns once the new code serves, fails when the deploy failed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from sockact._ask import parse_reply, request_reload
from sockact._loadgen import Load, get

from helpers import ROOT, FakeSystemd, child_env, free_port
from reloads import become_subreaper, children_of, reap, serving_pid, start

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
    out = subprocess.run([*SOCKACT, "reload"], env=child_env(), capture_output=True, text=True, timeout=30)
    assert out.returncode == 2 and "--control PATH or set SOCKACT_CONTROL" in out.stderr, out.stderr


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
