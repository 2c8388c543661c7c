"""The operator's contract of `systemctl reload`, under real systemd 252 and 257, for the units
`sockact units` writes (both modes): it returns when the new code serves, fails when the deploy
failed, never hits a stale $MAINPID; stop drains; a SIGKILLed main process is noticed.

The app is a deploy directory of its own (a copy of examples/http_server.py), so a broken deploy is
what it is in production: the file on disk changes, the next reload starts the new code.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import threading
import time

import pytest

from sockact._loadgen import Load, get

from conftest import boot_box
from helpers import ROOT, free_port
from reloads import sleep_on_owned_connection
from sandbox import Sandbox
from units import generated as generated_units

RELOADS = 30
#: In the box: a process's RLIMIT_NICE soft limit and the nice values of its threads.
NICE_PROBE = """
import os, sys
pid = int(sys.argv[1])
nices = {os.getpriority(os.PRIO_PROCESS, int(t)) for t in os.listdir(f"/proc/{pid}/task")}
with open(f"/proc/{pid}/limits") as f:  # proc(5): "Max nice priority  SOFT  HARD"
    soft = [line.split()[3] for line in f if line.startswith("Max nice priority")][0]
print(soft, *sorted(nices))
"""
MODES = ("inprocess", "supervise")


def sandbox_can_raise_limits(box: Sandbox) -> bool:
    """Whether the box's systemd holds CAP_SYS_RESOURCE (capabilities(7), bit 24), which raising a
    hard limit (LimitNICE=) takes."""
    status = box.run("cat", "/proc/1/status").stdout
    effective = next(line.split()[1] for line in status.splitlines() if line.startswith("CapEff:"))
    return bool(int(effective, 16) >> 24 & 1)


def deploy_dir(workdir: str, mode: str) -> str:
    path = os.path.join(workdir, f"deploy-{mode}")
    os.makedirs(path, exist_ok=True)
    for name in ("http_server.py", "_common.py"):
        source = os.path.join(ROOT, "examples", name)
        if os.path.exists(source):
            shutil.copy(source, os.path.join(path, "app.py" if name == "http_server.py" else name))
    return path


@pytest.fixture(scope="module")
def box(
    request: pytest.FixtureRequest, box_version: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Sandbox, dict[str, tuple[str, int, str]]]:
    workdir = str(tmp_path_factory.mktemp(f"contract{box_version}"))
    units: dict[str, str] = {}
    apps = {}
    for mode in MODES:
        name, port, app = f"contract-{mode}", free_port(), deploy_dir(workdir, mode)
        log = os.path.join(workdir, f"{name}.log")
        generated = generated_units(name, port, mode, f"{app}/app.py", log, extra="RestartSec=100ms\n")
        units.update(generated)
        apps[mode] = (name, port, app)
    with boot_box(request, box_version, workdir, units) as sandbox:
        yield sandbox, apps


def why(box: Sandbox, name: str) -> str:
    log = os.path.join(box.workdir, f"{name}.log")
    text = pathlib.Path(log).read_text()[-3000:] if os.path.exists(log) else ""
    status = box.systemctl("status", f"{name}.service", check=False).stdout
    return f"--- log\n{text}\n--- status\n{status}"


def main_pid_serving(box: Sandbox, name: str, port: int, mode: str, timeout: float = 30) -> int:
    """Once systemd's MainPID is the serving process (in-process) or sockact run (supervise): that pid."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        main = int(box.show(f"{name}.service", "MainPID") or 0)
        serving = get("127.0.0.1", port)[1]
        if main and (main == serving or mode == "supervise"):
            return main
        time.sleep(0.02)
    raise TimeoutError(f"MainPID never settled\n{why(box, name)}")


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_systemctl_reload_can_be_trusted(box: tuple, mode: str) -> None:
    sandbox, apps = box
    name, port, app = apps[mode]
    service = f"{name}.service"
    pids = [sandbox.activate(name, port)]  # the first connection activates the service
    assert sandbox.uid(pids[0]) != 0  # a hardened unit: a dynamic user

    # 30 back-to-back reloads under load: each exits 0, and the very next connection is new code.
    with Load("127.0.0.1", port, workers=4, max_seconds=300) as load:
        for i in range(RELOADS):
            out = sandbox.systemctl("reload", service, check=False)
            assert out.returncode == 0, (i, out.stderr, why(sandbox, name))
            pid = get("127.0.0.1", port)[1]
            assert pid not in pids, (i, pid, pids, why(sandbox, name))
            pids.append(pid)
        result = load.stop()
    assert result.failed == 0, (result.errors, why(sandbox, name))
    assert sandbox.show(service, "ActiveState") == "active"
    # Each successor started nicer while the old code served, and got nice 0 back on every thread:
    # LimitNICE=+0 lets the dynamic user go back to 0 (RLIMIT_NICE 20), and nothing warned it could not.
    # A systemd without CAP_SYS_RESOURCE (this VM's root lacks it) cannot raise the hard limit: the
    # service then keeps RLIMIT_NICE 0, and its successors start at full priority instead.
    probe = sandbox.run("python3", "-c", NICE_PROBE, str(pids[-1]), check=False)
    limit = "20" if sandbox_can_raise_limits(sandbox) else "0"
    assert probe.stdout.split() == [limit, "0"], (probe.stderr, why(sandbox, name))
    assert "keeps the nice value" not in why(sandbox, name)
    # systemd adopted each successor as its own child: never "Supervising process N which is not our child"
    assert "not our child" not in sandbox.output(), sandbox.output()[-3000:]

    # A broken deploy: the reload fails, the old code keeps serving, StatusText and the journal say why.
    good = pathlib.Path(f"{app}/app.py").read_text()
    with open(f"{app}/app.py", "w") as f:
        f.write("this is not python(\n" + good)
    out = sandbox.systemctl("reload", service, check=False)
    assert out.returncode != 0, (out.stdout, why(sandbox, name))
    assert get("127.0.0.1", port)[1] == pids[-1]
    status = sandbox.show(service, "StatusText")
    assert "upgrade failed" in status and "exited with status 1 before READY=1" in status, status
    assert sandbox.show(service, "ActiveState") == "active"

    # The fixed deploy: exit 0 and a new pid.
    with open(f"{app}/app.py", "w") as f:
        f.write(good)
    out = sandbox.systemctl("reload", service, check=False)
    assert out.returncode == 0, (out.stderr, why(sandbox, name))
    pid = get("127.0.0.1", port)[1]
    assert pid not in pids
    pids.append(pid)

    # A SIGKILLed main process is noticed: Restart=on-failure brings the service back.
    main = main_pid_serving(sandbox, name, port, mode)
    restarts = int(sandbox.show(service, "NRestarts"))
    sandbox.run("kill", "-9", str(main))
    deadline = time.monotonic() + 30
    while int(sandbox.show(service, "NRestarts")) != restarts + 1 or sandbox.show(service, "ActiveState") != "active":
        assert time.monotonic() < deadline, why(sandbox, name)
        time.sleep(0.05)
    assert get("127.0.0.1", port, timeout=30)[0] == 200

    # `systemctl stop` with a request in flight: it completes with 200, then the unit is inactive.
    main_pid_serving(sandbox, name, port, mode)
    held: dict[str, object] = {}
    sent = threading.Event()
    holder = threading.Thread(target=sleep_on_owned_connection, args=(port, held, sent))
    holder.start()
    assert sent.wait(10)
    sandbox.systemctl("stop", service)
    holder.join(30)
    assert held.get("status") == 200, (held, why(sandbox, name))
    assert sandbox.show(service, "Result") == "success", why(sandbox, name)


@pytest.mark.peer
@pytest.mark.parametrize("mode", MODES)
def test_a_reload_while_the_predecessor_drains_or_exits(box: tuple, mode: str) -> None:
    """Reloads issued while the previous predecessor still drains an in-flight request, and in the
    instant it exits (looped until that instant is hit), all succeed: no stale pid is signalled."""
    sandbox, apps = box
    name, port, _ = apps[mode]
    service = f"{name}.service"
    sandbox.activate(name, port)
    held: dict[str, object] = {}
    sent = threading.Event()
    holder = threading.Thread(target=sleep_on_owned_connection, args=(port, held, sent))
    holder.start()
    assert sent.wait(10)
    first = sandbox.systemctl("reload", service, check=False)  # its predecessor now drains the /sleep
    second = sandbox.systemctl("reload", service, check=False)  # while that predecessor is still there
    holder.join(30)
    assert first.returncode == 0 and second.returncode == 0, (first.stderr, second.stderr, why(sandbox, name))
    assert held.get("status") == 200
    # In the instant a predecessor exits: reload, then reload again at once, many times (bounded).
    for _ in range(10):
        out = sandbox.systemctl("reload", service, check=False)
        assert out.returncode == 0, (out.stderr, why(sandbox, name))
    sandbox.systemctl("stop", service)
