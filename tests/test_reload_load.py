"""Zero-downtime reloads of the example servers under load: standalone and under systemd-socket-activate."""

from __future__ import annotations

import os

import pytest

from conftest import need_tool
from helpers import PY, ROOT, child_env, free_port
from reloads import assert_zero_downtime, become_subreaper, reloads_under_load

RELOADS = 20
EXAMPLES = ["http_server.py", "asyncio_server.py"]


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


@pytest.mark.parametrize("example", EXAMPLES)
@pytest.mark.parametrize("mode", ["standalone", "socket-activate"])
def test_reloads_under_load(example: str, mode: str, tmp_path: object) -> None:
    port = free_port()
    server = [PY, os.path.join(ROOT, "examples", example), "--listen", f"127.0.0.1:{port}", "--drain-timeout", "10"]
    if mode == "socket-activate":
        tool = need_tool("systemd-socket-activate")
        server = [tool, "-l", f"127.0.0.1:{port}", "--fdname=http", "-E", "PYTHONPATH", *server]
    run = reloads_under_load(server, port, child_env(), os.path.join(str(tmp_path), "server.log"), RELOADS)
    assert_zero_downtime(run, RELOADS)
    assert str(run["output"]).count("upgraded; drained") == RELOADS


def test_the_load_tells_the_first_answer_from_a_new_pid(tmp_path: object) -> None:
    """``Load.expect_new``/``wait_new``, which the reload bench waits on instead of polling: nothing
    while only the known pid answers; the successor's pid once it answers after a SIGHUP."""
    import signal
    import subprocess

    from sockact import NotifyReceiver
    from sockact._loadgen import Load

    port = free_port()
    server = [PY, os.path.join(ROOT, "examples", "http_server.py"), "--listen", f"127.0.0.1:{port}"]
    successor = 0
    with NotifyReceiver() as receiver:
        proc = subprocess.Popen(server, env=child_env({"NOTIFY_SOCKET": receiver.address}), stderr=subprocess.DEVNULL)
        try:
            message = receiver.receive(timeout=30)
            assert message is not None and message.get("READY") == "1", message
            with Load("127.0.0.1", port, workers=2, max_seconds=60) as load:
                load.expect_new({proc.pid})
                assert load.wait_new(0.3) == 0  # 0.3 s of answers, all from the known pid
                proc.send_signal(signal.SIGHUP)
                successor = load.wait_new(30)
                assert successor not in (0, proc.pid)
                result = load.stop()
            assert result.failed == 0 and result.pids[successor] > 0, result.errors
            assert proc.wait(30) == 0  # the predecessor drained and exited
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if successor:  # our child once its parent exited (this module's process is a subreaper)
                os.kill(successor, signal.SIGTERM)
                os.waitpid(successor, 0)
