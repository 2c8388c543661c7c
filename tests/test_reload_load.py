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
