"""End to end: ``sockact units NAME --listen … -- sockact serve uvicorn …`` — the units written by the
real command, booted under the real systemd 252 (tests/sandbox.py; uvicorn is installed on the host's
interpreter only): the first connection activates the service, 3 `systemctl reload` under load with
0 failed requests and a new MainPID each time, and `systemctl stop` drains a request in flight."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from test_systemd_sandbox import logs, reload_under_load, stop_drains

from conftest import boot_box, need_module, need_tool
from helpers import ROOT, child_env, free_port
from sandbox import Sandbox
from units import as_root_with_this_venv

NAME = "serve-uvicorn"
RELOADS = 3


def written_units(port: int, workdir: str) -> dict[str, str]:
    """What `sockact units` writes for `sockact serve uvicorn` (found on PATH, as a user's would be),
    verified by systemd-analyze; its output appended to a log the test reads."""
    need_tool("systemd-analyze")
    bindir = os.path.dirname(sys.executable)
    assert shutil.which("sockact", path=bindir), f"no sockact console script beside {sys.executable}"
    out_dir = os.path.join(workdir, "written")
    serve = ["sockact", "serve", "uvicorn", "serve_apps:asgi", "--app-dir", os.path.join(ROOT, "tests")]
    serve += ["--listen", f"http=127.0.0.1:{port}", "--drain-timeout", "10", "--option", "access_log=false"]
    args = ["units", NAME, "--listen", f"http=127.0.0.1:{port}", "--drain-timeout", "10", "--out", out_dir]
    result = subprocess.run(
        [sys.executable, "-m", "sockact", *args, "--", *serve],
        env=child_env({"PATH": bindir + os.pathsep + os.environ.get("PATH", "")}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemd-analyze verify: clean" in result.stdout, result.stdout
    units = {}
    for filename in sorted(os.listdir(out_dir)):
        with open(os.path.join(out_dir, filename)) as f:
            units[filename] = f.read()
    service = units[f"{NAME}.service"]
    assert f"ExecStart={os.path.join(bindir, 'sockact')} serve uvicorn serve_apps:asgi" in service, service
    assert "DynamicUser=yes" in service and "ProtectSystem=strict" in service  # hardened as written
    service = as_root_with_this_venv(service)  # uvicorn is in this venv, under /root
    log = os.path.join(workdir, f"{NAME}.log")
    units[f"{NAME}.service"] = service.replace(
        "[Service]\n", f"[Service]\nStandardOutput=append:{log}\nStandardError=append:{log}\n"
    )
    return units


@pytest.mark.peer
def test_units_for_sockact_serve_boot_reload_and_stop(request: pytest.FixtureRequest, tmp_path: object) -> None:
    need_module("uvicorn")
    workdir = str(tmp_path)
    port = free_port()
    box: Sandbox
    with boot_box(request, "252", workdir, written_units(port, workdir)) as box:
        first = box.activate(NAME, port)  # the first connection starts the service and is served
        service = f"{NAME}.service"
        assert box.show(service, "ActiveState") == "active", logs(box, NAME)
        assert box.show(service, "MainPID") == str(first), logs(box, NAME)
        main_pids = [first]
        reload_under_load(box, NAME, port, RELOADS, main_pids)  # 0 failed, MainPID follows each successor
        stop_drains(box, NAME, port)
        with open(os.path.join(workdir, f"{NAME}.log")) as f:
            log = f.read()
    assert log.count("upgraded; drained") == RELOADS and log.count("stop; drained") == 1, log[-3000:]
