"""Zero-downtime reloads of the example servers under load: standalone and under systemd-socket-activate."""

from __future__ import annotations

import os
import threading

import pytest

from sockact._loadgen import Load

from conftest import need_tool
from helpers import PY, ROOT, child_env, free_port
from reloads import become_subreaper, reap, reload, sleep_on_owned_connection, start

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
    log = os.path.join(str(tmp_path), "server.log")
    proc, pid = start(server, port, child_env(), log)
    pids = [pid]
    sleep_result: dict[str, object] = {}
    try:
        with Load("127.0.0.1", port, workers=4, max_seconds=150) as load:
            for i in range(RELOADS):
                if i == 3:  # an in-flight request across a reload finishes on the old pid
                    connected = threading.Event()
                    t = threading.Thread(target=sleep_on_owned_connection, args=(port, sleep_result, connected))
                    t.start()
                    assert connected.wait(10)
                pids.append(reload(port, pids))
            result = load.stop()
        t.join(20)
    finally:
        for p in pids[-1:]:
            try:
                os.kill(p, 15)
            except ProcessLookupError:
                pass
        codes = reap([proc.pid, *pids[1:]])
        proc.wait(10)
    with open(log) as f:
        output = f.read()
    assert result.failed == 0, (result.errors, output[-3000:])
    assert len(set(pids)) == RELOADS + 1, pids  # a new pid after each reload
    assert result.requests > RELOADS * 5
    # The connection's owner is the server of the moment (or a predecessor still closing its accept
    # loop); whichever it was, the request in flight across the reload finished there, with a 200.
    assert sleep_result.get("status") == 200 and sleep_result.get("pid") == sleep_result.get("owner"), sleep_result
    assert sleep_result["owner"] in pids[:4], (sleep_result, pids)
    bad = {pid: code for pid, code in codes.items() if code not in (0, None)}
    assert not bad, (bad, output[-3000:])
    assert output.count("upgraded; drained") == RELOADS
