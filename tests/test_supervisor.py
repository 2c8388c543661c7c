"""`sockact run`: a supervisor that stays the main process and swaps any program behind the sockets."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest

from sockact._loadgen import Load, _read_response
from sockact._priority import START_NICE, lowered_nice

from conftest import need_tool
from helpers import ROOT, FakeSystemd, child_env, free_port, until
from reloads import become_subreaper, children_of, serving_pid

PY = sys.executable
PLAIN = os.path.join(ROOT, "tests", "plain_server.py")


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


class Run:
    """`python -m sockact run …` with a FakeSystemd upstream."""

    def __init__(self, tmp_path: object, command: list[str], *options: str) -> None:
        self.port = free_port()
        self.terminated = False
        self.mode = os.path.join(str(tmp_path), "mode")
        self.set_mode("ok")
        self.systemd = FakeSystemd()
        argv = [
            PY,
            "-m",
            "sockact",
            "run",
            "--listen",
            f"http=127.0.0.1:{self.port}",
            *options,
            "--",
            *[c.replace("MODE", self.mode) for c in command],
        ]
        self.proc = subprocess.Popen(
            argv,
            env={**child_env(), "NOTIFY_SOCKET": self.systemd.address},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def set_mode(self, mode: str) -> None:
        with open(self.mode, "w") as f:
            f.write(mode)

    def ready(self) -> int:
        self.systemd.wait_for(lambda m: m.get("READY") == "1" and m.pid == self.proc.pid)
        return serving_pid(self.port)

    def terminate(self) -> None:
        if not self.terminated:
            self.terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.terminate()
        out, _ = self.proc.communicate(timeout=60)
        self.systemd.close()
        return out


def test_reloads_under_load_keep_one_main_pid(tmp_path: object) -> None:
    run = Run(tmp_path, [PY, PLAIN, "MODE"])
    try:
        pids = [run.ready()]
        with Load("127.0.0.1", run.port, workers=4, max_seconds=120) as load:
            for _ in range(20):
                os.kill(run.proc.pid, signal.SIGHUP)  # always the supervisor: it stays the main process
                pids.append(serving_pid(run.port, timeout=30, not_pids=pids))
            result = load.stop()
        assert result.failed == 0, result.errors
        assert len(set(pids)) == 21 and run.proc.pid not in pids
        # the new child may answer before sockact has passed its READY=1 on: wait for the 21st
        until(lambda: sum(m.get("READY") == "1" for m in run.systemd.messages) >= 21, 30)
        assert all(m.pid == run.proc.pid for m in run.systemd.messages)  # systemd only ever hears sockact
        assert all("MONOTONIC_USEC" in m for m in run.systemd.messages if "RELOADING" in m)
    finally:
        out = run.stop()
    assert run.proc.returncode == 0, out
    assert children_of(run.proc.pid) == []


def test_a_child_that_never_gets_ready_leaves_the_old_one_serving(tmp_path: object) -> None:
    run = Run(tmp_path, [PY, PLAIN, "MODE"], "--ready-timeout", "1")
    try:
        old = run.ready()
        run.set_mode("hang")
        with Load("127.0.0.1", run.port, workers=4, max_seconds=60) as load:
            os.kill(run.proc.pid, signal.SIGHUP)
            status = run.systemd.wait_for(lambda m: "upgrade failed" in (m.get("STATUS") or ""))
            assert f"pid {old} still serving" in status["STATUS"] and "not ready within 1.0 s" in status["STATUS"]
            assert status["READY"] == "1"
            result = load.stop()
        assert result.failed == 0 and set(result.pids) == {old}, result.errors
    finally:
        out = run.stop()
    assert run.proc.returncode == 0, out


def test_a_crashed_child_is_restarted_and_nothing_is_refused(tmp_path: object) -> None:
    run = Run(tmp_path, [PY, PLAIN, "MODE"])
    try:
        first = run.ready()
        with Load("127.0.0.1", run.port, workers=4, max_seconds=60) as load:
            os.kill(first, signal.SIGKILL)
            status = run.systemd.wait_for(lambda m: "exited unexpectedly" in (m.get("STATUS") or ""))
            assert f"child pid {first} exited unexpectedly with signal SIGKILL" in status["STATUS"]
            second = serving_pid(run.port, not_pids=[first])
            result = load.stop()
        # Requests inside the killed process die with it; every other one waited in the backlog of the
        # socket sockact kept open: none was refused.
        assert result.failed <= 4 and not any("refused" in e.lower() for e in result.errors), result.errors
        assert second != first
    finally:
        run.stop()


def test_sigterm_drains_and_exits_zero(tmp_path: object) -> None:
    run = Run(tmp_path, [PY, PLAIN, "MODE"])
    held: dict[str, object] = {}
    try:
        child = run.ready()
        sock = socket.create_connection(("127.0.0.1", run.port), timeout=30)
        sock.sendall(b"GET /sleep?seconds=1.5 HTTP/1.0\r\n\r\n")

        def read() -> None:
            held["reply"] = _read_response(sock)

        reader = threading.Thread(target=read)
        reader.start()
        run.systemd.wait_for(lambda m: True)  # the READY above is there; now stop
        serving_pid(run.port)  # the sleeping request has surely been accepted by now (same accept queue)
        run.terminate()
        reader.join(30)
    finally:
        out = run.stop()
    assert held["reply"][0] == 200 and held["reply"][1] == f"pid {child}\n".encode()
    assert run.proc.returncode == 0, out
    assert any(m.get("STOPPING") == "1" for m in run.systemd.messages)


def _nices(pid: int) -> dict[int, int]:
    """Each thread's nice value; a thread that ends meanwhile (one per request here) is left out."""
    nices = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            nices[int(tid)] = os.getpriority(os.PRIO_PROCESS, int(tid))
        except ProcessLookupError:
            pass
    return nices


def test_a_reload_s_child_starts_nicer_and_gets_the_priority_back_when_ready(tmp_path: object) -> None:
    """The first child starts at full priority (nothing else serves); a reload's starts nicer while
    the old one serves, and every thread it started before READY=1 gets the supervisor's value back."""
    base, niced = os.getpriority(os.PRIO_PROCESS, 0), lowered_nice(START_NICE)
    if niced is None:
        pytest.skip("this runner could not give a raised nice value back (no CAP_SYS_NICE, RLIMIT_NICE < 20)")
    record = os.path.join(str(tmp_path), "nice")
    # the server, run by a few lines that first note its nice value (the child's, raised right after
    # its spawn: what its interpreter's start-up runs at)
    note = "import os, runpy, sys; open(sys.argv[1], 'a').write(f'{os.getpriority(os.PRIO_PROCESS, 0)}\\n'); "
    note += "sys.argv[:] = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')"
    run = Run(tmp_path, [PY, "-c", note, record, PLAIN, "MODE"])
    try:
        first = run.ready()
        os.kill(run.proc.pid, signal.SIGHUP)
        until(lambda: sum(m.get("READY") == "1" for m in run.systemd.messages) >= 2, 30)  # after the hand-over
        second = serving_pid(run.port, not_pids=[first])
        nices = _nices(second)
        assert len(nices) >= 2  # the server's thread started before READY=1
        assert set(nices.values()) == {base}
    finally:
        out = run.stop()
    assert run.proc.returncode == 0, out
    with open(record) as f:
        assert [int(line) for line in f] == [base, niced[0]]


def test_a_starting_child_gets_its_priority_back_when_the_serving_one_dies(tmp_path: object) -> None:
    """Nicer only while another child serves: once the serving one crashes, the child still starting is
    all there is, and gets full priority at once (not at its READY=1)."""
    base, niced = os.getpriority(os.PRIO_PROCESS, 0), lowered_nice(START_NICE)
    if niced is None:
        pytest.skip("this runner could not give a raised nice value back (no CAP_SYS_NICE, RLIMIT_NICE < 20)")
    run = Run(tmp_path, [PY, PLAIN, "MODE"])
    try:
        first = run.ready()
        run.set_mode("hang")  # the reload's child never gets ready
        os.kill(run.proc.pid, signal.SIGHUP)
        until(lambda: len(children_of(run.proc.pid)) == 2, 30)
        (starting,) = [pid for pid in children_of(run.proc.pid) if pid != first]
        until(lambda: os.getpriority(os.PRIO_PROCESS, starting) == niced[0], 30)
        os.kill(first, signal.SIGKILL)
        until(lambda: os.getpriority(os.PRIO_PROCESS, starting) == base, 30, lambda: run.systemd.messages[-3:])
    finally:
        run.stop()


@pytest.mark.peer
def test_a_shell_script_child_with_systemd_notify(tmp_path: object) -> None:
    need_tool("systemd-notify")
    run = Run(tmp_path, ["/bin/sh", os.path.join(ROOT, "tests", "shell_child.sh"), PY, "MODE"])
    try:
        pid = run.ready()
        status = run.systemd.wait_for(lambda m: (m.get("STATUS") or "").startswith("serving: child pid"))
        assert status["STATUS"] == f"serving: child pid {pid}"
        os.kill(run.proc.pid, signal.SIGHUP)
        assert serving_pid(run.port, not_pids=[pid]) != pid
    finally:
        out = run.stop()
    assert run.proc.returncode == 0, out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "http=nonsense", "--", "true"], "invalid address 'nonsense'"),
        (["--", "/nonexistent/program"], "command not found"),
        (["--listen", "http=127.0.0.1:0"], "no command given"),
        (["--listen", "noequals", "--", "true"], "use NAME=ADDRESS"),
        (["--ready", "soon", "--", "true"], "use notify, spawn or a number"),
        (["--reload-signal", "NOPE", "--", "true"], "unknown signal"),
        (["--start-nice", "20", "--", "true"], "'20': give a nice increment from 0 (none) to 19"),
    ],
)
def test_cli_errors_are_one_line(args: list[str], message: str) -> None:
    out = subprocess.run(
        [PY, "-m", "sockact", "run", *args], env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2 and message in out.stderr and "Traceback" not in out.stderr, out.stderr


def test_port_in_use_is_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = subprocess.run(
            [PY, "-m", "sockact", "run", "--listen", f"http=127.0.0.1:{port}", "--", "true"],
            env=child_env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert out.returncode == 2 and "in use" in out.stderr and "Traceback" not in out.stderr, out.stderr
