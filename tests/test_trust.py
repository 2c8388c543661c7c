"""Trust boundaries: what a process started by the app (a grandchild of the manager) can inherit,
what hooks see, and who may speak for the service."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys

import pytest

from sockact import _procenv

from conftest import need_module, need_tool
from helpers import PY, FakeSystemd, child_env, free_port, run_child, tcp_listener
from reloads import reap, running_after, serving_pid

#: Run by the app with close_fds=False (the worst case): what did it inherit?
PROBE = r"""
import json, os, socket
env = {k: v for k, v in os.environ.items() if k.startswith(("LISTEN_", "NOTIFY_", "SOCKACT_UPSTREAM"))}
listening = []
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        s = socket.socket(fileno=os.dup(fd))
    except OSError:
        continue
    with s:
        try:
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                listening.append(fd)
        except OSError:
            pass
print(json.dumps({"env": env, "listening": listening}))
"""

APP = r"""
import json, os, subprocess, sys
import sockact
listeners = sockact.get_listeners({"http": sys.argv[1]}, hide_notify_socket=sys.argv[3] == "hide")
sent = sockact.ready("probing")
probe = subprocess.run([sys.executable, "-c", sys.argv[2]], close_fds=False, capture_output=True, text=True)
conn, _ = listeners["http"].accept()  # the connection that activated us
body = f"pid {os.getpid()}\n".encode()
conn.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
conn.close()
print(json.dumps({"ready_sent": sent, "probe": json.loads(probe.stdout), "after": sockact.status("still mine")}))
"""


@pytest.mark.parametrize("hide", [False, True])
def test_grandchildren_inherit_no_activation_state(hide: bool) -> None:
    """Under systemd-socket-activate: the app gets its socket and speaks to the manager, but a process it
    starts — even with close_fds=False — sees no LISTEN_* and no listening fd; NOTIFY_SOCKET only
    unless the app asked for it to be hidden (the default keeps it for python-systemd/sdnotify apps)."""
    tool = need_tool("systemd-socket-activate")
    port = free_port()
    with FakeSystemd() as systemd:
        env = child_env({"NOTIFY_SOCKET": systemd.address})
        argv = [tool, "-l", f"127.0.0.1:{port}", "--fdname=http", "-E", "PYTHONPATH", "-E", "NOTIFY_SOCKET"]
        argv += [PY, "-c", APP, f"127.0.0.1:{port}", PROBE, "hide" if hide else "keep"]
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert serving_pid(port) == proc.pid  # the first connection starts the app, which answers it
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        report = json.loads(out)
        expected_env = {} if hide else {"NOTIFY_SOCKET": systemd.address}
        assert report["probe"] == {"env": expected_env, "listening": []}, report
        assert report["ready_sent"] is True and report["after"] is True  # sockact itself still speaks
        assert systemd.wait_for(lambda m: m.get("STATUS") == "still mine").pid == proc.pid


HOOK_APP = r"""
import json, subprocess, sys
import sockact
probes = []
def probe():
    out = subprocess.run([sys.executable, "-c", PROBE], close_fds=False, capture_output=True, text=True).stdout
    probes.append(json.loads(out))
listeners = sockact.get_listeners({"inherited": "127.0.0.1:1", "bound": "127.0.0.1:0"})
with listeners, sockact.Upgrader(listeners, command=["/bin/false"], before_spawn=probe) as upgrader:
    try:
        upgrader.upgrade()
    except sockact.UpgradeError:
        pass
print(json.dumps(probes))
"""


def test_hooks_and_their_children_see_no_listening_fd() -> None:
    """An inherited socket and a bound one, an upgrade in progress: a process a hook starts with
    close_fds=False inherits none of them (sockact marks inherited fds close-on-exec, as libsystemd)."""
    with tcp_listener() as inherited:
        env = child_env({"LISTEN_PID": "SELF", "LISTEN_FDS": "1", "LISTEN_FDNAMES": "inherited"})
        probes = run_child(f"PROBE = {PROBE!r}\n" + HOOK_APP, fds=[inherited.fileno()], env=env)
    assert probes == [{"env": {}, "listening": []}], probes


@pytest.mark.parametrize("hide", [False, True])
def test_notify_socket_stays_unless_hidden_and_sockact_always_reaches_it(fresh_env: None, hide: bool) -> None:
    """get_listeners() leaves NOTIFY_SOCKET in os.environ (children see it); with
    hide_notify_socket=True it leaves os.environ, and sockact.notify() still reaches it."""
    with FakeSystemd() as systemd:
        os.environ["NOTIFY_SOCKET"] = systemd.address
        try:
            import sockact

            with sockact.get_listeners({"http": "127.0.0.1:0"}, hide_notify_socket=hide):
                assert ("NOTIFY_SOCKET" in os.environ) is not hide
                child = subprocess.run(
                    [sys.executable, "-c", "import os; print(os.environ.get('NOTIFY_SOCKET'))"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                assert child.stdout.strip() == ("None" if hide else systemd.address)
                assert sockact.status(f"hidden={hide} and working") is True
            assert systemd.wait_for(lambda m: m.get("STATUS") == f"hidden={hide} and working").pid == os.getpid()
        finally:
            os.environ.pop("NOTIFY_SOCKET", None)
            _procenv._reset()


FOREIGN_NOTIFIERS = r"""
import os, sys
import sdnotify
from systemd import daemon
import sockact

def both(stage):
    daemon.notify(f"STATUS=python-systemd {stage} {os.getpid()}")
    sdnotify.SystemdNotifier().notify(f"STATUS=sdnotify {stage} {os.getpid()}")

listeners = sockact.get_listeners({"http": "127.0.0.1:0"})
with listeners, sockact.Upgrader(listeners) as upgrader:
    both("before-ready")
    sockact.ready()  # in a successor: waits for the hand-over, then NOTIFY_SOCKET names the real manager
    both("after-ready")
    upgrader.wait()
"""


def test_python_systemd_and_sdnotify_reach_the_manager_before_and_after_a_hand_over(tmp_path: object) -> None:
    """An app that also notifies through python-systemd and sdnotify (both read NOTIFY_SOCKET from the
    C/os environment): its messages reach the manager on a cold start, and from the successor once
    the hand-over is done — os.environ then names the real manager, not the predecessor."""
    need_module("systemd.daemon")
    need_module("sdnotify")
    script = os.path.join(str(tmp_path), "app.py")
    with open(script, "w") as f:
        f.write(FOREIGN_NOTIFIERS)
    with FakeSystemd() as systemd:
        proc = subprocess.Popen(
            [PY, script], env=child_env({"NOTIFY_SOCKET": systemd.address}), stderr=subprocess.PIPE, text=True
        )
        new = 0
        try:
            for peer in ("python-systemd", "sdnotify"):
                for stage in ("before-ready", "after-ready"):
                    status = f"{peer} {stage} {proc.pid}"
                    assert systemd.wait_for(lambda m, s=status: m.get("STATUS") == s).pid == proc.pid
            proc.send_signal(signal.SIGHUP)
            successor = systemd.wait_for(lambda m: m.get("MAINPID") is not None and m.pid == proc.pid)
            new = int(successor.get("MAINPID"))
            for peer in ("python-systemd", "sdnotify"):
                status = f"{peer} after-ready {new}"
                assert systemd.wait_for(lambda m, s=status: m.get("STATUS") == s).pid == new
            assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if new:  # the successor (our child's, adopted by init or by this process as subreaper)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(new, signal.SIGTERM)
                # A zombie counts as gone: when an earlier test made pytest a subreaper, it is ours to reap.
                left = running_after([new], 30)
                if left:
                    os.kill(new, signal.SIGKILL)
                reap([new])
                assert not left, f"successor pid {new} outlived SIGTERM by 30 s"
