"""Every server sockact drives, reloaded under wrk — a client that never retries and counts an EOF or
reset on a keep-alive connection as an error: 16 keep-alive connections and 16 sending
``Connection: close`` across 10 reloads, 0 socket errors, 0 non-2xx, a request in flight across a
reload answered, and every predecessor gone within 5 s while wrk still runs (its clients moved)."""

from __future__ import annotations

import os

import pytest

from sockact._wrk import WrkResult, parse
from sockact.integrations import gunicorn as sockact_gunicorn

from conftest import need_module, need_tool
from helpers import PY, ROOT, child_env, free_port
from reloads import become_subreaper, wrk_across_reloads

RELOADS = 10
SERVERS = ["http_server", "asyncio_server", "uvicorn", "hypercorn", "aiohttp", "tornado", "waitress", "gunicorn"]


@pytest.fixture(scope="module", autouse=True)
def subreaper() -> None:
    become_subreaper()


def _argv(server: str, port: int, tmp_path: str) -> list[str]:
    if server == "gunicorn":
        args = ["--chdir", os.path.join(ROOT, "examples"), "--worker-class", "gthread", "--threads", "4"]
        args += ["--control-socket", os.path.join(tmp_path, "gunicorn.ctl")]
        return sockact_gunicorn.command(
            "waitress_app:app", args, listen=f"127.0.0.1:{port}", drain_timeout=10, python=PY
        )
    name = f"{server}.py" if server.endswith("_server") else f"{server}_app.py"
    return [PY, os.path.join(ROOT, "examples", name), "--listen", f"127.0.0.1:{port}", "--drain-timeout", "10"]


@pytest.mark.parametrize("server", SERVERS)
def test_wrk_sees_no_error_across_reloads(server: str, tmp_path: object) -> None:
    need_tool("wrk")
    if server in ("uvicorn", "hypercorn", "aiohttp", "tornado", "waitress", "gunicorn"):
        need_module(server)
    port = free_port()
    run = wrk_across_reloads(
        _argv(server, port, str(tmp_path)),
        port,
        child_env(),
        os.path.join(str(tmp_path), "log"),
        RELOADS,
        signal_started=server == "gunicorn",
    )
    log = str(run["log"])[-3000:]
    for kind in ("keepalive", "close"):
        result = run[kind]
        assert isinstance(result, WrkResult)
        assert result.socket_errors == 0 and result.non2xx == 0, (kind, result.describe(), run["output"], log)
        assert result.requests > RELOADS * 20, (kind, result.describe())  # it served all along
    pids = run["pids"]
    assert isinstance(pids, list) and len(set(pids)) == RELOADS + 1, pids
    assert run["still_draining"] == [], ("predecessors kept their clients while wrk ran", run["still_draining"], log)
    across = run["across_reload"]
    assert isinstance(across, dict)
    assert across.get("status") == 200 and across.get("pid") == across.get("owner"), (across, log)
    assert across.get("next") in ("closed", 200), (across, log)
    bad = {pid: code for pid, code in dict(run["codes"]).items() if code not in (0, None)}  # type: ignore[call-overload]
    assert not bad, (bad, log)


WRK_CLEAN = """Running 1m test @ http://127.0.0.1:8000/
  1 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.20ms  300.00us   9.00ms   80.00%
  1234 requests in 1.50s, 180.00KB read
Requests/sec:    822.00
"""
WRK_ERRORS = WRK_CLEAN.replace(
    "Requests/sec",
    "  Socket errors: connect 0, read 16, write 1, timeout 2\n  Non-2xx or 3xx responses: 3\nRequests/sec",
)


def test_wrk_summary_is_read_strictly() -> None:
    assert parse(WRK_CLEAN) == WrkResult(requests=1234)
    errors = parse(WRK_ERRORS)
    assert (errors.requests, errors.read, errors.write, errors.timeout, errors.non2xx) == (1234, 16, 1, 2, 3)
    assert errors.failed == 22
    with pytest.raises(ValueError, match="requests in"):
        parse("unable to connect to 127.0.0.1:8000 Connection refused\n")  # nothing served: no summary
    with pytest.raises(ValueError, match="socket errors"):
        parse(WRK_CLEAN + "  Socket errors: connect 1\n")
    assert parse(WRK_CLEAN.replace("1234 requests", "0 requests")).requests == 0
