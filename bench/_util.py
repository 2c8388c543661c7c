"""What the bench programs share: the checkout, a free loopback port, a clean child environment, and
reaping what they started."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PR_SET_CHILD_SUBREAPER = 36


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """This environment without activation state, with this checkout importable, and with bytecode
    caching on: an installed service starts from .pyc files, so a bench does too (see
    :func:`compile_checkout`). PYTHONDONTWRITEBYTECODE=1 in a shell (this machine sets it) would make
    every successor compile sockact and its app from source: ~40 ms more CPU per start."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = ROOT
    return env


def compile_checkout() -> None:
    """Write current .pyc files for sockact, the examples and the benches, as `pip install` does for an
    installed package; quiet, and harmless where the checkout is read-only."""
    import compileall

    for directory in ("sockact", "examples", "bench"):
        compileall.compile_dir(os.path.join(ROOT, directory), quiet=2, force=False)


def become_subreaper() -> None:
    """Orphaned predecessors are re-parented to this process, so :func:`reap_exited` can reap them."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap_exited() -> int:
    """Reap every exited child without waiting; how many there were."""
    count = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return count
        if pid == 0:
            return count
        count += 1


def stop(proc: subprocess.Popen[Any], grace: float = 20) -> None:
    """SIGTERM ``proc``, wait up to ``grace`` seconds, then SIGKILL it."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def children_of(pid: int) -> set[int]:
    """The children of ``pid``, whichever of its threads started them (empty once it is gone)."""
    kids: set[int] = set()
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.update(int(p) for p in f.read().split())
    except OSError:
        pass
    return kids


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait (bounded) until ``pid`` exited, reaping it if it is a child (or an orphan) of ours."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return True
        except ChildProcessError:
            if not os.path.exists(f"/proc/{pid}"):
                return True
        time.sleep(0.01)
    return False
