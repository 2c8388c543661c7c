"""`sockact run`'s restart policy with real children: back off while children die young, give up after
a bounded number of quick failures (exit 1, so systemd's Restart=/StartLimitBurst= act), warn when a
child sends no READY=1."""

from __future__ import annotations

import subprocess
import sys
import time

from helpers import FakeSystemd, child_env, free_port

PY = sys.executable


def run(args: list[str], command: list[str], timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], list]:
    port = free_port()
    with FakeSystemd() as systemd:
        argv = [PY, "-m", "sockact", "run", f"--listen=http=127.0.0.1:{port}", *args, "--", *command]
        began = time.monotonic()
        out = subprocess.run(
            argv, env=child_env({"NOTIFY_SOCKET": systemd.address}), capture_output=True, text=True, timeout=timeout
        )
        out.elapsed = time.monotonic() - began  # type: ignore[attr-defined]
        return out, list(systemd.messages)


def test_a_child_that_crashes_right_after_ready_is_not_restarted_forever() -> None:
    out, messages = run(
        ["--give-up-after", "3", "-v"], [PY, "-c", "import sockact; sockact.ready(); raise SystemExit(4)"]
    )
    assert out.returncode == 1, out.stderr
    assert (
        "3 quick failures in a row, giving up" in out.stderr
        and "Traceback (most recent" not in out.stderr.split("giving up")[-1]
    )
    assert out.stderr.count("started successor pid") == 3  # not every 0.1 s forever (a DEBUG line: -v)
    assert out.elapsed >= 0.3  # type: ignore[attr-defined]  # backed off 0.1 s, then 0.2 s, though each said READY=1
    assert any("giving up" in (m.get("STATUS") or "") for m in messages)


def test_a_child_that_always_fails_makes_the_supervisor_exit_nonzero() -> None:
    out, _ = run(["--give-up-after", "2"], ["/bin/sh", "-c", "exit 7"])
    assert out.returncode == 1 and "exited with status 7" in out.stderr and "giving up" in out.stderr, out.stderr


def test_a_child_without_ready_gets_a_warning_naming_ready() -> None:
    out, _ = run(["--ready-timeout", "2", "--give-up-after", "1"], ["/bin/sleep", "60"])
    assert out.returncode == 1, out.stderr
    warning = next(line for line in out.stderr.splitlines() if "has sent no READY=1 yet" in line)
    assert "--ready spawn" in warning
    assert "not ready within 2.0 s" in out.stderr
