"""Test helpers that start real child processes through sockact's own spawn path."""

from __future__ import annotations

import fcntl
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sockact
from sockact import NotifyReceiver


def until(condition: Callable[[], bool], timeout: float = 5.0, state: Callable[[], object] = lambda: None) -> None:
    """Poll ``condition`` every millisecond until it holds; fail after ``timeout`` seconds, showing
    ``state()``. For conditions no event announces (a thread's counts, a server's connections)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, state()
        time.sleep(0.001)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY_", "WATCHDOG_"))}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def python_prints(code: str) -> str:
    """What a fresh interpreter running ``code`` prints, stripped (its stderr in the error if it fails)."""
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=child_env(), timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def run_child(code: str, fds: Sequence[int] = (), env: Mapping[str, str] | None = None, timeout: float = 30) -> Any:
    """Run ``code`` in a child whose fds 3.. are ``fds`` (moved by posix_spawn DUP2, no trampoline).

    ``env`` is passed verbatim (LISTEN_PID may contain ``SELF``: the child substitutes its own pid).
    The child prints one JSON document; it is returned.
    """
    prelude = (
        "import os, sys, json\n"
        "for k, v in list(os.environ.items()):\n"
        "    if 'SELF' in v and k.startswith(('LISTEN_', 'WATCHDOG_')):\n"
        "        os.environ[k] = v.replace('SELF', str(os.getpid()))\n"
    )
    staged = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 200) for fd in fds]
    try:
        r, w0 = os.pipe()
        w = fcntl.fcntl(w0, fcntl.F_DUPFD_CLOEXEC, 300)
        os.close(w0)
        actions = [(os.POSIX_SPAWN_DUP2, fd, 3 + i) for i, fd in enumerate(staged)]
        actions.append((os.POSIX_SPAWN_DUP2, w, 1))
        pid = os.posix_spawn(PY, [PY, "-c", prelude + code], dict(env or child_env()), file_actions=actions)
        os.close(w)
    finally:
        for fd in staged:
            os.close(fd)
    with os.fdopen(r) as out:
        data = out.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, (data, status)
    return json.loads(data)


def tcp_listener(host: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    s.bind((host, 0))
    s.listen()
    return s


def free_port() -> int:
    """A free TCP port on 127.0.0.1 *outside* the ephemeral range, so that the many client connections
    of a load test can never be holding it when a server (or systemd) binds it later."""
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low = int(f.read().split()[0])
    for _ in range(200):
        port = random.randint(10000, max(10001, low - 1))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def http_get(host: str, port: int, path: str = "/", timeout: float = 10) -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-s", "--max-time", str(timeout), "-o", "-", "-w", "\n%{http_code}", f"http://{host}:{port}{path}"],
        capture_output=True,
        text=True,
        timeout=timeout + 5,
    )
    body, _, code = out.stdout.rpartition("\n")
    return int(code or 0), body


class FakeSystemd(NotifyReceiver):
    """A receiver read by a thread, as systemd reads its notify socket (so barriers are acknowledged)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[sockact.Message] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            select.select([self], [], [], 0.05)  # no selector object: opens no fd of its own
            m = self.receive_nowait()
            if m is not None:
                m.close()
                self.messages.append(m)

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
            self._thread.join()
        super().close()

    def wait_for(self, predicate: Any, timeout: float = 30) -> Any:
        """The first message matching ``predicate``, waiting (bounded) for it to arrive."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            messages = list(self.messages)
            for m in messages[seen:]:
                if predicate(m):
                    return m
            seen = len(messages)
            time.sleep(0.01)
        raise TimeoutError(f"no matching message in {[m.fields for m in self.messages]}")
