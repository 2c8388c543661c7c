"""The one spawn path, in a process whose own fds are not tidy (as under `flock FILE cmd`)."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys

import pytest

from sockact._spawn import Child, children_of, parent_of, spawn

from helpers import child_env, until

LEAKY_PARENT = r"""
import json, os, socket, sys
from sockact._spawn import spawn
leak = os.open("/dev/null", os.O_RDONLY)
if leak != 3:
    os.dup2(leak, 3)
    os.close(leak)
os.set_inheritable(3, True)  # a non-CLOEXEC fd sitting where the child's first listener goes
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    s.listen()
    probe = "import json, socket; s = socket.socket(fileno=3); print(json.dumps(s.getsockname()))"
    child = spawn([sys.executable, "-c", probe], [s.fileno()], ["http"], environ=dict(os.environ))
    print(json.dumps({"code": child.wait(20), "want": list(s.getsockname())}), file=sys.stderr)
"""


def test_a_leaked_fd_on_a_target_does_not_close_the_listener() -> None:
    out = subprocess.run(
        [sys.executable, "-c", LEAKY_PARENT], env=child_env(), capture_output=True, text=True, timeout=60
    )
    result = json.loads(out.stderr.strip().splitlines()[-1])  # the parent's verdict; the child's on stdout
    assert result["code"] == 0, out.stderr
    assert json.loads(out.stdout) == result["want"]  # the child's fd 3 is our listener, not closed


@pytest.mark.parametrize(
    ("command", "path"),
    [
        ("sh", None),
        ("/bin/sh", None),
        ("no-such-command-here", None),
        ("sh", "/nonexistent:/bin"),
        ("sh", ""),
        ("/etc", None),
        (os.path.join(os.path.dirname(__file__), "shell_child.sh"), None),
        (os.path.dirname(__file__), None),
        ("shell_child.sh", os.path.dirname(__file__)),
        ("shell_child.sh", None),
    ],
)
def test_the_executable_check_finds_what_shutil_which_finds(command: str, path: str | None) -> None:
    """spawn() checks its command without importing shutil (every successor imports _spawn); the
    check must agree with shutil.which, which it replaces."""
    import shutil

    from sockact._spawn import _found

    assert _found(command, path) == (shutil.which(command, path=path) is not None)


@pytest.mark.parametrize("path", ["", ":", "bin", "nowhere"])
def test_the_executable_check_reads_path_like_shutil_which(
    path: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An executable in the current directory: PATH="" finds nothing, PATH=":" finds it, a relative
    PATH entry is relative to the current directory — all as shutil.which decides."""
    import shutil

    from sockact._spawn import _found

    for where in (tmp_path, tmp_path / "bin"):
        where.mkdir(exist_ok=True)
        (where / "mycmd").write_text("#!/bin/sh\n")
        (where / "mycmd").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    assert _found("mycmd", path) == (shutil.which("mycmd", path=path) is not None)


def _sleeper(relay: int) -> int:
    """The relay's child once it runs sleep(1) (bounded). Until its exec that child is a fork of the relay
    with the relay's traps, which swallow a signal sent then: a test that signals it must wait for this."""

    def running() -> bool:
        started = children_of(relay)
        if not started:
            return False
        try:
            return pathlib.Path(f"/proc/{started[0]}/comm").read_text() == "sleep\n"
        except OSError:  # gone between the two reads
            return False

    until(running, timeout=10)
    started = children_of(relay)
    assert started
    return started[0]


def _named(child: Child) -> int:
    """The relayed process's pid, named, once its relay has started it and it runs sleep(1)."""
    pid = _sleeper(child.pid)
    assert child.identify(pid)
    return pid


@pytest.mark.parametrize(("script", "code"), [("exit 0", 0), ("exit 7", 7), ("exit 255", 255), ("kill -9 $$", -9)])
def test_a_relay_passes_on_the_exit(script: str, code: int) -> None:
    with spawn(["/bin/sh", "-c", script], relay=True) as child:
        assert child.wait(10) == code


def test_a_relay_outlives_signals_that_would_orphan_its_child() -> None:
    """SIGHUP, SIGTERM, SIGUSR1 to the relay alone (`systemctl kill -s HUP` reaches every process of the
    unit): it stays, so the command is never left running untracked; its exit still comes through."""
    with spawn(["/bin/sleep", "30"], relay=True) as child:
        pid = _named(child)
        relay = child.relay
        assert relay is not None
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGUSR1):
            os.kill(relay, sig)
        assert child.poll() is None and parent_of(pid) == relay
        os.kill(pid, signal.SIGTERM)
        assert child.wait(10) == -signal.SIGTERM


def test_an_unnamed_relayed_child_is_stopped_through_the_process_group() -> None:
    with spawn(["/bin/sleep", "30"], relay=True) as child:
        sleeper = _sleeper(child.pid)
        assert child.terminate(5) == -signal.SIGTERM
        assert not os.path.exists(f"/proc/{sleeper}")


def test_an_orphaned_child_is_watched_by_its_pidfd() -> None:
    """After orphan() the process is another's child (here: init's, or a subreaper's): its exit is seen,
    its status is not (-255)."""
    with spawn(["/bin/sleep", "30"], relay=True) as child:
        pid = _named(child)
        relay = child.relay
        assert child.orphan() is True and child.relay is None
        adopter = parent_of(pid)  # init, or this test process if another module made it a subreaper
        assert adopter is not None and adopter != relay and not os.path.exists(f"/proc/{relay}")
        assert child.poll() is None
        os.kill(pid, signal.SIGTERM)
        if adopter == os.getpid():  # this test process is a subreaper (another module made it one): reap
            os.waitpid(pid, 0)
        assert child.wait(10) == -255


def test_a_relay_killed_first_takes_its_named_child_along() -> None:
    """SIGKILL is the one signal the relay cannot trap: its child, named and holding the listeners, must
    not run on untracked."""
    with spawn(["/bin/sleep", "30"], relay=True) as child:
        pid = _named(child)
        assert child.relay is not None
        os.kill(child.relay, signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        assert child.pidfd is not None and readable_now(child.pidfd)  # the sleeper was killed too
        if parent_of(pid) == os.getpid():  # this test process is a subreaper (another module made it one)
            os.waitpid(pid, 0)


def readable_now(fd: int) -> bool:
    import select

    return bool(select.select([fd], [], [], 5)[0])


def test_children_of_tells_no_children_from_no_answer() -> None:
    # The driver polls /proc while a relay has not started its child yet ([]), and stops once /proc
    # cannot tell (None: the relay is gone, or the kernel has no children file).
    with spawn(["/bin/sleep", "30"], relay=True) as child:
        relay = child.pid
        assert children_of(relay) is not None
        _sleeper(relay)
        assert children_of(os.getpid()) is not None
        assert child.terminate(5) == -signal.SIGTERM
    assert children_of(relay) is None
