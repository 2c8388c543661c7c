"""Under a real systemd booted for the test: activation, `systemctl reload` under load, stop, SIGKILL —
on each box (tests/sandbox.py): the host's systemd 252 and Debian 13's 257.

Pids here are as the sandbox sees them (its own pid namespace): the server reports os.getpid() from
inside, and systemctl's MainPID is in the same namespace. The 257 box runs the services on trixie's
python3 with only the stdlib and sockact: the shipped units of third-party servers (uvicorn, hypercorn,
aiohttp, tornado, waitress, gunicorn) run on the 252 box only.
"""

from __future__ import annotations

import os
import pathlib
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from sockact._loadgen import Load, get

from conftest import boot_box
from helpers import ROOT, free_port
from reloads import sleep_on_owned_connection
from sandbox import PYTHON, Sandbox
from units import STDLIB_ONLY, localized, shipped_pairs, supervised
from units import generated as generated_units

RELOADS = 10
# (hand-over, NotifyAccess=): the recommended PID-file units and plain Type=notify units with MAINPID=
CASES = [("pidfile", "main"), ("pidfile", "all"), ("mainpid", "main"), ("mainpid", "all")]


def unit_pair(name: str, port: int, handover: str, notify_access: str, log: str, python: str) -> dict[str, str]:
    server = f"{python} {ROOT}/examples/http_server.py --listen 127.0.0.1:{port} --drain-timeout 10"
    service = [
        "[Unit]",
        f"Description=sockact sandbox {name}",
        "[Service]",
        "Type=notify",
        f"NotifyAccess={notify_access}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "KillMode=mixed",
        "TimeoutStopSec=20",
        "Restart=on-failure",
        "RestartSec=100ms",
        f"Environment=PYTHONPATH={ROOT}",
        f"StandardOutput=append:{log}",
        f"StandardError=append:{log}",
    ]
    if handover == "pidfile":
        service += [f"PIDFile=/run/{name}.pid", f"ExecStart={server} --pidfile /run/{name}.pid"]
    else:
        service += [f"ExecStart={server}"]
    socket_unit = ["[Socket]", f"ListenStream=127.0.0.1:{port}", "FileDescriptorName=http"]
    return {f"{name}.service": "\n".join(service) + "\n", f"{name}.socket": "\n".join(socket_unit) + "\n"}


@pytest.fixture(scope="module")
def sandbox(
    request: pytest.FixtureRequest, box_version: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Sandbox, dict[tuple[str, str], tuple[str, int]]]:
    python = PYTHON[box_version]
    workdir = str(tmp_path_factory.mktemp(f"systemd{box_version}"))
    units: dict[str, str] = {}
    apps = {}
    for handover, access in CASES:
        name, port = f"app-{handover}-{access}", free_port()
        units.update(unit_pair(name, port, handover, access, os.path.join(workdir, f"{name}.log"), python))
        apps[(handover, access)] = (name, port)
    store_port = free_port()
    units["store.service"] = (
        "\n".join(
            [
                "[Service]",
                "Type=notify",
                "FileDescriptorStoreMax=4",
                "Environment=FDSTORE=4",
                "Restart=on-failure",
                "RestartSec=100ms",
                f"Environment=PYTHONPATH={ROOT}",
                f"ExecStart={python} {ROOT}/examples/http_server.py --listen 127.0.0.1:{store_port}",
                f"StandardOutput=append:{workdir}/store.log",
                f"StandardError=append:{workdir}/store.log",
            ]
        )
        + "\n"
    )
    apps[("store", "")] = ("store", store_port)
    for shipped in shipped_pairs():
        if box_version == "257" and shipped not in STDLIB_ONLY:
            continue  # its server is not installed in the trixie box
        port = free_port()
        units.update(localized(shipped, port, os.path.join(workdir, f"{shipped}.log"), python))
        apps[("shipped", shipped)] = (shipped, port)
    for mode in ("inprocess", "supervise"):
        name, port = f"gen-{mode}", free_port()
        log = os.path.join(workdir, f"{name}.log")
        generated = generated_units(name, port, mode, f"{ROOT}/examples/http_server.py", log)
        units.update(generated)
        apps[("generated", mode)] = (name, port)
    for probe in ("stamped", "bare"):  # Type=notify-reload probes of systemd itself; 2 s reload timeout
        argv = f"{python} {ROOT}/tests/notify_reload_probe.py" + (" --bare" if probe == "bare" else "")
        units[f"nr-{probe}.service"] = f"[Service]\nType=notify-reload\nTimeoutStartSec=2\nExecStart={argv}\n"
    for handover, access in (("mainpid", "all"), ("pidfile", "main")):  # one hand-over, then stop
        name, port = f"stop-{handover}", free_port()
        units.update(unit_pair(name, port, handover, access, os.path.join(workdir, f"{name}.log"), python))
        apps[("stop", handover)] = (name, port)
    if ROOT not in sys.path:  # bench/ beside tests/: its unit pair and timer are reused here
        sys.path.insert(0, ROOT)
    from bench.boxes import unit_pair as bench_units

    apps[("bench", "")] = ("bench-inprocess", free_port())
    units.update(bench_units("bench-inprocess", apps[("bench", "")][1], python, os.path.join(workdir, "bench.log")))
    with boot_box(request, box_version, workdir, units) as box:
        for (kind, _), (name, _) in apps.items():
            if kind not in ("store", "shipped", "generated", "bench"):
                box.systemctl("start", f"{name}.socket")
        yield box, apps


def logs(box: Sandbox, name: str) -> str:
    path = os.path.join(box.workdir, f"{name}.log")
    text = pathlib.Path(path).read_text() if os.path.exists(path) else ""
    status = box.systemctl("status", f"{name}.service", check=False).stdout
    return f"--- {name}.log\n{text[-3000:]}\n--- status\n{status}\n--- systemd\n{box.output()[-2000:]}"


def settle(box: Sandbox, name: str, port: int, old: set[int], timeout: float = 30) -> int:
    """Wait (bounded) until a new pid serves and systemd's MainPID names it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, pid = get("127.0.0.1", port, timeout=5)
        except OSError:
            pid = 0
        if pid and pid not in old and box.show(f"{name}.service", "MainPID") == str(pid):
            return pid
        time.sleep(0.02)
    raise TimeoutError(f"no new main pid for {name}\n{logs(box, name)}")


@pytest.mark.peer
@pytest.mark.parametrize(("handover", "access"), CASES)
def test_reloads_under_real_systemd(sandbox: tuple, handover: str, access: str) -> None:
    box, apps = sandbox
    name, port = apps[(handover, access)]
    service = f"{name}.service"
    assert box.show(service, "ActiveState") == "inactive"
    first = box.activate(name, port)  # the first connection activates the service and is served
    assert box.show(service, "ActiveState") == "active", logs(box, name)
    main_pids = [first]
    assert box.show(service, "MainPID") == str(first)
    reload_under_load(box, name, port, RELOADS, main_pids)
    if handover != "pidfile":
        return  # plain Type=notify units: reloads are clean; full supervision needs the PID file (PROTOCOL.md)

    # MainPID follows at the hand-over, while the predecessor still drains: the next reload's
    # `kill -HUP $MAINPID` reaches the new main process itself, systemd's own child from the start.
    held: dict[str, object] = {}
    sent = threading.Event()
    draining = main_pids[-1]
    holder = threading.Thread(target=sleep_on_owned_connection, args=(port, held, sent), kwargs={"seconds": 4})
    holder.start()
    assert sent.wait(10)
    for _ in range(2):
        box.systemctl("reload", service)
        main_pids.append(settle(box, name, port, set(main_pids)))
        assert box.run("kill", "-0", str(draining), check=False).returncode == 0, "the predecessor stopped draining"
    holder.join(30)
    assert held == {"owner": draining, "status": 200, "pid": draining, "next": "closed"}
    assert "not our child" not in box.output(), logs(box, name)

    # SIGKILL of the serving process is noticed; Restart=on-failure brings the service back.
    restarts = int(box.show(service, "NRestarts"))
    box.run("kill", "-9", str(main_pids[-1]))
    main_pids.append(settle(box, name, port, set(main_pids)))
    assert int(box.show(service, "NRestarts")) == restarts + 1, logs(box, name)

    # The same for a segfault after a few more reloads.
    reload_under_load(box, name, port, 3, main_pids)
    box.run("kill", "-SEGV", str(main_pids[-1]))
    main_pids.append(settle(box, name, port, set(main_pids)))
    assert int(box.show(service, "NRestarts")) == restarts + 2, logs(box, name)

    # `systemctl stop` after all that drains an in-flight request (200, not a reset).
    box.systemctl("reload", service)
    main_pids.append(settle(box, name, port, set(main_pids)))
    stop_drains(box, name, port)


def reload_under_load(box: Sandbox, name: str, port: int, reloads: int, main_pids: list[int]) -> None:
    """`systemctl reload` ``reloads`` times under load: 0 failed, a new MainPID each time, still active."""
    service = f"{name}.service"
    with Load("127.0.0.1", port, workers=4, max_seconds=240) as load:
        for _ in range(reloads):
            box.systemctl("reload", service)
            main_pids.append(settle(box, name, port, set(main_pids)))
            assert box.show(service, "ActiveState") == "active"
        result = load.stop()
    assert result.failed == 0, (result.errors, logs(box, name))
    assert len(set(main_pids[-reloads - 1 :])) == reloads + 1  # MainPID changed every time


def stop_in_flight(box: Sandbox, name: str, port: int) -> tuple[dict[str, object], float]:
    """`systemctl stop` with a /sleep?seconds=2 in flight: what the request got, and how long stop took."""
    held: dict[str, object] = {}
    sent = threading.Event()
    holder = threading.Thread(target=sleep_on_owned_connection, args=(port, held, sent))
    holder.start()
    assert sent.wait(10)
    began = time.monotonic()
    box.systemctl("stop", f"{name}.service")
    stopped_after = time.monotonic() - began
    holder.join(30)
    return held, stopped_after


def stop_drains(box: Sandbox, name: str, port: int) -> None:
    """`systemctl stop` waits for an in-flight /sleep?seconds=2, which gets its 200."""
    held, stopped_after = stop_in_flight(box, name, port)
    assert held.get("status") == 200, (held, logs(box, name))
    assert stopped_after > 1.0  # it waited for the drain
    assert box.show(f"{name}.service", "Result") == "success"


@pytest.mark.peer
@pytest.mark.parametrize("name", shipped_pairs())
def test_shipped_units_boot_reload_and_stop(sandbox: tuple, name: str) -> None:
    """The pairs in units/ (paths and port localized) under the real systemd."""
    box, apps = sandbox
    assert ("shipped", name) in apps, f"{name} is not collected on the {box.box} box (conftest)"
    _, port = apps[("shipped", name)]
    first = box.activate(name, port)
    assert (box.uid(first) != 0) == (name in STDLIB_ONLY), logs(box, name)  # see units.localized
    if supervised(name):
        supervised_reloads(box, name, port, 5, [first])
    else:
        assert box.show(f"{name}.service", "MainPID") == str(first), logs(box, name)
        reload_under_load(box, name, port, 5, [first])
    stop_drains(box, name, port)


@pytest.mark.peer
def test_fd_store_keeps_self_bound_listeners_across_restarts(sandbox: tuple) -> None:
    """No .socket unit: the server binds itself and stores the socket; systemd 252 hands it back after
    an automatic restart (and after `systemctl restart`), so nothing is refused meanwhile; stop frees it."""
    box, apps = sandbox
    _, port = apps[("store", "")]
    box.systemctl("start", "store.service")
    first = get("127.0.0.1", port)[1]
    assert box.show("store.service", "MainPID") == str(first)
    box.run("kill", "-9", str(first))
    status, second = get("127.0.0.1", port, timeout=30)  # waits in the stored socket's backlog, not refused
    assert status == 200 and second != first
    assert box.show("store.service", "NRestarts") == "1"
    box.systemctl("restart", "store.service")
    third = get("127.0.0.1", port)[1]
    with open(os.path.join(box.workdir, "store.log")) as f:
        log = f.read()
    assert f"http_server[{first}]: serving on <Listeners http=bound:" in log, log
    for pid in (second, third):
        assert f"http_server[{pid}]: serving on <Listeners http=inherited:" in log, log
    box.systemctl("stop", "store.service")
    with pytest.raises(ConnectionRefusedError):  # stop releases the store (systemd 252)
        socket.create_connection(("127.0.0.1", port), timeout=5)


@pytest.mark.peer
def test_generated_inprocess_units_pass_the_restart_checks(sandbox: tuple) -> None:
    """`sockact units` output for the example: 10 reloads under load, SIGKILL noticed, stop drains."""
    box, apps = sandbox
    name, port = apps[("generated", "inprocess")]
    service = f"{name}.service"
    main_pids = [box.activate(name, port)]
    assert box.show(service, "MainPID") == str(main_pids[0]), logs(box, name)
    uid = box.uid(main_pids[0])
    assert uid != 0  # hardened: a dynamic user
    reload_under_load(box, name, port, RELOADS, main_pids)
    assert box.uid(main_pids[-1]) == uid  # the successors too
    box.run("kill", "-9", str(main_pids[-1]))
    main_pids.append(settle(box, name, port, set(main_pids)))
    assert box.show(service, "NRestarts") == "1", logs(box, name)
    stop_drains(box, name, port)


@pytest.mark.peer
def test_sockact_run_as_execstart(sandbox: tuple) -> None:
    """`sockact run` under systemd: activation, 10 reloads under load with 0 failed, MainPID unchanged."""
    box, apps = sandbox
    name, port = apps[("generated", "supervise")]
    children = [box.activate(name, port)]  # sockact run starts the first child
    assert box.uid(box.show(f"{name}.service", "MainPID")) != 0 and box.uid(children[0]) != 0  # hardened
    supervised_reloads(box, name, port, RELOADS, children)
    stop_drains(box, name, port)


def supervised_reloads(box: Sandbox, name: str, port: int, reloads: int, children: list[int]) -> None:
    """`systemctl reload` of a `sockact run` service under load: 0 failed, a new child serving each
    time, MainPID (sockact's) unchanged and never the child's."""
    service = f"{name}.service"
    main = box.show(service, "MainPID")
    assert main not in ("0", str(children[0])), logs(box, name)
    with Load("127.0.0.1", port, workers=4, max_seconds=240) as load:
        for _ in range(reloads):
            box.systemctl("reload", service)
            deadline = time.monotonic() + 30
            while (pid := get("127.0.0.1", port)[1]) in children:
                assert time.monotonic() < deadline, logs(box, name)
                time.sleep(0.01)
            children.append(pid)
            assert box.show(service, "MainPID") == main and box.show(service, "ActiveState") == "active"
        result = load.stop()
    assert result.failed == 0, (result.errors, logs(box, name))
    assert len(set(children)) == reloads + 1


@pytest.mark.peer
def test_notify_reload_without_monotonic_usec_stays_reloading(sandbox: tuple) -> None:
    """Type=notify-reload (253+): RELOADING=1 with MONOTONIC_USEC completes a reload; without it the
    unit sits in "reloading" until the reload timeout (TimeoutStartSec=2 here). 252 ignores the type."""
    box, _ = sandbox
    if box.box == "252":
        box.systemctl("start", "nr-bare.service")
        assert box.show("nr-bare.service", "Type") == "simple"  # the line was ignored: a plain service
        assert "Failed to parse service type, ignoring: notify-reload" in box.output()
        box.systemctl("stop", "nr-bare.service")
        return
    box.systemctl("start", "nr-stamped.service", "nr-bare.service")
    assert box.show("nr-bare.service", "Type") == "notify-reload"
    began = time.monotonic()
    stamped = box.systemctl("reload", "nr-stamped.service", check=False)
    stamped_took = time.monotonic() - began
    assert stamped.returncode == 0, stamped.stderr
    assert box.show("nr-stamped.service", "ActiveState") == "active"
    reload = subprocess.Popen(
        box.command("systemctl", "reload", "nr-bare.service"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    began, states = time.monotonic(), []
    while reload.poll() is None and time.monotonic() - began < 30:  # bounded; polls every ~50 ms
        states.append(box.show("nr-bare.service", "ActiveState"))
        time.sleep(0.05)
    output = reload.communicate(timeout=30)[0]
    bare_took = time.monotonic() - began
    after = box.show("nr-bare.service", "ActiveState")
    print(
        f"systemd {box.box}: reload with MONOTONIC_USEC {stamped_took * 1000:.0f} ms; without it"
        f" {bare_took:.2f} s, exit {reload.returncode} ({output.strip()!r}), states {sorted(set(states))}, then {after}"
    )
    assert "reloading" in states, (states, output)
    last = len(states) - states[::-1].index("reloading")
    assert set(states[states.index("reloading") : last]) == {"reloading"}, (states, output)  # until the timeout
    assert bare_took >= 1.5 and reload.returncode != 0, (bare_took, reload.returncode, output)
    box.systemctl("stop", "nr-stamped.service", "nr-bare.service", check=False)


@pytest.mark.peer
@pytest.mark.parametrize("handover", ["mainpid", "pidfile"])
def test_stop_after_one_handover(sandbox: tuple, handover: str) -> None:
    """After one MAINPID= hand-over systemd accepts the new main pid but does not supervise it: `systemctl
    stop` returns at once and the in-flight request is cut. After a PID-file hand-over it waits (200)."""
    box, apps = sandbox
    name, port = apps[("stop", handover)]
    service = f"{name}.service"
    first = box.activate(name, port)
    box.systemctl("reload", service)
    new = settle(box, name, port, {first})
    deadline = time.monotonic() + 20
    while box.run("kill", "-0", str(first), check=False).returncode == 0:  # the predecessor is gone
        assert time.monotonic() < deadline, logs(box, name)
        time.sleep(0.02)
    held, stopped_after = stop_in_flight(box, name, port)
    not_ours = f"Supervising process {new} which is not our child" in box.output()
    print(f"systemd {box.box} {handover}: stop took {stopped_after * 1000:.0f} ms, request got {held}, {not_ours=}")
    assert held.get("owner") == new, (held, logs(box, name))
    if handover == "pidfile":
        assert held.get("status") == 200 and stopped_after > 1.0, (held, stopped_after, logs(box, name))
        assert not not_ours
    else:
        assert "status" not in held and "error" in held, (held, stopped_after, logs(box, name))
        assert stopped_after < 1.0 and not_ours, (stopped_after, logs(box, name))


@pytest.mark.peer
def test_stop_while_the_predecessor_drains(sandbox: tuple) -> None:
    """PID-file mode, KillMode=mixed: `systemctl stop` right after a reload signals only the new main
    process, and systemd kills what is left once that exits. The new main process waits for its
    predecessor first, so the request the predecessor still drains gets its 200 and stop succeeds."""
    box, apps = sandbox
    name, port = apps[("pidfile", "main")]
    service = f"{name}.service"
    if box.show(service, "ActiveState") != "active":
        box.activate(name, port)
    draining = int(box.show(service, "MainPID"))
    held: dict[str, object] = {}
    sent = threading.Event()
    holder = threading.Thread(target=sleep_on_owned_connection, args=(port, held, sent), kwargs={"seconds": 3})
    holder.start()
    assert sent.wait(10)
    box.systemctl("reload", service)
    new = settle(box, name, port, {draining})
    assert box.run("kill", "-0", str(draining), check=False).returncode == 0, "the predecessor stopped draining"
    began = time.monotonic()
    box.systemctl("stop", service)
    stopped_after = time.monotonic() - began
    holder.join(30)
    assert held == {"owner": draining, "status": 200, "pid": draining, "next": "closed"}, (held, logs(box, name))
    assert box.show(service, "Result") == "success", logs(box, name)
    print(f"systemd {box.box}: stop with pid {draining} draining took {stopped_after * 1000:.0f} ms (main {new})")


@pytest.mark.peer
def test_box_bench_hook_times_reload_and_start(sandbox: tuple) -> None:
    """bench/boxes.py's round trip runs in the box (figures printed, never asserted)."""
    from bench.boxes import table, time_reload_and_start  # importable: the fixture put ROOT on sys.path

    box, apps = sandbox
    name, port = apps[("bench", "")]
    run = time_reload_and_start(box, name, port, repeats=2, timeout=10)
    table([run], 2)
    assert len(run.start_returned) == len(run.start_serving) == 2
    assert len(run.reload_returned) == 2 and len(run.reload_serving) == 2 - run.failed == 2 - len(run.errors)
    assert run.stale <= len(run.reload_serving)
    box.systemctl("stop", f"{name}.socket", f"{name}.service")


@pytest.mark.peer
def test_box_never_sees_the_hosts_tmp_or_units(
    request: pytest.FixtureRequest, box_version: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The safety of the recipe: a file in the host's /tmp is invisible inside and still there after the
    box ran; the manager's unit path is our private copy; systemctl is the box's own client."""
    with tempfile.NamedTemporaryFile(prefix="sockact-marker-", dir="/tmp") as marker:
        workdir = str(tmp_path_factory.mktemp(f"marker{box_version}"))
        with boot_box(request, box_version, workdir, {}) as box:
            assert box.run("test", "-e", marker.name, check=False).returncode == 1
            assert os.path.basename(marker.name) not in box.run("ls", "-a", "/tmp").stdout.split()
            assert box.systemctl("show", "-p", "UnitPath", "--value").stdout.split() == ["/run/sockact-units"]
            version = box.systemctl("--version").stdout.split()[:2]
            assert version == ["systemd", box_version], version
            if box_version == "257":  # its own cgroup2 root, not the host's hybrid tree
                assert box.run("stat", "-fc", "%T", "/sys/fs/cgroup").stdout.strip() == "cgroup2fs"
                assert box.run("cat", "/proc/1/cgroup").stdout.split()[-1] == "0::/init.scope"
        assert os.path.exists(marker.name)
